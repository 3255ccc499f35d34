// Sweeps: many experiments from one design (a base config patched by factors, as the original's
// successor's design of experiments). A design names factors (config paths with their levels; a
// full grid of them), optionally `repeats` (each unit again with another treat.data.seed) and
// `sample` (a random subset of N units, drawn with `seed`). `quantlab sweep` makes one experiment
// per unit, through --set overrides (config/overrides.h), and keeps a record of which unit is which
// experiment in <Problem>/sweeps/<name>/sweep.json. Running the same command again skips
// finished units and resumes stopped ones from last (as `--exp_id` does); a unit that fails is
// recorded with its error and the others go on. One process at a time runs a sweep (its lock), and
// each experiment keeps its own lock.
#pragma once

#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <map>
#include <string>
#include <vector>

#include "quantlab/experiment/launch.h"

namespace quantlab::experiment {

struct SweepDesign {
  std::string name;
  // In the design's order: a config path and its values, or a factor's name and its levels' names
  // (a factor of named levels, each setting several paths at once: see `named`).
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> factors;
  // Factor name -> {level name -> {path -> value}}, for the factors of named levels.
  std::map<std::string, nlohmann::json> named;
  int64_t repeats = 1;
  int64_t sample = 0;  // 0: every unit of the grid
  uint64_t seed = 0;
};

// One point of the design: its factors' levels and its repeat.
struct SweepUnit {
  int64_t index = 0;
  std::vector<std::pair<std::string, nlohmann::json>> levels;    // factor -> level (as in the record)
  std::vector<std::pair<std::string, nlohmann::json>> settings;  // config path -> value (named levels expanded)
  int64_t repeat = 0;
};

// Reads a design from JSON ({"name", "factors": {PATH: [values], NAME: {LEVEL: {PATH: value, ...}}},
// "repeats", "sample", "seed"}); throws ConfigError naming the key (an empty factor, a level given
// twice, a named level that sets nothing, a bad count).
SweepDesign parse_design(const nlohmann::json& design, const std::string& where);

// "PATH=a,b,c" of --grid: levels read as JSON, else strings.
std::pair<std::string, std::vector<nlohmann::json>> parse_grid(const std::string& arg);

// The units of a design, in grid order (the last factor fastest), each repeat after the other.
std::vector<SweepUnit> design_units(const SweepDesign& design);

// The --set arguments of a unit (its levels, and the seed of a repeat beyond the first).
std::vector<std::string> unit_overrides(const SweepUnit& unit, const nlohmann::json& base_config);

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
// The design as the sweep's record keeps it (sweep.json's "design").
nlohmann::json design_json(const SweepDesign& design);
// "treat.optimizer.params.lr=0.01, repeat 1": a unit's levels in words.
std::string levels_text(const SweepUnit& unit);

SweepResult run_sweep(const SweepOptions& options, const std::atomic<int>* stop, std::ostream& out);

}  // namespace quantlab::experiment
