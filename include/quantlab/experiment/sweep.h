// Sweeps: many experiments from one design (experiment/sweep_design.h). `quantlab sweep` makes one
// experiment per unit, through --set overrides (config/overrides.h), and keeps a record of which
// unit is which experiment in <Problem>/sweeps/<name>/sweep.json. Running the same command again
// skips finished units and resumes stopped ones from last (as `--exp_id` does); a unit that fails
// is recorded with its error and the others go on. One process at a time runs a sweep (its lock),
// and each experiment keeps its own lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/sweep_design.h"

namespace quantlab::experiment {

struct SweepOptions {
  LaunchOptions launch;  // problem, topology, home, device, threads, ...; exp_id/load/branch unused
  SweepDesign design;
  int64_t max_units = 100;  // more need `yes`
  bool yes = false;
  // --parallel=K: K units at a time, each in a process of its own (`command` + --unit=N, with
  // --threads = the cores / K unless threads are given); the output of each in
  // <sweep>/units/<N>/output.log. `command`: the program and the arguments that run this sweep.
  int parallel = 1;
  std::vector<std::string> command;
  std::optional<int64_t> unit;  // --unit=N (1-based, as printed): this unit only (a job array's task)
  bool srun = false;            // --srun: unit i runs on SLURM task i mod SLURM_NTASKS, one process each
};

// The exit status of `quantlab sweep --unit=N` when another process holds the unit (EX_TEMPFAIL):
// --parallel's children tell the sweep so.
constexpr int kExitElsewhere = 75;

struct SweepResult {
  int64_t units = 0, finished = 0, failed = 0, skipped = 0;
  int64_t elsewhere = 0;  // units left to another process that was running them
  int interrupted_by = 0;
};

// Runs (or resumes) a sweep: every unit one after another, K at a time (parallel), one unit, or a
// SLURM task's share; `stop` as launch()'s (with --parallel it is forwarded to the units once).
SweepResult run_sweep(const SweepOptions& options, const std::atomic<int>* stop, std::ostream& out);

}  // namespace quantlab::experiment
