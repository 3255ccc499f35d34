// Comparing experiments: one row per experiment, their differing config paths and their results.
#include "quantlab/experiment/compare.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <ostream>
#include <set>
#include <sstream>
#include <tuple>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/config_diff.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/util/error.h"
#include "cell_table.h"
#include "sweep_steps.h"

namespace quantlab::experiment {
namespace {

using cell_table::duration;
using cell_table::percent_cell;
using cell_table::print_cells;

struct Row {
  int64_t id = 0;
  nlohmann::json config;
  std::map<std::string, nlohmann::json> leaves;
  nlohmann::json status;
  std::string state;
  nlohmann::json levels;  // a sweep's unit: its factors' levels (and "repeat"), from the record or its config
};

// As `list` reads it (listing.cpp): status.json, or last.ckpt where that is damaged or lags.
std::string state_of(const Logbook& book, const Saves& saves, const nlohmann::json& st) {
  if (ExperimentLock::holder(book.dir()) != 0) return "running";
  std::string s = st.value("finished", false)  ? "finished"
                  : st.contains("diverged")    ? "diverged"
                  : st.contains("epochs_done") ? "stopped"
                                               : "not started";
  if (saves.status_damaged()) s += " (status.json damaged: the figures are last.ckpt's)";
  return s;
}

double number_or(const nlohmann::json& v, double fallback) { return v.is_number() ? v.get<double>() : fallback; }

std::vector<std::string> differing_paths(const std::vector<Row>& rows) {
  std::set<std::string> all;
  for (const auto& r : rows)
    for (const auto& [k, v] : r.leaves) all.insert(k);
  std::vector<std::string> out;
  for (const auto& p : all) {
    const auto first = rows[0].leaves.find(p);
    for (const auto& r : rows) {
      const auto it = r.leaves.find(p);
      if ((it == r.leaves.end()) != (first == rows[0].leaves.end()) ||
          (it != r.leaves.end() && first != rows[0].leaves.end() && it->second != first->second)) {
        out.push_back(p);
        break;
      }
    }
  }
  return out;
}

// The dotted paths a sweep unit's own overrides set ("*" steps kept): not its "sweep" entry, nor the
// sweep's --set (listed in that entry), which is the config every unit of the sweep starts from.
std::vector<std::string> overridden_paths(const nlohmann::json& config) {
  std::vector<std::string> out;
  if (!config.contains("overrides") || !config["overrides"].is_array()) return out;
  std::multiset<std::string> sweeps_set;
  if (config.contains("sweep") && config["sweep"].is_object() && config["sweep"].contains("set") &&
      config["sweep"]["set"].is_array())
    for (const auto& a : config["sweep"]["set"])
      if (a.is_string()) sweeps_set.insert(a.get<std::string>());
  for (const auto& text : config["overrides"]) {
    if (!text.is_string()) continue;
    if (const auto it = sweeps_set.find(text.get<std::string>()); it != sweeps_set.end()) {
      sweeps_set.erase(it);
      continue;
    }
    try {
      const config::Override o = config::parse_override(text.get<std::string>());
      if (!o.path.empty() && o.path[0] != "sweep") out.push_back(config::dotted(o.path));
    } catch (const Error&) {
    }
  }
  return out;
}

// A level's key as a config path pattern: a --grid path ("+" dropped, "*" steps kept) split at its
// dots; a named factor ("opt") or "repeat" is one step that no config leaf has alone.
std::vector<std::string> key_steps(std::string key) {
  if (!key.empty() && key[0] == '+') key.erase(0, 1);
  std::vector<std::string> out;
  std::istringstream in(key);
  for (std::string s; std::getline(in, s, '.');) out.push_back(s);
  return out;
}

// Whether `path` is at `pattern` or below it, a "*" step matching any one step.
bool covered_by(const std::vector<std::string>& pattern, const std::string& path) {
  const auto have = key_steps(path);
  if (have.size() < pattern.size()) return false;
  for (size_t k = 0; k < pattern.size(); ++k)
    if (pattern[k] != "*" && pattern[k] != have[k]) return false;
  return true;
}

// Each row's values under its sweep's level keys. A row with the key shows its level (a named
// level by its name); a row without it (another sweep's unit) shows its own config's value there,
// "(various)" where a pattern's leaves differ, or nothing when it has none (a named factor it
// lacks). A pattern's leaves ("*" steps, or the leaves below an object's path) are then shown by
// its column alone, and so is a path that each row either sets by its own levels (a named level's
// paths, shown by its name; a repeat's seed, shown by "repeat") or lacks; any other path keeps its
// config's value in every row (a named level's paths beside a row of another sweep, which sets
// them otherwise).
std::set<std::string> put_levels(std::vector<Row>& rows) {
  std::set<std::string> keys;
  for (const auto& r : rows)
    for (auto it = r.levels.begin(); it != r.levels.end(); ++it) keys.insert(it.key());
  std::vector<std::vector<std::string>> patterns;
  for (const auto& key : keys) {
    const auto pattern = key_steps(key);
    std::vector<std::pair<Row*, std::vector<nlohmann::json>>> found;
    bool path = false;  // some row has leaves there, so the key is a config path
    for (auto& r : rows) {
      std::vector<nlohmann::json> values;
      for (const auto& [leaf, v] : r.leaves)
        if (leaf != key && covered_by(pattern, leaf)) values.push_back(v);
      path = path || !values.empty() || r.leaves.count(key);
      found.emplace_back(&r, std::move(values));
    }
    for (auto& [r, values] : found) {
      if (r->levels.contains(key)) {
        r->leaves[key] = r->levels[key];
      } else if (!values.empty() && !r->leaves.count(key)) {
        const nlohmann::json first = values[0];  // (a structured binding is not captured in C++17)
        const bool same = std::all_of(values.begin(), values.end(), [&first](const auto& v) { return v == first; });
        r->leaves[key] = same ? first : nlohmann::json("(various)");
      }
    }
    if (path) patterns.push_back(pattern);
  }
  // Each row's own paths: what its overrides set, and the seed of its repeat (shown by "repeat").
  std::vector<std::vector<std::vector<std::string>>> own(rows.size());
  for (size_t k = 0; k < rows.size(); ++k) {
    for (const auto& p : overridden_paths(rows[k].config)) own[k].push_back(key_steps(p));
    if (rows[k].levels.contains("repeat")) own[k].push_back({"treat", "data", "seed"});
  }
  std::set<std::string> hidden;
  std::set<std::string> leaves;
  for (const auto& r : rows)
    for (const auto& kv : r.leaves) leaves.insert(kv.first);
  for (const auto& leaf : leaves) {
    if (keys.count(leaf)) continue;
    const auto steps = key_steps(leaf);
    const auto covers = [&steps](const std::vector<std::string>& p) {
      if (steps.size() < p.size()) return false;
      for (size_t k = 0; k < p.size(); ++k)
        if (p[k] != "*" && p[k] != steps[k]) return false;
      return true;
    };
    // Shown by a pattern's column, or in every row its own (set by the row's levels, or absent).
    bool shown_by_levels = std::any_of(patterns.begin(), patterns.end(), covers);
    if (!shown_by_levels) {
      shown_by_levels = true;
      for (size_t k = 0; k < rows.size() && shown_by_levels; ++k)
        shown_by_levels = !rows[k].leaves.count(leaf) || std::any_of(own[k].begin(), own[k].end(), covers);
    }
    if (shown_by_levels) hidden.insert(leaf);
  }
  for (auto& r : rows)
    for (const auto& leaf : hidden) r.leaves.erase(leaf);
  return keys;
}

}  // namespace

std::vector<int64_t> parse_id_list(const std::string& text) {
  std::vector<int64_t> ids;
  std::istringstream in(text);
  for (std::string part; std::getline(in, part, ',');) {
    const size_t dash = part.find('-');
    try {
      size_t used = 0;
      const int64_t first = std::stoll(part.substr(0, dash), &used);
      if (used != part.substr(0, dash).size() || first < 0) throw std::invalid_argument(part);
      int64_t last = first;
      if (dash != std::string::npos) {
        last = std::stoll(part.substr(dash + 1), &used);
        if (used != part.substr(dash + 1).size() || last < first || last - first > 100000)
          throw std::invalid_argument(part);
      }
      for (int64_t i = first; i <= last; ++i) ids.push_back(i);
    } catch (const std::exception&) {
      throw Error("--ids=" + text + ": expected experiment numbers and ranges, e.g. 1,3,5-8");
    }
  }
  if (ids.empty()) throw Error("--ids=" + text + ": no experiment named");
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

void compare_experiments(const CompareOptions& o, std::ostream& out) {
  static const std::set<std::string> formats = {"table", "csv", "markdown", "json"};
  if (!formats.count(o.format)) throw Error("--format=" + o.format + ": expected table, csv, markdown or json");
  const ProblemPaths paths = problem_paths(read_storage(o.home), o.problem);
  std::vector<int64_t> ids = o.ids;
  std::map<int64_t, nlohmann::json> unit_levels;  // --sweep: from its record
  std::vector<std::string> notes;                 // said under a table
  if (!o.sweep.empty()) {
    check_plain_name("--sweep", o.sweep);
    const std::string file = paths.dir + "/sweeps/" + o.sweep + "/sweep.json";
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) throw Error("--sweep=" + o.sweep + ": no such sweep (" + file + ")");
    const auto record = config::read_json_file(file);
    if (!ids.empty()) throw Error("--sweep and --ids: give one of them");
    const int64_t repeats =
        record.contains("design") && record["design"].is_object() ? record["design"].value("repeats", int64_t{1}) : 1;
    const auto existing = Logbook::list(paths.logs);
    const nlohmann::json units = record.value("units", nlohmann::json::array());
    int64_t without = 0;
    for (const auto& u : units) {
      if (!u.value("exp_id", nlohmann::json()).is_number_integer()) {
        ++without;
        continue;
      }
      const int64_t id = u["exp_id"].get<int64_t>();
      // Deleted by hand, or its number since taken by another experiment (not one of this unit's).
      const bool its = std::find(existing.begin(), existing.end(), id) != existing.end() &&
                       sweep_steps::made_for_unit(paths.logs, id, [&](const nlohmann::json& mine) {
                         return mine.is_object() && mine.value("name", "") == o.sweep &&
                                mine.value("unit", int64_t{-1}) == u.value("unit", int64_t{-2}) &&
                                mine.value("id", "") == record.value("id", "");
                       });
      if (!its) {
        notes.push_back("unit " + std::to_string(u.value("unit", int64_t{0}) + 1) + ": its experiment " +
                        std::to_string(id) + " is gone from " + paths.logs);
        continue;
      }
      ids.push_back(id);
      nlohmann::json levels = u.value("levels", nlohmann::json::object());
      if (levels.is_object() && repeats > 1) levels["repeat"] = u.value("repeat", 0);
      if (levels.is_object()) unit_levels[id] = levels;
    }
    if (without > 0)
      notes.push_back(std::to_string(without) + " of the " + std::to_string(units.size()) +
                      " units have no experiment yet");
    if (ids.empty())
      throw Error("--sweep=" + o.sweep + ": no unit has an experiment" + (notes.empty() ? "" : " (" + notes[0] + ")"));
  }
  if (ids.empty()) ids = Logbook::list(paths.logs);
  if (ids.empty()) throw Error(paths.logs + ": no experiments to compare");
  std::vector<Row> rows;
  for (int64_t id : ids) {
    Row r;
    r.id = id;
    const Logbook book = Logbook::open(paths.logs, id);  // a missing one is an error naming those there
    try {
      r.config = book.config();
    } catch (const Error&) {
      r.config = nlohmann::json::object();
    }
    r.leaves = config_leaves(r.config);
    const Saves saves = book.saves();
    r.status = saves.status_or_last();
    if (unit_levels.count(id)) {
      r.levels = unit_levels[id];
    } else if (r.config.contains("sweep") && r.config["sweep"].is_object() &&
               r.config["sweep"].value("levels", nlohmann::json()).is_object()) {
      r.levels = r.config["sweep"]["levels"];
      if (r.config["sweep"].contains("repeat")) r.levels["repeat"] = r.config["sweep"]["repeat"];
    }
    r.state = state_of(book, saves, r.status);
    rows.push_back(std::move(r));
  }
  // The columns: the config paths whose values are not the same in every row; for the units of
  // sweeps, their factors (a factor of named levels by its level's name) and repeat instead of the
  // paths their overrides set, then any other path where they differ (a base config changed
  // between units). --sweep shows its factors even where every row has the same level.
  const bool all_units = std::all_of(rows.begin(), rows.end(), [](const Row& r) { return r.levels.is_object(); });
  std::vector<std::string> factors;
  if (all_units) {
    const std::set<std::string> level_keys = put_levels(rows);
    const std::vector<std::string> differ = differing_paths(rows);
    if (!o.sweep.empty())
      factors.assign(level_keys.begin(), level_keys.end());
    else
      for (const auto& p : differ)
        if (level_keys.count(p)) factors.push_back(p);
    for (const auto& p : differ)
      if (!level_keys.count(p)) factors.push_back(p);
  } else {
    factors = differing_paths(rows);
  }
  auto factor_of = [](const Row& r, const std::string& p) {
    const auto it = r.leaves.find(p);
    return it == r.leaves.end() ? std::string("(absent)") : value_text(it->second);
  };
  auto best = [](const Row& r) {
    return r.status.contains("best") && r.status["best"].is_object()
               ? r.status["best"].value("valid_accuracy", nlohmann::json())
               : nlohmann::json();
  };
  auto test = [](const Row& r) {
    return r.status.contains("test") && r.status["test"].is_object()
               ? r.status["test"].value("accuracy", nlohmann::json())
               : nlohmann::json();
  };
  // Sorting: accuracies best first, the rest ascending; ties by experiment.
  const std::string& key = o.sort;
  const bool known_key = key == "exp" || key == "valid" || key == "test" || key == "epochs" || key == "time" ||
                         std::find(factors.begin(), factors.end(), key) != factors.end();
  if (!known_key) {
    std::string cols;
    for (const auto& f : factors) cols += ", " + f;
    throw Error("--sort=" + key + ": expected exp, valid, test, epochs, time" +
                (factors.empty() ? std::string() : " or a column (" + cols.substr(2) + ")"));
  }
  std::stable_sort(rows.begin(), rows.end(), [&](const Row& a, const Row& b) {
    if (key == "valid") return number_or(best(a), -1) > number_or(best(b), -1);
    if (key == "test") return number_or(test(a), -1) > number_or(test(b), -1);
    if (key == "epochs") return a.status.value("epochs_done", 0) < b.status.value("epochs_done", 0);
    if (key == "time")
      return number_or(a.status.value("train_seconds", nlohmann::json()), 0) <
             number_or(b.status.value("train_seconds", nlohmann::json()), 0);
    if (key != "exp") {
      // Numbers by value, then other values by their text, then rows without the path: one order
      // over a column that mixes them.
      auto rank = [&key](const Row& r) {
        const auto it = r.leaves.find(key);
        if (it == r.leaves.end()) return std::make_tuple(2, 0.0, std::string());
        if (it->second.is_number()) return std::make_tuple(0, it->second.get<double>(), std::string());
        return std::make_tuple(1, 0.0, value_text(it->second));
      };
      return rank(a) < rank(b);
    }
    return a.id < b.id;
  });

  if (!o.by.empty()) {
    // One row per level of a column: how many units, their mean validation and test accuracy,
    // and the test accuracy's range (the main effect of that factor).
    if (std::find(factors.begin(), factors.end(), o.by) == factors.end()) {
      std::string cols;
      for (const auto& f : factors) cols += ", " + f;
      throw Error(
          "--by=" + o.by + ": expected a column" +
          (factors.empty() ? std::string(" (there is none: the configs are the same)") : " (" + cols.substr(2) + ")"));
    }
    std::vector<std::string> levels;
    std::map<std::string, std::vector<const Row*>> groups;
    for (const auto& r : rows) {
      const std::string v = factor_of(r, o.by);
      if (!groups.count(v)) levels.push_back(v);
      groups[v].push_back(&r);
    }
    nlohmann::json all = nlohmann::json::array();
    std::vector<std::vector<std::string>> cells;
    for (const auto& v : levels) {
      double valid_sum = 0, test_sum = 0, lo = 1e9, hi = -1e9;
      int64_t nv = 0, nt = 0;
      for (const Row* r : groups[v]) {
        if (best(*r).is_number()) valid_sum += best(*r).get<double>(), ++nv;
        if (test(*r).is_number()) {
          const double t = test(*r).get<double>();
          test_sum += t, ++nt, lo = std::min(lo, t), hi = std::max(hi, t);
        }
      }
      const nlohmann::json mv = nv ? nlohmann::json(valid_sum / static_cast<double>(nv)) : nlohmann::json();
      const nlohmann::json mt = nt ? nlohmann::json(test_sum / static_cast<double>(nt)) : nlohmann::json();
      const nlohmann::json tl = nt ? nlohmann::json(lo) : nlohmann::json(),
                           th = nt ? nlohmann::json(hi) : nlohmann::json();
      all.push_back({{"level", v},
                     {"experiments", groups[v].size()},
                     {"tested", nt},
                     {"valid_accuracy_mean", mv},
                     {"test_accuracy_mean", mt},
                     {"test_accuracy_min", tl},
                     {"test_accuracy_max", th}});
      cells.push_back({v, std::to_string(groups[v].size()), std::to_string(nt), percent_cell(mv), percent_cell(mt),
                       percent_cell(tl), percent_cell(th)});
    }
    if (o.format == "json") {
      out << all.dump(2) << std::endl;
      return;
    }
    print_cells(o.format,
                {o.by, "experiments", "tested", "valid acc (mean)", "test acc (mean)", "test min", "test max"}, cells,
                out);
    out << std::flush;
    return;
  }
  if (o.format == "json") {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& r : rows) {
      nlohmann::json f = nlohmann::json::object();
      for (const auto& p : factors) {
        const auto it = r.leaves.find(p);
        f[p] = it == r.leaves.end() ? nlohmann::json() : it->second;
      }
      all.push_back({{"exp_id", r.id},
                     {"factors", f},
                     {"best_epoch", r.status.value("best_epoch", nlohmann::json())},
                     {"valid_accuracy", best(r)},
                     {"test_accuracy", test(r)},
                     {"epochs_done", r.status.value("epochs_done", nlohmann::json())},
                     {"max_epoch", r.status.value("max_epoch", nlohmann::json())},
                     {"train_seconds", r.status.value("train_seconds", nlohmann::json())},
                     {"state", r.state}});
    }
    out << all.dump(2) << std::endl;
    return;
  }
  std::vector<std::string> header = {"exp"};
  header.insert(header.end(), factors.begin(), factors.end());
  for (const char* h : {"best epoch", "valid acc", "test acc", "epochs", "train time", "state"}) header.push_back(h);
  std::vector<std::vector<std::string>> cells;
  for (const auto& r : rows) {
    std::vector<std::string> c = {Logbook::folder_name(r.id)};
    for (const auto& p : factors) c.push_back(factor_of(r, p));
    const int64_t be = r.status.value("best_epoch", int64_t{0});
    c.push_back(be > 0 ? std::to_string(be) : "-");
    c.push_back(percent_cell(best(r)));
    c.push_back(percent_cell(test(r)));
    c.push_back(r.status.contains("epochs_done") ? std::to_string(r.status.value("epochs_done", 0)) + "/" +
                                                       std::to_string(r.status.value("max_epoch", 0))
                                                 : "-");
    c.push_back(duration(r.status.value("train_seconds", nlohmann::json())));
    c.push_back(r.state);
    cells.push_back(std::move(c));
  }
  print_cells(o.format, header, cells, out);
  if (o.format == "table") {
    if (factors.empty()) out << "(the configs of these experiments are the same)\n";
    for (const auto& n : notes) out << "(" << n << ")\n";
  }
  out << std::flush;
}

}  // namespace quantlab::experiment
