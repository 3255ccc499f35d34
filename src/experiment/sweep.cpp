// Sweeps: one experiment per unit of a design (sweep_design.cpp), run one after another, K at a
// time (sweep_parallel.cpp), one unit or a SLURM task's share; the record in sweep_record.cpp.
#include "quantlab/experiment/sweep.h"

#include <cstdlib>
#include <memory>
#include <ostream>

#include "quantlab/dist/environment.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/util/error.h"
#include "sweep_steps.h"

namespace quantlab::experiment {

using sweep_steps::Outcome;

SweepResult run_sweep(const SweepOptions& o, const std::atomic<int>* stop, std::ostream& out) {
  // A unit runs in one process: a sweep under torchrun, --nproc or srun (without --srun, which
  // shares the units among SLURM's tasks) would run every unit in every process.
  const auto started_as_ranks = [&] {  // one of several processes (a batch script's shell included)
    try {
      return dist::environment_from_process({o.launch.master_addr, o.launch.master_port}).has_value();
    } catch (const Error&) {
      return true;
    }
  };
  if (!o.srun && started_as_ranks())
    throw Error(
        "quantlab sweep runs each unit in one process; under srun give --srun (the tasks share the units), "
        "on one machine --parallel=K; a data-parallel launcher (torchrun, --nproc) does not apply");
  const sweep_steps::Sweep s = sweep_steps::prepare(o);
  std::vector<const SweepUnit*> mine;
  if (o.unit) {
    mine.push_back(&s.units[static_cast<size_t>(*o.unit - 1)]);
  } else if (o.srun) {
    const char* id = std::getenv("SLURM_PROCID");
    const char* n = std::getenv("SLURM_NTASKS");
    if (!id || !n || (!std::getenv("SLURM_STEP_ID") && !std::getenv("SLURM_STEPID")))
      throw Error(
          "--srun: this process was not started by srun (no SLURM_PROCID, SLURM_NTASKS or SLURM_STEP_ID; a batch "
          "script's own shell is one process); start the sweep with srun (srun -n K quantlab sweep ... --srun)");
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
  if (o.parallel > 1) return sweep_steps::run_parallel(s, o, mine, stop, out);
  SweepResult result;
  result.units = static_cast<int64_t>(mine.size());
  for (const SweepUnit* u : mine) {
    const Outcome r = sweep_steps::run_unit(s, o, *u, stop, &result.interrupted_by, out);
    sweep_steps::count(result, r);
    if (r == Outcome::kStopped) break;
  }
  return result;
}

}  // namespace quantlab::experiment
