// Sweeps: one experiment per unit of a design, a record of them, resumable.
#include "quantlab/experiment/sweep.h"

#include <algorithm>
#include <filesystem>
#include <ostream>
#include <random>
#include <set>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

nlohmann::json level_value(const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error&) {
    return text;
  }
}

nlohmann::json design_json(const SweepDesign& d) {
  nlohmann::json f = nlohmann::json::array();
  for (const auto& [path, levels] : d.factors) f.push_back({{"path", path}, {"levels", levels}});
  return {{"name", d.name}, {"factors", f}, {"repeats", d.repeats}, {"sample", d.sample}, {"seed", d.seed}};
}

std::string levels_text(const SweepUnit& u) {
  std::string s;
  for (const auto& [path, v] : u.levels) s += (s.empty() ? "" : ", ") + path + "=" + value_text(v);
  if (u.repeat > 0) s += (s.empty() ? "" : ", ") + std::string("repeat ") + std::to_string(u.repeat);
  return s;
}

// The experiment of a unit made by an earlier run that was stopped before it recorded the number.
int64_t find_unit_experiment(const std::string& logs, const std::string& name, int64_t unit) {
  for (int64_t id : Logbook::list(logs)) {
    try {
      const auto c = Logbook::open(logs, id).config();
      if (c.contains("sweep") && c["sweep"].value("name", "") == name && c["sweep"].value("unit", int64_t{-1}) == unit)
        return id;
    } catch (const Error&) {
    }
  }
  return -1;
}

}  // namespace

SweepDesign parse_design(const nlohmann::json& j, const std::string& where) {
  const JsonNode root(j, where);
  root.expect_object();
  root.allow_keys({"name", "factors", "repeats", "sample", "seed"});
  SweepDesign d;
  d.name = root.string("name", "");
  const JsonNode factors = root.at("factors");
  factors.expect_object();
  for (const auto& path : factors.keys()) {
    const JsonNode f = factors.at(path);
    if (!f.is_array() || f.size() == 0) f.fail("expected a non-empty list of levels");
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
  d.seed = static_cast<uint64_t>(root.integer("seed", 0));
  return d;
}

std::pair<std::string, std::vector<nlohmann::json>> parse_grid(const std::string& arg) {
  const size_t eq = arg.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == arg.size())
    throw ConfigError("--grid " + arg + ": expected PATH=LEVEL,LEVEL,... (e.g. treat.optimizer.params.lr=1e-3,3e-3)");
  std::vector<nlohmann::json> levels;
  size_t start = eq + 1;
  while (true) {
    const size_t comma = arg.find(',', start);
    const std::string t = arg.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    if (t.empty()) throw ConfigError("--grid " + arg + ": an empty level");
    const nlohmann::json v = level_value(t);
    if (std::find(levels.begin(), levels.end(), v) != levels.end())
      throw ConfigError("--grid " + arg + ": the level " + t + " is given twice");
    levels.push_back(v);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return {arg.substr(0, eq), levels};
}

std::vector<SweepUnit> design_units(const SweepDesign& d) {
  std::vector<SweepUnit> grid(1);
  for (const auto& [path, levels] : d.factors) {
    std::vector<SweepUnit> next;
    for (const auto& u : grid)
      for (const auto& v : levels) {
        SweepUnit w = u;
        w.levels.emplace_back(path, v);
        next.push_back(std::move(w));
      }
    grid = std::move(next);
  }
  if (d.sample > 0 && d.sample < static_cast<int64_t>(grid.size())) {
    std::mt19937_64 rng(d.seed);
    std::vector<size_t> pick(grid.size());
    for (size_t k = 0; k < pick.size(); ++k) pick[k] = k;
    std::shuffle(pick.begin(), pick.end(), rng);
    pick.resize(static_cast<size_t>(d.sample));
    std::sort(pick.begin(), pick.end());
    std::vector<SweepUnit> sampled;
    for (size_t k : pick) sampled.push_back(grid[k]);
    grid = std::move(sampled);
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
  for (const auto& [path, v] : u.levels) out.push_back(path + "=" + v.dump());
  if (u.repeat > 0) {
    const bool has_seed = base.contains("treat") && base["treat"].contains("data") &&
                          base["treat"]["data"].is_object() && base["treat"]["data"].contains("seed");
    const int64_t seed = (has_seed && base["treat"]["data"]["seed"].is_number_integer()
                              ? base["treat"]["data"]["seed"].get<int64_t>()
                              : 0) +
                         1000 * u.repeat;
    out.push_back(std::string(has_seed ? "" : "+") + "treat.data.seed=" + std::to_string(seed));
  }
  return out;
}

SweepResult run_sweep(const SweepOptions& o, const std::atomic<int>* stop, std::ostream& out) {
  const SweepDesign& d = o.design;
  if (d.factors.empty()) throw ConfigError("the sweep has no factors (a design's \"factors\", or --grid PATH=a,b)");
  if (d.name.empty()) throw ConfigError("the sweep has no name (the design's \"name\", or --name)");
  check_plain_name("the sweep's name", d.name);
  const LaunchOptions& base_launch = o.launch;
  if (base_launch.exp_id || base_launch.branch || base_launch.load || !base_launch.overrides.empty())
    throw Error("a sweep makes its own experiments: --exp_id, --load, --branch and --set do not apply");
  const Storage storage = read_storage(base_launch.home);
  const ProblemPaths paths = problem_paths(storage, base_launch.problem);
  const std::string config_file = paths.dir + "/" + base_launch.config.value_or("config.json");
  const nlohmann::json base = read_json_file(config_file);
  const std::vector<SweepUnit> units = design_units(d);
  if (static_cast<int64_t>(units.size()) > o.max_units && !o.yes)
    throw Error("the sweep has " + std::to_string(units.size()) + " units, more than " + std::to_string(o.max_units) +
                "; add --yes to run them all (or --max_units)");
  // Every unit's overrides checked against the base config before anything is made.
  for (const auto& u : units) {
    nlohmann::json c = base;
    apply_overrides(c, unit_overrides(u, base));
  }
  // The record, created or checked against this design.
  const std::string dir = paths.dir + "/sweeps/" + d.name, file = dir + "/sweep.json";
  std::error_code ec;
  nlohmann::json record;
  if (fs::exists(file, ec)) {
    try {
      record = read_json_file(file);
    } catch (const Error& e) {
      throw Error(std::string(e.what()) + " (the record of sweep " + d.name +
                  "; restore it, or give the sweep another name)");
    }
    if (!record.is_object() || record.value("design", nlohmann::json()) != design_json(d) ||
        !record.contains("units") || !record["units"].is_array() || record["units"].size() != units.size())
      throw Error(file + ": sweep " + d.name +
                  " was made with another design (or its record was edited); give this one another name");
  } else {
    fs::create_directories(dir, ec);
    if (ec) throw IoError(dir + ": cannot create the sweep's folder (" + ec.message() + ")");
    record = {{"design", design_json(d)}, {"config", config_file}, {"units", nlohmann::json::array()}};
    for (const auto& u : units) {
      nlohmann::json levels = nlohmann::json::object();
      for (const auto& [path, v] : u.levels) levels[path] = v;
      record["units"].push_back(
          {{"unit", u.index}, {"levels", levels}, {"repeat", u.repeat}, {"exp_id", nullptr}, {"state", "pending"}});
    }
    write_file_atomically(file, record.dump(2) + "\n");
  }
  ExperimentLock lock(dir, "sweep " + d.name);
  auto save = [&] { write_file_atomically(file, record.dump(2) + "\n"); };

  SweepResult result;
  result.units = static_cast<int64_t>(units.size());
  for (const auto& u : units) {
    nlohmann::json& entry = record["units"][static_cast<size_t>(u.index)];
    int64_t id = entry["exp_id"].is_number_integer() ? entry["exp_id"].get<int64_t>() : -1;
    // A unit launched before (not pending) may have made its experiment and been stopped before
    // the record got its number: looked for by its config's "sweep" entry.
    if (id < 0 && entry["state"] != "pending") id = find_unit_experiment(paths.logs, d.name, u.index);
    if (id >= 0) {
      entry["exp_id"] = id;
      const auto st = Session::status(Logbook::open(paths.logs, id));
      if (st.value("finished", false) && st.contains("test")) {
        if (entry["state"] != "finished") {
          entry["state"] = "finished";
          save();
        }
        ++result.skipped;
        ++result.finished;
        continue;
      }
    }
    out << "sweep " << d.name << ": unit " << u.index + 1 << "/" << units.size() << " (" << levels_text(u) << ")"
        << (id >= 0 ? ", resuming experiment " + std::to_string(id) : std::string()) << std::endl;
    LaunchOptions l = base_launch;
    if (id >= 0) {
      l.exp_id = id;
    } else {
      l.overrides = unit_overrides(u, base);
      l.overrides.push_back("+sweep={\"name\": " + nlohmann::json(d.name).dump() + ", \"unit\": " +
                            std::to_string(u.index) + "}");
    }
    entry["state"] = "running";
    save();
    try {
      const LaunchResult r = launch(l, stop, out);
      entry["exp_id"] = r.exp_id;
      if (r.interrupted_by != 0) {
        entry["state"] = "stopped";
        save();
        result.interrupted_by = r.interrupted_by;
        return result;
      }
      entry["state"] = "finished";
      entry.erase("error");
      ++result.finished;
    } catch (const Error& e) {
      entry["state"] = "failed";
      entry["error"] = e.what();
      const int64_t made = find_unit_experiment(paths.logs, d.name, u.index);
      if (made >= 0) entry["exp_id"] = made;
      out << "sweep " << d.name << ": unit " << u.index + 1 << " failed: " << e.what() << std::endl;
      ++result.failed;
    }
    save();
  }
  return result;
}

}  // namespace quantlab
