// Sweep designs: a design file or --grid parsed, its units, and each unit's config changes.
#include "quantlab/experiment/sweep_design.h"

#include <algorithm>
#include <climits>
#include <map>
#include <random>
#include <set>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/config_diff.h"
#include "quantlab/topology/network_spec.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

nlohmann::json level_value(const std::string& text, const std::string& arg) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    return text;
  } catch (const nlohmann::json::out_of_range&) {  // 1e999
    throw ConfigError("--grid " + arg + ": the level " + text + " is a number beyond the range of a double");
  }
}

}  // namespace

nlohmann::json design_json(const SweepDesign& d) {
  nlohmann::json f = nlohmann::json::array();
  for (const auto& [path, levels] : d.factors) {
    f.push_back({{"path", path}, {"levels", levels}});
    if (d.named.count(path)) f.back()["sets"] = d.named.at(path);
  }
  return {{"name", d.name}, {"factors", f}, {"repeats", d.repeats}, {"sample", d.sample}, {"seed", d.seed}};
}

std::string levels_text(const SweepUnit& u) {
  std::string s;
  for (const auto& [path, v] : u.levels) s += (s.empty() ? "" : ", ") + path + "=" + value_text(v);
  if (u.repeat > 0) s += (s.empty() ? "" : ", ") + std::string("repeat ") + std::to_string(u.repeat);
  return s;
}

SweepDesign parse_design(const nlohmann::json& j, const std::string& where) {
  const config::JsonNode root(j, where);
  root.expect_object();
  root.allow_keys({"name", "factors", "repeats", "sample", "seed"});
  SweepDesign d;
  d.name = root.string("name", "");
  const config::JsonNode factors = root.at("factors");
  factors.expect_object();
  for (const auto& path : factors.keys()) {
    const config::JsonNode f = factors.at(path);
    if (f.is_object()) {  // named levels, each a set of paths' values
      if (f.size() == 0) f.fail("expected at least one named level ({\"LEVEL\": {\"PATH\": value, ...}})");
      std::vector<nlohmann::json> names;
      for (const auto& level : f.keys()) {
        const config::JsonNode sets = f.at(level);
        if (!sets.is_object() || sets.size() == 0)
          sets.fail("expected the config paths this level sets, {\"PATH\": value, ...}");
        names.push_back(level);
      }
      d.factors.emplace_back(path, std::move(names));
      d.named[path] = f.json();
      continue;
    }
    if (!f.is_array() || f.size() == 0)
      f.fail("expected a non-empty list of levels (or named levels, {\"LEVEL\": {\"PATH\": value, ...}})");
    std::vector<nlohmann::json> levels;
    for (size_t k = 0; k < f.size(); ++k) {
      const nlohmann::json& v = f.at(k).json();
      if (std::find(levels.begin(), levels.end(), v) != levels.end())
        f.at(k).fail("the level " + value_text(v) + " is given twice (the sweep would run the same unit twice)");
      levels.push_back(v);
    }
    d.factors.emplace_back(path, std::move(levels));
  }
  d.repeats = root.integer("repeats", 1);
  if (d.repeats < 1 || d.repeats > 1000) root.at("repeats").fail("expected 1 to 1000 repeats");
  d.sample = root.integer("sample", 0);
  if (d.sample < 0) root.at("sample").fail("expected a number of units >= 0 (0: all)");
  const int64_t seed = root.integer("seed", 0);
  if (seed < 0) root.at("seed").fail("expected a seed >= 0");
  d.seed = static_cast<uint64_t>(seed);
  return d;
}

SweepDesign read_design(const std::string& file) {
  const nlohmann::json j = config::read_json_file(file);  // its errors name the file
  try {
    SweepDesign d = parse_design(j, "");
    d.file = file;
    return d;
  } catch (const ConfigError& e) {
    throw ConfigError("design " + file + ": " + e.what());
  }
}

std::pair<std::string, std::vector<nlohmann::json>> parse_grid(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size())
    throw ConfigError("--grid " + arg + ": expected PATH=LEVEL,LEVEL,... (e.g. treat.optimizer.params.lr=1e-3,3e-3)");
  std::vector<nlohmann::json> levels;
  // A comma inside brackets, braces or quotes belongs to a level (a list such as [0.3,0.3]).
  const auto next_comma = [&arg](size_t from) {
    int depth = 0;
    bool quoted = false;
    for (size_t i = from; i < arg.size(); ++i) {
      const char c = arg[i];
      if (quoted) {
        if (c == '\\')
          ++i;
        else if (c == '"')
          quoted = false;
      } else if (c == '"') {
        quoted = true;
      } else if (c == '[' || c == '{') {
        ++depth;
      } else if ((c == ']' || c == '}') && depth > 0) {
        --depth;
      } else if (c == ',' && depth == 0) {
        return i;
      }
    }
    // An opening that never closes would make the rest one string level, refused far from its cause.
    if (depth > 0 || quoted) throw ConfigError("--grid " + arg + ": a level opens a [, { or \" that it does not close");
    return std::string::npos;
  };
  size_t start = eq + 1;
  while (true) {
    const size_t comma = next_comma(start);
    const std::string t = arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (t.empty()) throw ConfigError("--grid " + arg + ": an empty level");
    const nlohmann::json v = level_value(t, arg);
    if (std::find(levels.begin(), levels.end(), v) != levels.end())
      throw ConfigError("--grid " + arg + ": the level " + t + " is given twice");
    levels.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return {arg.substr(0, eq), levels};
}

namespace {

// The number of grid points (levels multiplied), saturating at INT64_MAX.
int64_t grid_size(const SweepDesign& d) {
  int64_t n = 1;
  for (const auto& f : d.factors)
    if (__builtin_mul_overflow(n, static_cast<int64_t>(f.second.size()), &n)) return INT64_MAX;
  return n;
}

// Grid point `k` (the last factor fastest).
SweepUnit grid_point(const SweepDesign& d, int64_t k) {
  SweepUnit w;
  std::vector<size_t> digit(d.factors.size());
  for (size_t f = d.factors.size(); f-- > 0;) {
    const auto n = static_cast<int64_t>(d.factors[f].second.size());
    digit[f] = static_cast<size_t>(k % n);
    k /= n;
  }
  for (size_t f = 0; f < d.factors.size(); ++f) {
    const auto& [path, levels] = d.factors[f];
    const nlohmann::json& v = levels[digit[f]];
    w.levels.emplace_back(path, v);
    if (d.named.count(path)) {
      const nlohmann::json& sets = d.named.at(path).at(v.get<std::string>());
      for (auto it = sets.begin(); it != sets.end(); ++it) w.settings.emplace_back(it.key(), it.value());
    } else {
      w.settings.emplace_back(path, v);
    }
  }
  return w;
}

// The grid points a sample takes: the first `sample` of a seeded shuffle of them all, in grid
// order. Beyond 10 million points (where the shuffle's indices alone would take 80 MB and more),
// distinct points drawn one at a time.
std::vector<int64_t> sampled_points(const SweepDesign& d, int64_t total) {
  std::mt19937_64 rng(d.seed);
  std::vector<int64_t> pick;
  if (total <= 10000000) {
    pick.resize(static_cast<size_t>(total));
    for (size_t k = 0; k < pick.size(); ++k) pick[k] = static_cast<int64_t>(k);
    std::shuffle(pick.begin(), pick.end(), rng);
    pick.resize(static_cast<size_t>(d.sample));
  } else {
    std::set<int64_t> chosen;
    std::uniform_int_distribution<int64_t> any(0, total - 1);
    while (static_cast<int64_t>(chosen.size()) < d.sample) chosen.insert(any(rng));
    pick.assign(chosen.begin(), chosen.end());
  }
  std::sort(pick.begin(), pick.end());
  return pick;
}

}  // namespace

int64_t unit_count(const SweepDesign& d) {
  int64_t n = grid_size(d);
  if (d.sample > 0 && d.sample < n) n = d.sample;
  return __builtin_mul_overflow(n, std::max<int64_t>(d.repeats, 1), &n) ? INT64_MAX : n;
}

std::vector<SweepUnit> design_units(const SweepDesign& d) {
  const int64_t total = grid_size(d);
  std::vector<SweepUnit> grid;
  if (d.sample > 0 && d.sample < total) {
    for (int64_t k : sampled_points(d, total)) grid.push_back(grid_point(d, k));
  } else {
    for (int64_t k = 0; k < total; ++k) grid.push_back(grid_point(d, k));
  }
  // Two units that set the same values (named levels that differ only in name) would run twice.
  std::map<std::string, size_t> seen;
  for (size_t k = 0; k < grid.size(); ++k) {
    nlohmann::json settings = nlohmann::json::object();
    for (const auto& [path, v] : grid[k].settings) settings[path] = v;
    const auto [it, fresh] = seen.emplace(settings.dump(), k);
    if (!fresh)
      throw ConfigError("the design's units " + levels_text(grid[it->second]) + " and " + levels_text(grid[k]) +
                        " set the same values: the sweep would run one experiment twice");
  }
  std::vector<SweepUnit> units;
  for (int64_t r = 0; r < d.repeats; ++r)
    for (const auto& u : grid) {
      SweepUnit w = u;
      w.repeat = r;
      w.index = static_cast<int64_t>(units.size());
      units.push_back(std::move(w));
    }
  return units;
}

std::vector<std::string> unit_overrides(const SweepUnit& u, const nlohmann::json& base) {
  std::vector<std::string> out;
  for (const auto& [path, v] : u.settings) out.push_back(path + "=" + v.dump());
  if (u.repeat > 0) {
    const bool has_seed = base.contains("treat") && base["treat"].contains("data") &&
                          base["treat"]["data"].is_object() && base["treat"]["data"].contains("seed");
    int64_t seed = has_seed && base["treat"]["data"]["seed"].is_number_integer()
                       ? base["treat"]["data"]["seed"].get<int64_t>()
                       : 0;
    // A factor that sets the seed itself (or adds it, "+treat.data.seed"): its level's seed is the
    // first repeat's, and the repeat's override then changes a seed that is there.
    bool set_here = false;
    for (const auto& [path, v] : u.settings)
      if ((path == "treat.data.seed" || path == "+treat.data.seed") && v.is_number_integer()) {
        seed = v.get<int64_t>();
        set_here = true;
      }
    out.push_back(std::string(has_seed || set_here ? "" : "+") +
                  "treat.data.seed=" + std::to_string(seed + 1000 * u.repeat));
  }
  return out;
}

void check_unit_configs(const std::vector<SweepUnit>& units, const nlohmann::json& base, const std::string& topology,
                        bool build) {
  std::map<std::string, const SweepUnit*> seen;  // a config's text -> the first unit with it
  for (const auto& u : units) {
    const std::vector<std::string> args = unit_overrides(u, base);
    nlohmann::json c = base;
    try {
      config::apply_overrides(c, args);
    } catch (const ConfigError& e) {
      // The override's own error without its "--set ARG: " (the user gave a design, not --set).
      std::string why = e.what();
      for (const auto& a : args)
        if (why.rfind("--set " + a + ": ", 0) == 0) why = why.substr(a.size() + 8);
      throw ConfigError("unit " + std::to_string(u.index + 1) + " of the sweep (" + levels_text(u) + "): " + why);
    }
    // The experiment as its launch will build it (the network class against --topology, an unknown
    // optimizer, a width or a rate out of range, ...), not when the unit's turn comes, hours into
    // the sweep, or a bad --set after a record that then blocked the sweep's name.
    try {
      if (build) {
        const train::Experiment exp(c, topology, torch::kCPU);
      } else if (!topology.empty() && c.contains("indiv") && c["indiv"].is_object() && c["indiv"].contains("net")) {
        (void)topology::parse_network_spec(config::JsonNode(c["indiv"]["net"], "indiv.net"), topology);
      }
    } catch (const std::exception& e) {
      throw ConfigError("unit " + std::to_string(u.index + 1) + " of the sweep (" + levels_text(u) +
                        "): " + first_line(e.what()));
    }
    c.erase("overrides");
    const auto [it, fresh] = seen.emplace(c.dump(), &u);
    if (!fresh)
      throw ConfigError("units " + std::to_string(it->second->index + 1) + " (" + levels_text(*it->second) + ") and " +
                        std::to_string(u.index + 1) + " (" + levels_text(u) +
                        ") of the sweep give the same config: it would train one experiment twice (factors that set "
                        "the same path, or a factor of treat.data.seed beside repeats whose seeds meet?)");
  }
}

}  // namespace quantlab::experiment
