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
#include <string>
#include <vector>

#include "quantlab/experiment/launch.h"

namespace quantlab {

struct SweepDesign {
  std::string name;
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> factors;  // in the design's order
  int64_t repeats = 1;
  int64_t sample = 0;  // 0: every unit of the grid
  uint64_t seed = 0;
};

// One point of the design: its factors' levels and its repeat.
struct SweepUnit {
  int64_t index = 0;
  std::vector<std::pair<std::string, nlohmann::json>> levels;
  int64_t repeat = 0;
};

// Reads a design from JSON ({"name", "factors": {PATH: [levels]}, "repeats", "sample", "seed"});
// throws ConfigError naming the key (an empty factor, a level given twice, a bad count).
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
};

struct SweepResult {
  int64_t units = 0, finished = 0, failed = 0, skipped = 0;
  int interrupted_by = 0;
};

// Runs (or resumes) a sweep, one unit after another; `stop` as launch()'s.
SweepResult run_sweep(const SweepOptions& options, const std::atomic<int>* stop, std::ostream& out);

}  // namespace quantlab
