// Where two configs differ, leaf by leaf, and `quantlab diff`.
#include "quantlab/experiment/config_diff.h"

#include <algorithm>
#include <iomanip>
#include <ostream>
#include <set>
#include <sstream>

#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/storage.h"

namespace quantlab::experiment {
namespace {

bool walked_into(const nlohmann::json& v) {
  if (v.is_object()) return true;
  if (!v.is_array()) return false;
  return std::any_of(v.begin(), v.end(), [](const nlohmann::json& e) { return e.is_object() || e.is_array(); });
}

// Every leaf of `v` under `prefix`, by path.
void leaves(const nlohmann::json& v, const std::string& prefix, std::map<std::string, nlohmann::json>& out) {
  if (!walked_into(v)) {
    out[prefix] = v;
    return;
  }
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      if (prefix.empty() && (it.key() == "overrides" || it.key() == "sweep")) continue;  // records, not settings
      leaves(it.value(), prefix.empty() ? it.key() : prefix + "." + it.key(), out);
    }
  } else {
    for (size_t i = 0; i < v.size(); ++i) leaves(v[i], prefix + "." + std::to_string(i), out);
  }
}

}  // namespace

std::map<std::string, nlohmann::json> config_leaves(const nlohmann::json& config) {
  std::map<std::string, nlohmann::json> out;
  leaves(config, "", out);
  return out;
}

std::string value_text(const nlohmann::json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_float()) {
    std::ostringstream s;
    s << std::setprecision(6) << v.get<double>();
    return s.str();
  }
  std::string d = v.dump();
  for (size_t k = 0; (k = d.find(',', k)) != std::string::npos; k += 2) d.insert(k + 1, " ");
  return d;
}

std::vector<ConfigDifference> config_differences(const nlohmann::json& a, const nlohmann::json& b) {
  const auto la = config_leaves(a), lb = config_leaves(b);
  std::set<std::string> paths;
  for (const auto& [k, v] : la) paths.insert(k);
  for (const auto& [k, v] : lb) paths.insert(k);
  std::vector<ConfigDifference> out;
  for (const auto& p : paths) {
    const auto ia = la.find(p), ib = lb.find(p);
    ConfigDifference d;
    d.path = p;
    d.in_a = ia != la.end();
    d.in_b = ib != lb.end();
    if (d.in_a) d.a = ia->second;
    if (d.in_b) d.b = ib->second;
    if (d.in_a && d.in_b && d.a == d.b) continue;
    out.push_back(std::move(d));
  }
  return out;
}

void diff_experiments(const std::string& home, const std::string& problem, int64_t a, int64_t b, std::ostream& out) {
  const ProblemPaths paths = problem_paths(read_storage(home), problem);
  const Logbook ba = Logbook::open(paths.logs, a), bb = Logbook::open(paths.logs, b);
  const auto diffs = config_differences(ba.config(), bb.config());
  if (diffs.empty()) {
    out << "experiments " << a << " and " << b << " have the same config" << std::endl;
    return;
  }
  size_t width = 0;
  for (const auto& d : diffs) width = std::max(width, d.path.size());
  out << std::left << std::setw(static_cast<int>(width) + 2) << "config path" << Logbook::folder_name(a) << " -> "
      << Logbook::folder_name(b) << std::endl;
  for (const auto& d : diffs)
    out << std::setw(static_cast<int>(width) + 2) << d.path << (d.in_a ? value_text(d.a) : "(absent)") << " -> "
        << (d.in_b ? value_text(d.b) : "(absent)") << std::endl;
}

}  // namespace quantlab::experiment
