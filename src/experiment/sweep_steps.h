// The parts of run_sweep() (sweep.cpp): the sweep's record and its units' experiments
// (sweep_record.cpp), one unit run in this process (sweep_unit.cpp), and units run in processes of
// their own (sweep_parallel.cpp). Private to src/experiment: the public entry point is
// quantlab/experiment/sweep.h.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include "quantlab/experiment/sweep.h"

namespace quantlab::experiment::sweep_steps {

// A sweep checked and its record made: what every way of running its units shares.
struct Sweep {
  std::string name, dir, file, logs;
  // The record's identity, drawn when it was made and carried by its units' experiments, so that
  // a sweep made again under the same name never takes an older one's experiments ("" in records
  // made before it was kept).
  std::string id;
  nlohmann::json base, design;   // base: the config file with `set` applied
  std::vector<std::string> set;  // the sweep's --set, in order
  std::vector<SweepUnit> units;
  int64_t repeats = 1;

  // The record, checked against this design (sweep.json, read under its lock by entry and update).
  nlohmann::json read() const;
  nlohmann::json entry(int64_t unit) const;
  // Applies `change` to the unit's entry of the record on disk.
  void update(int64_t unit, const std::function<void(nlohmann::json&)>& change) const;
};

// Checks the options, the design and every unit's config, then makes the record or checks the
// one there (the same design and base config).
Sweep prepare(const SweepOptions& options);

// The "sweep" entry of a unit's experiment config: the sweep's name and identity, the unit, its
// levels and repeat, and the sweep's --set where it has one (which compare shows as config values,
// not as the unit's levels).
nlohmann::json unit_record(const Sweep& s, const SweepUnit& u);

// Whether experiment `id` of `logs` was made for a sweep's unit whose config "sweep" entry `entry`
// accepts: not a branch (a branch copies its parent's config, the entry included), and readable.
bool made_for_unit(const std::string& logs, int64_t id, const std::function<bool(const nlohmann::json&)>& entry);

// The unit's experiment when it has one: from the record, or found by its config's "sweep" entry
// when an earlier run was stopped before it recorded the number; else -1. An experiment the
// record names that is gone (deleted by hand, or its number taken by another experiment since) is
// said on `out`, and the unit runs again.
int64_t unit_experiment(const Sweep& s, const SweepUnit& u, const nlohmann::json& entry, std::ostream& out);
// The experiment made for the unit, found by its config's "sweep" entry (branches of it, which copy
// the entry, are not the unit's); -1 when none.
int64_t find_unit_experiment(const Sweep& s, const SweepUnit& u);
// Trained to its end and tested.
bool experiment_finished(const Sweep& s, int64_t id);

// Where a unit stands: its experiment (-1: none) and whether it is finished, which the record
// then says too.
struct UnitState {
  int64_t id = -1;
  bool finished = false;
};
UnitState unit_state(const Sweep& s, const SweepUnit& u, std::ostream& out);

enum class Outcome { kFinished, kSkipped, kFailed, kStopped, kElsewhere };

// "sweep NAME: unit N/M".
std::string unit_title(const Sweep& s, const SweepUnit& u);
void count(SweepResult& result, Outcome outcome);

// Runs (or resumes, or skips) one unit in this process.
Outcome run_unit(const Sweep& s, const SweepOptions& o, const SweepUnit& u, const std::atomic<int>* stop,
                 int* interrupted_by, std::ostream& out);

// --parallel=K: K of `mine` at a time, each `command --unit=N [--threads=T]` in a process of its own.
SweepResult run_parallel(const Sweep& s, const SweepOptions& o, const std::vector<const SweepUnit*>& mine,
                         const std::atomic<int>* stop, std::ostream& out);

}  // namespace quantlab::experiment::sweep_steps
