// A sweep's record (<Problem>/sweeps/<name>/sweep.json): made and checked, read and changed under
// its lock, and the experiments of its units.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <random>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/config_diff.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "launch_steps.h"
#include "sweep_steps.h"

namespace quantlab::experiment::sweep_steps {
namespace {

namespace fs = std::filesystem;

// The record is read, changed and written under a short lock of its own (sweep.json.lock), so that
// the processes of one sweep (--parallel's children, the tasks of a job array or of srun) keep it
// whole. flock(): released by the system if the holder dies.
class RecordLock {
 public:
  explicit RecordLock(const std::string& file) {
    const std::string lock = file + ".lock";
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd_ < 0) throw IoError(lock + ": cannot open the sweep record's lock (" + std::strerror(errno) + ")");
    while (::flock(fd_, LOCK_EX) != 0)
      if (errno != EINTR) throw IoError(lock + ": cannot lock (" + std::strerror(errno) + ")");
  }
  ~RecordLock() { ::close(fd_); }
  RecordLock(const RecordLock&) = delete;
  RecordLock& operator=(const RecordLock&) = delete;

 private:
  int fd_ = -1;
};

std::string random_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// Whether two config paths set the same values: equal, or one inside the other, a "*" step
// matching any one step.
bool paths_overlap(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  for (size_t k = 0; k < a.size() && k < b.size(); ++k)
    if (a[k] != b[k] && a[k] != "*" && b[k] != "*") return false;
  return true;
}

// A design's path in steps ("+" and all; one that is no path is refused later, with the unit).
std::vector<std::string> steps_of(const std::string& path) {
  try {
    return config::parse_override(path + "=0").path;
  } catch (const ConfigError&) {
    return {"\n"};  // overlaps nothing
  }
}

// A record made from another base config than the one there now is refused, naming what changed:
// the units made so far ran with the config as it was.
void check_base(const Sweep& s, const nlohmann::json& record, const std::string& config) {
  if (!record.contains("base_config") || record["base_config"] == s.base) return;
  const auto diffs = config_differences(record["base_config"], s.base);
  std::string what;
  for (size_t k = 0; k < diffs.size() && k < 5; ++k) {
    const auto& d = diffs[k];
    what += std::string(k ? "; " : "") + d.path + " " + (d.in_a ? value_text(d.a) : "(absent)") + " -> " +
            (d.in_b ? value_text(d.b) : "(absent)");
  }
  if (diffs.size() > 5) what += "; and " + std::to_string(diffs.size() - 5) + " more";
  throw Error(config + " is not the config sweep " + s.name + " was made from (" +
              (what.empty() ? std::string("the records of overrides differ") : what) +
              "): its units so far ran with that one. Restore it, with the sweep's --set if it had any (the same "
              "arguments in the same order; the sweep's record keeps the config: " +
              s.file + ", \"base_config\", its --set under \"overrides\"), or give this sweep another name");
}

}  // namespace

nlohmann::json Sweep::read() const {
  nlohmann::json record;
  try {
    record = config::read_json_file(file);
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + " (the record of sweep " + name +
                "; restore it, or give the sweep another name)");
  }
  if (!record.is_object() || record.value("design", nlohmann::json()) != design || !record.contains("units") ||
      !record["units"].is_array() || record["units"].size() != units.size())
    throw Error(file + ": sweep " + name +
                " was made with another design (or its record was edited); give this one another name");
  return record;
}

nlohmann::json Sweep::entry(int64_t unit) const {
  RecordLock lock(file);
  return read()["units"][static_cast<size_t>(unit)];
}

void Sweep::update(int64_t unit, const std::function<void(nlohmann::json&)>& change) const {
  RecordLock lock(file);
  nlohmann::json record = read();
  change(record["units"][static_cast<size_t>(unit)]);
  write_file_atomically(file, record.dump(2) + "\n");
}

namespace {

// Runs `f`; a ConfigError it throws about the design's factors or units begins with the design
// file's name, as the file's own errors do (not one of the problem's config or of --set).
template <typename F>
auto in_design(const SweepDesign& d, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const ConfigError& e) {
    if (d.file.empty()) throw;
    throw ConfigError("design " + d.file + ": " + e.what());
  }
}

}  // namespace

Sweep prepare(const SweepOptions& o) {
  const SweepDesign& d = o.design;
  if (d.factors.empty()) throw ConfigError("the sweep has no factors (a design's \"factors\", or --grid PATH=a,b)");
  if (d.name.empty()) throw ConfigError("the sweep has no name (the design's \"name\", or --name)");
  for (size_t i = 0; i < d.factors.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (d.factors[i].first == d.factors[j].first)
        throw ConfigError("the factor " + d.factors[i].first + " is given twice (in the design and by --grid?)");
  check_plain_name("the sweep's name", d.name);
  const LaunchOptions& l = o.launch;
  launch_steps::check_flags(l);  // what every unit's launch would refuse, refused once before anything is made
  if (l.exp_id || l.branch || l.load)
    throw Error("a sweep makes its own experiments: --exp_id, --load and --branch do not apply");
  if (o.parallel < 1) throw Error("--parallel: expected 1 or more processes");
  if (o.parallel > 1 && (o.unit || o.srun))
    throw Error("--parallel runs units in processes of its own; --unit and --srun run them in this one");
  if (o.unit && o.srun) throw Error("--unit and --srun: one of them (--srun shares every unit among SLURM's tasks)");
  const Storage storage = read_storage(l.home);
  const ProblemPaths paths = problem_paths(storage, l.problem);
  Sweep s;
  s.name = d.name;
  s.repeats = d.repeats;
  s.logs = paths.logs;
  const std::string config_file = paths.dir + "/" + l.config.value_or("config.json");
  s.base = config::read_json_file(config_file);
  // The entries the sweep writes itself are no factor's (every unit failed on them, after a record).
  in_design(d, [&] {
    for (const auto& [factor, levels] : d.factors) {
      std::vector<std::string> set = {factor};
      if (d.named.count(factor)) {
        set.clear();
        for (const auto& level : d.named.at(factor).items())
          for (const auto& path : level.value().items()) set.push_back(path.key());
      }
      for (const auto& path : set) {
        const std::vector<std::string> steps = steps_of(path);
        if (!steps.empty() && (steps[0] == "sweep" || steps[0] == "overrides"))
          throw ConfigError("the factor " + factor + " sets " + path + ": the sweep writes \"" + steps[0] +
                            "\" itself");
      }
    }
  });
  // Counted before the units are made: a grid of millions took gigabytes first.
  const int64_t count = unit_count(d);
  const std::string many = count == INT64_MAX ? std::string("more than 9e18") : std::to_string(count);
  if (count > o.max_units && !o.yes)
    throw Error("the sweep has " + many + " units, more than " + std::to_string(o.max_units) +
                "; add --yes to run them all (or --max_units)");
  if (count > 1000000)
    throw Error("the sweep has " + many + " units; one sweep holds at most 1000000 (take a sample with --sample)");
  s.units = in_design(d, [&] { return design_units(d); });
  // --set changes the config every unit starts from; a factor's levels, applied after, would undo
  // it where they set the same path, one above it or one below it.
  for (const std::string& arg : l.overrides) {
    const std::vector<std::string> path = config::parse_override(arg).path;
    if (!path.empty() && (path[0] == "sweep" || path[0] == "overrides"))
      throw ConfigError("--set " + arg + ": the sweep writes \"" + path[0] + "\" itself");
    for (const auto& u : s.units)
      for (const auto& setting : u.settings)
        if (paths_overlap(path, steps_of(setting.first)))
          throw ConfigError("--set " + arg + ": the sweep's units set " + setting.first + " (" + levels_text(u) +
                            "); give its values as a factor, or leave it out of the design");
  }
  s.set = l.overrides;
  config::apply_overrides(s.base, l.overrides);
  if (o.unit && (*o.unit < 1 || *o.unit > static_cast<int64_t>(s.units.size())))
    throw Error("--unit=" + std::to_string(*o.unit) + ": sweep " + d.name + " has units 1 to " +
                std::to_string(s.units.size()));
  s.design = design_json(d);
  s.dir = paths.dir + "/sweeps/" + d.name;
  s.file = s.dir + "/sweep.json";
  std::error_code ec;
  // Before anything is made; the units' experiments are built once, by the run that makes the
  // record (a record's base config and --set cannot change afterwards: check_base), not again by
  // each --parallel, --unit or --srun process of the sweep.
  in_design(d, [&] { check_unit_configs(s.units, s.base, l.topology, /*build=*/!fs::exists(s.file, ec)); });
  fs::create_directories(s.dir, ec);
  if (ec) throw IoError(s.dir + ": cannot create the sweep's folder (" + ec.message() + ")");
  RecordLock lock(s.file);
  if (fs::exists(s.file, ec)) {
    const nlohmann::json record = s.read();  // checked against this design
    check_base(s, record, config_file + (s.set.empty() ? "" : " with this command's --set"));
    s.id = record.value("id", "");
  } else {
    s.id = random_id();
    nlohmann::json record = {{"design", s.design},
                             {"id", s.id},
                             {"config", config_file},
                             {"base_config", s.base},
                             {"units", nlohmann::json::array()}};
    for (const auto& u : s.units) {
      nlohmann::json levels = nlohmann::json::object();
      for (const auto& [path, v] : u.levels) levels[path] = v;
      record["units"].push_back(
          {{"unit", u.index}, {"levels", levels}, {"repeat", u.repeat}, {"exp_id", nullptr}, {"state", "pending"}});
    }
    write_file_atomically(s.file, record.dump(2) + "\n");
  }
  return s;
}

nlohmann::json unit_record(const Sweep& s, const SweepUnit& u) {
  nlohmann::json record = {{"name", s.name}, {"unit", u.index}, {"levels", nlohmann::json::object()}};
  if (!s.id.empty()) record["id"] = s.id;
  if (!s.set.empty()) record["set"] = s.set;
  for (const auto& [factor, level] : u.levels) record["levels"][factor] = level;
  if (s.repeats > 1) record["repeat"] = u.repeat;
  return record;
}

bool made_for_unit(const std::string& logs, int64_t id, const std::function<bool(const nlohmann::json&)>& entry) {
  try {
    const Logbook book = Logbook::open(logs, id);
    return book.parent().is_null() && entry(book.config().value("sweep", nlohmann::json()));
  } catch (const Error&) {
    return false;
  }
}

namespace {

// The experiment `id` is the unit's: its config carries the unit's "sweep" entry.
bool is_units(const Sweep& s, const nlohmann::json& mine, int64_t id) {
  return made_for_unit(s.logs, id, [&](const nlohmann::json& e) { return e == mine; });
}

}  // namespace

int64_t find_unit_experiment(const Sweep& s, const SweepUnit& u) {
  const nlohmann::json mine = unit_record(s, u);
  for (int64_t id : Logbook::list(s.logs))
    if (is_units(s, mine, id)) return id;
  return -1;
}

int64_t unit_experiment(const Sweep& s, const SweepUnit& u, const nlohmann::json& entry, std::ostream& out) {
  if (entry["exp_id"].is_number_integer()) {
    const int64_t id = entry["exp_id"].get<int64_t>();
    if (is_units(s, unit_record(s, u), id)) return id;
    // Deleted by hand, or its number now another experiment's (a deleted last number is reused).
    out << unit_title(s, u) << ": its experiment " << id << " is gone from " << s.logs << "; the unit runs again"
        << std::endl;
    return find_unit_experiment(s, u);
  }
  return entry["state"] != "pending" ? find_unit_experiment(s, u) : -1;
}

bool experiment_finished(const Sweep& s, int64_t id) {
  if (id < 0) return false;
  const auto st = Logbook::open(s.logs, id).saves().status();
  return st.value("finished", false) && st.contains("test");
}

UnitState unit_state(const Sweep& s, const SweepUnit& u, std::ostream& out) {
  const nlohmann::json entry = s.entry(u.index);
  UnitState st;
  st.id = unit_experiment(s, u, entry, out);
  st.finished = experiment_finished(s, st.id);
  if (st.finished && (entry["state"] != "finished" || entry["exp_id"] != st.id))
    s.update(u.index, [&](nlohmann::json& e) {
      e["exp_id"] = st.id;
      e["state"] = "finished";
      e.erase("error");
    });
  return st;
}

}  // namespace quantlab::experiment::sweep_steps
