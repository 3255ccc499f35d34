// One unit of a sweep run in this process: its lock, its experiment made or resumed, the record.
#include <exception>
#include <filesystem>
#include <memory>
#include <ostream>

#include "quantlab/experiment/lock.h"
#include "quantlab/util/error.h"
#include "sweep_steps.h"

namespace quantlab::experiment::sweep_steps {
namespace {

namespace fs = std::filesystem;

// The unit failed: recorded with its error (and its experiment, when one was made).
Outcome failed(const Sweep& s, const SweepUnit& u, const std::string& why, std::ostream& out) {
  const int64_t made = find_unit_experiment(s, u);
  s.update(u.index, [&](nlohmann::json& en) {
    en["state"] = "failed";
    en["error"] = why;
    if (made >= 0) en["exp_id"] = made;
  });
  out << unit_title(s, u) << " failed: " << why << std::endl;
  return Outcome::kFailed;
}

}  // namespace

std::string unit_title(const Sweep& s, const SweepUnit& u) {
  return "sweep " + s.name + ": unit " + std::to_string(u.index + 1) + "/" + std::to_string(s.units.size());
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
  const UnitState state = unit_state(s, u, out);
  if (state.finished) return Outcome::kSkipped;
  const int64_t id = state.id;
  out << unit_title(s, u) << " (" << levels_text(u) << ")"
      << (id >= 0 ? ", resuming experiment " + std::to_string(id) : std::string()) << std::endl;
  LaunchOptions l = o.launch;
  l.standalone = o.srun;
  if (id >= 0) {
    l.exp_id = id;
    l.overrides.clear();  // the sweep's --set, already in the experiment's config
  } else {
    for (const std::string& arg : unit_overrides(u, s.base)) l.overrides.push_back(arg);  // after the sweep's --set
    l.overrides.push_back("+sweep=" + unit_record(s, u).dump());
    l.on_created = [&](int64_t made) { s.update(u.index, [&](nlohmann::json& e) { e["exp_id"] = made; }); };
  }
  s.update(u.index, [&](nlohmann::json& e) {
    e["exp_id"] = id >= 0 ? nlohmann::json(id) : nlohmann::json();
    e["state"] = "running";
    e.erase("error");
  });
  try {
    const LaunchResult r = launch(l, stop, out);
    if (r.interrupted_by != 0) {
      s.update(u.index, [&](nlohmann::json& e) {
        // Stopped during its start-up, a new experiment is not made: the unit is as it was.
        e["exp_id"] = r.exp_id >= 0 ? nlohmann::json(r.exp_id) : nlohmann::json();
        e["state"] = r.exp_id >= 0 ? "stopped" : "pending";
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
    return failed(s, u, e.what(), out);
  } catch (const std::exception& e) {  // libtorch's (out of memory, ...): this unit failed, the others go on
    return failed(s, u, std::string("unexpected error: ") + e.what(), out);
  }
}

}  // namespace quantlab::experiment::sweep_steps
