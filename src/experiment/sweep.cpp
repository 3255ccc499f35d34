// Sweeps: one experiment per unit of a design (sweep_design.cpp), a record of them, resumable.
#include "quantlab/experiment/sweep.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <filesystem>
#include <ostream>
#include <random>
#include <set>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/dist/environment.h"
#include "quantlab/util/error.h"
#include "quantlab/util/process.h"
#include "quantlab/util/runtime.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

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

// A sweep checked and its record made: what every way of running its units shares.
struct Sweep {
  std::string name, dir, file, logs;
  nlohmann::json base, design;
  std::vector<SweepUnit> units;
  int64_t repeats = 1;

  nlohmann::json read() const {
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
  nlohmann::json entry(int64_t unit) const {
    RecordLock lock(file);
    return read()["units"][static_cast<size_t>(unit)];
  }
  // Applies `change` to the unit's entry of the record on disk.
  void update(int64_t unit, const std::function<void(nlohmann::json&)>& change) const {
    RecordLock lock(file);
    nlohmann::json record = read();
    change(record["units"][static_cast<size_t>(unit)]);
    write_file_atomically(file, record.dump(2) + "\n");
  }
};

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
  if (l.exp_id || l.branch || l.load || !l.overrides.empty())
    throw Error("a sweep makes its own experiments: --exp_id, --load, --branch and --set do not apply");
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
  s.units = design_units(d);
  if (static_cast<int64_t>(s.units.size()) > o.max_units && !o.yes)
    throw Error("the sweep has " + std::to_string(s.units.size()) + " units, more than " + std::to_string(o.max_units) +
                "; add --yes to run them all (or --max_units)");
  if (o.unit && (*o.unit < 1 || *o.unit > static_cast<int64_t>(s.units.size())))
    throw Error("--unit=" + std::to_string(*o.unit) + ": sweep " + d.name + " has units 1 to " +
                std::to_string(s.units.size()));
  // Every unit's overrides checked against the base config before anything is made.
  for (const auto& u : s.units) {
    nlohmann::json c = s.base;
    config::apply_overrides(c, unit_overrides(u, s.base));
  }
  s.design = design_json(d);
  s.dir = paths.dir + "/sweeps/" + d.name;
  s.file = s.dir + "/sweep.json";
  std::error_code ec;
  fs::create_directories(s.dir, ec);
  if (ec) throw IoError(s.dir + ": cannot create the sweep's folder (" + ec.message() + ")");
  RecordLock lock(s.file);
  if (fs::exists(s.file, ec)) {
    s.read();  // checked against this design
  } else {
    nlohmann::json record = {{"design", s.design}, {"config", config_file}, {"units", nlohmann::json::array()}};
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

// The unit's experiment when it has one (from the record, or found by its config's "sweep" entry
// when an earlier run was stopped before it recorded the number), else -1.
int64_t unit_experiment(const Sweep& s, const SweepUnit& u, const nlohmann::json& entry) {
  if (entry["exp_id"].is_number_integer()) return entry["exp_id"].get<int64_t>();
  return entry["state"] != "pending" ? find_unit_experiment(s.logs, s.name, u.index) : -1;
}

bool experiment_finished(const Sweep& s, int64_t id) {
  if (id < 0) return false;
  const auto st = Logbook::open(s.logs, id).saves().status();
  return st.value("finished", false) && st.contains("test");
}

enum class Outcome { kFinished, kSkipped, kFailed, kStopped, kElsewhere };

std::string unit_title(const Sweep& s, const SweepUnit& u) {
  return "sweep " + s.name + ": unit " + std::to_string(u.index + 1) + "/" + std::to_string(s.units.size());
}

// Runs (or resumes, or skips) one unit in this process.
Outcome run_unit(const Sweep& s, const SweepOptions& o, const SweepUnit& u, const std::atomic<int>* stop,
                 int* interrupted_by, std::ostream& out) {
  // One process at a time runs a unit: its lock in <sweep>/units/<N>/.
  std::unique_ptr<ExperimentLock> lock;
  {
    const std::string dir = s.dir + "/units/" + std::to_string(u.index + 1);
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw IoError(dir + ": cannot create the unit's folder (" + ec.message() + ")");
    try {
      lock = std::make_unique<ExperimentLock>(dir, "unit " + std::to_string(u.index + 1) + " of sweep " + s.name);
    } catch (const IoError&) {
      throw;                    // the lock file cannot be made or read
    } catch (const Error& e) {  // held by another process
      out << unit_title(s, u) << " is running in another process (" << e.what() << "); left to it" << std::endl;
      return Outcome::kElsewhere;
    }
  }
  const nlohmann::json entry = s.entry(u.index);
  const int64_t id = unit_experiment(s, u, entry);
  if (experiment_finished(s, id)) {
    if (entry["state"] != "finished" || entry["exp_id"] != id)
      s.update(u.index, [&](nlohmann::json& e) {
        e["exp_id"] = id;
        e["state"] = "finished";
      });
    return Outcome::kSkipped;
  }
  out << unit_title(s, u) << " (" << levels_text(u) << ")"
      << (id >= 0 ? ", resuming experiment " + std::to_string(id) : std::string()) << std::endl;
  LaunchOptions l = o.launch;
  l.standalone = o.srun;
  if (id >= 0) {
    l.exp_id = id;
  } else {
    l.overrides = unit_overrides(u, s.base);
    nlohmann::json record = {{"name", s.name}, {"unit", u.index}, {"levels", nlohmann::json::object()}};
    for (const auto& [factor, level] : u.levels) record["levels"][factor] = level;
    if (s.repeats > 1) record["repeat"] = u.repeat;
    l.overrides.push_back("+sweep=" + record.dump());
  }
  s.update(u.index, [&](nlohmann::json& e) {
    if (id >= 0) e["exp_id"] = id;
    e["state"] = "running";
  });
  try {
    const LaunchResult r = launch(l, stop, out);
    if (r.interrupted_by != 0) {
      s.update(u.index, [&](nlohmann::json& e) {
        e["exp_id"] = r.exp_id;
        e["state"] = "stopped";
      });
      *interrupted_by = r.interrupted_by;
      return Outcome::kStopped;
    }
    s.update(u.index, [&](nlohmann::json& e) {
      e["exp_id"] = r.exp_id;
      e["state"] = "finished";
      e.erase("error");
    });
    return Outcome::kFinished;
  } catch (const Error& e) {
    const int64_t made = find_unit_experiment(s.logs, s.name, u.index);
    s.update(u.index, [&](nlohmann::json& en) {
      en["state"] = "failed";
      en["error"] = e.what();
      if (made >= 0) en["exp_id"] = made;
    });
    out << unit_title(s, u) << " failed: " << e.what() << std::endl;
    return Outcome::kFailed;
  }
}

void count(SweepResult& r, Outcome o) {
  switch (o) {
    case Outcome::kSkipped:
      ++r.skipped;
      [[fallthrough]];
    case Outcome::kFinished:
      ++r.finished;
      break;
    case Outcome::kFailed:
      ++r.failed;
      break;
    case Outcome::kElsewhere:
      ++r.elsewhere;
      break;
    case Outcome::kStopped:
      break;
  }
}

// --parallel=K: K units at a time, each `command --unit=N [--threads=T]` in a process of its own
// with its output in <sweep>/units/<N>/output.log. The children update the record themselves.
SweepResult run_parallel(const Sweep& s, const SweepOptions& o, const std::vector<const SweepUnit*>& mine,
                         const std::atomic<int>* stop, std::ostream& out) {
  if (o.command.empty()) throw Error("--parallel: no command to start the units with (SweepOptions::command)");
  const int threads = o.launch.threads > 0 ? o.launch.threads : std::max(1, available_cores() / o.parallel);
  SweepResult result;
  result.units = static_cast<int64_t>(mine.size());
  std::vector<const SweepUnit*> queue;
  for (const SweepUnit* u : mine) {  // finished units skipped here, without a process
    const nlohmann::json entry = s.entry(u->index);
    const int64_t id = unit_experiment(s, *u, entry);
    if (experiment_finished(s, id)) {
      if (entry["state"] != "finished")
        s.update(u->index, [&](nlohmann::json& e) {
          e["exp_id"] = id;
          e["state"] = "finished";
        });
      count(result, Outcome::kSkipped);
    } else {
      queue.push_back(u);
    }
  }
  out << "sweep " << s.name << ": " << queue.size() << " units to run, " << o.parallel << " at a time with " << threads
      << " thread" << (threads == 1 ? "" : "s") << " each; their output in " << s.dir << "/units/<N>/output.log"
      << std::endl;
  struct Child {
    pid_t pid;
    const SweepUnit* unit;
    std::string log;
  };
  std::vector<Child> running;
  size_t next = 0;
  int forwarded = 0;
  const pid_t parent = ::getpid();
  ::signal(SIGCHLD, SIG_DFL);  // the children are waited for, not reaped by the system
  // The command without --threads when the sweep chooses the units' threads.
  std::vector<std::string> base;
  for (size_t k = 0; k < o.command.size(); ++k) {
    const std::string& a = o.command[k];
    if (o.launch.threads <= 0 && k > 0 && a == "--threads") {
      ++k;
      continue;
    }
    if (o.launch.threads <= 0 && k > 0 && a.rfind("--threads=", 0) == 0) continue;
    base.push_back(a);
  }
  while (true) {
    const int signal = stop ? stop->load() : 0;
    if (signal != 0 && forwarded == 0) {
      forwarded = signal;
      for (const Child& c : running) ::kill(c.pid, signal);  // once: each stops between two batches
      result.interrupted_by = signal;
    }
    while (forwarded == 0 && running.size() < static_cast<size_t>(o.parallel) && next < queue.size()) {
      const SweepUnit* u = queue[next++];
      const std::string dir = s.dir + "/units/" + std::to_string(u->index + 1), log = dir + "/output.log";
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (ExperimentLock::holder(dir) != 0) {  // another process runs it: left to it
        out << unit_title(s, *u) << " is running in another process (PID " << ExperimentLock::holder(dir)
            << "); left to it" << std::endl;
        count(result, Outcome::kElsewhere);
        continue;
      }
      // Marked, so that what the record says after the process ends is this process's doing.
      s.update(u->index, [&](nlohmann::json& e) {
        e["state"] = "starting";
        e.erase("error");
      });
      std::vector<std::string> args = base;
      args.push_back("--unit=" + std::to_string(u->index + 1));
      if (o.launch.threads <= 0) args.push_back("--threads=" + std::to_string(threads));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const pid_t pid = ::fork();
      if (pid < 0)
        throw Error("--parallel: cannot start a process for unit " + std::to_string(u->index + 1) + ": " +
                    std::strerror(errno));
      if (pid == 0) {
        ::setpgid(0, 0);                     // the terminal's Ctrl-C reaches this sweep only, which forwards it once
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a sweep that dies stops its units (resumable)
        if (::getppid() != parent) ::_exit(143);
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
          ::dup2(fd, 1);
          ::dup2(fd, 2);
        }
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      ::setpgid(pid, pid);  // also here: no window in which a Ctrl-C reaches the child first
      running.push_back({pid, u, log});
      out << unit_title(s, *u) << " (" << levels_text(*u) << ") started, PID " << pid << std::endl;
    }
    if (running.empty()) break;
    // Which child ended, if any (each waited for by its PID).
    std::optional<Child> ended;
    int status = 0;
    for (auto it = running.begin(); it != running.end(); ++it) {
      const pid_t r = ::waitpid(it->pid, &status, WNOHANG);
      if (r == it->pid || (r < 0 && errno == ECHILD)) {
        if (r < 0) status = -1;  // reaped elsewhere: its exit status is unknown
        ended = *it;
        running.erase(it);
        break;
      }
    }
    if (!ended) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const Child& c = *ended;
    const nlohmann::json entry = s.entry(c.unit->index);
    const std::string state = entry.value("state", "");
    const std::string exp =
        entry["exp_id"].is_number_integer() ? ", experiment " + std::to_string(entry["exp_id"].get<int64_t>()) : "";
    const std::string how =
        status == -1 ? std::string("ended (its exit status was not kept)") : exit_description(status);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == kExitElsewhere) {
      count(result, Outcome::kElsewhere);
      out << unit_title(s, *c.unit) << " was taken by another process first; left to it" << std::endl;
    } else if (state == "finished") {
      count(result, Outcome::kFinished);
      out << unit_title(s, *c.unit) << " finished" << exp << std::endl;
    } else if (state == "stopped") {
      out << unit_title(s, *c.unit) << " stopped" << exp << std::endl;
    } else if (state == "failed") {
      count(result, Outcome::kFailed);
      out << unit_title(s, *c.unit) << " failed" << exp << ": " << entry.value("error", "") << std::endl;
    } else if (forwarded != 0) {  // stopped before it could say so (a second signal, a kill)
      s.update(c.unit->index, [&](nlohmann::json& e) { e["state"] = state == "starting" ? "pending" : "stopped"; });
      out << unit_title(s, *c.unit) << " stopped (its process " << how << ")" << exp << std::endl;
    } else {
      // The process ended without saying (a crash, a kill): recorded as failed, with its log.
      const std::string why = "its process " + how + "; its output: " + c.log;
      s.update(c.unit->index, [&](nlohmann::json& e) {
        e["state"] = "failed";
        e["error"] = why;
      });
      count(result, Outcome::kFailed);
      out << unit_title(s, *c.unit) << " failed" << exp << ": " << why << std::endl;
    }
  }
  return result;
}

}  // namespace

SweepResult run_sweep(const SweepOptions& o, const std::atomic<int>* stop, std::ostream& out) {
  // A unit runs in one process: a sweep under torchrun, --nproc or srun (without --srun, which
  // shares the units among SLURM's tasks) would run every unit in every process.
  if (!o.srun && dist::environment_from_process({o.launch.master_addr, o.launch.master_port}))
    throw Error(
        "quantlab sweep runs each unit in one process; under srun give --srun (the tasks share the units), "
        "on one machine --parallel=K; a data-parallel launcher (torchrun, --nproc) does not apply");
  const Sweep s = prepare(o);
  std::vector<const SweepUnit*> mine;
  if (o.unit) {
    mine.push_back(&s.units[static_cast<size_t>(*o.unit - 1)]);
  } else if (o.srun) {
    const char* id = std::getenv("SLURM_PROCID");
    const char* n = std::getenv("SLURM_NTASKS");
    if (!id || !n)
      throw Error(
          "--srun: SLURM_PROCID and SLURM_NTASKS are not set; start the sweep with srun (srun -n K quantlab sweep ... "
          "--srun)");
    int64_t task = -1, tasks = 0;
    try {
      task = std::stoll(id), tasks = std::stoll(n);
    } catch (const std::exception&) {
    }
    if (tasks < 1 || task < 0 || task >= tasks)
      throw Error(std::string("--srun: SLURM_PROCID=") + id + " and SLURM_NTASKS=" + n + " are not a task of the job");
    for (const auto& u : s.units)
      if (u.index % tasks == task) mine.push_back(&u);
    out << "sweep " << s.name << ": task " << task << " of " << tasks << " runs " << mine.size() << " of the "
        << s.units.size() << " units" << std::endl;
  } else {
    for (const auto& u : s.units) mine.push_back(&u);
  }
  // A whole sweep (not a unit or a task's share) is run by one process at a time: its lock.
  std::unique_ptr<ExperimentLock> lock;
  if (!o.unit && !o.srun) lock = std::make_unique<ExperimentLock>(s.dir, "sweep " + s.name);
  if (o.parallel > 1) return run_parallel(s, o, mine, stop, out);
  SweepResult result;
  result.units = static_cast<int64_t>(mine.size());
  for (const SweepUnit* u : mine) {
    const Outcome r = run_unit(s, o, *u, stop, &result.interrupted_by, out);
    count(result, r);
    if (r == Outcome::kStopped) break;
  }
  return result;
}

}  // namespace quantlab::experiment
