// Sweep designs: a base config patched by factors, as the original's successor's design of
// experiments. A design names factors (config paths with their levels; a full grid of them),
// optionally `repeats` (each unit again with another treat.data.seed) and `sample` (a random
// subset of N units, drawn with `seed`). Each unit becomes one experiment through --set overrides
// (config/overrides.h); experiment/sweep.h runs them.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace quantlab::experiment {

struct SweepDesign {
  std::string name;
  // In the order of their names (a design's "factors" is a JSON object), then --grid's in the
  // order given: a config path and its values, or a factor's name and its levels' names (a factor
  // of named levels, each setting several paths at once: see `named`).
  std::vector<std::pair<std::string, std::vector<nlohmann::json>>> factors;
  // Factor name -> {level name -> {path -> value}}, for the factors of named levels.
  std::map<std::string, nlohmann::json> named;
  int64_t repeats = 1;
  int64_t sample = 0;  // 0: every unit of the grid
  uint64_t seed = 0;
  std::string file;  // the design file it was read from ("" for --grid alone): its errors begin with it
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
// twice, a named level that sets nothing, a bad count or seed).
SweepDesign parse_design(const nlohmann::json& design, const std::string& where);
// The same from a design file; errors begin with the file's name.
SweepDesign read_design(const std::string& file);

// "PATH=a,b,c" of --grid: levels read as JSON, else strings.
std::pair<std::string, std::vector<nlohmann::json>> parse_grid(const std::string& arg);

// The units of a design, in grid order (the last factor fastest), each repeat after the other.
std::vector<SweepUnit> design_units(const SweepDesign& design);

// How many units design_units makes (the grid, or its sample, times the repeats), counted without
// making them: a grid of millions is refused before its units take the memory. Saturates at
// INT64_MAX.
int64_t unit_count(const SweepDesign& design);

// The --set arguments of a unit: its levels and, for a repeat beyond the first, the data seed
// + 1000 x repeat (the seed the unit's own levels set, else the base config's, else 0).
std::vector<std::string> unit_overrides(const SweepUnit& unit, const nlohmann::json& base_config);

// Every unit's overrides applied to the base config before anything is made: an override that
// does not apply is a ConfigError naming the unit and its levels, and so are two units whose
// configs come out the same (factors that set one path, a seed factor beside repeats). With
// `build`, every unit's experiment is also built as its launch will build it (network class
// against `topology` when given, optimizer, schedule, thermostat): about 1 s per AlexNet unit,
// done once, when the sweep's record is made.
void check_unit_configs(const std::vector<SweepUnit>& units, const nlohmann::json& base_config,
                        const std::string& topology = "", bool build = true);

// The design as the sweep's record keeps it (sweep.json's "design").
nlohmann::json design_json(const SweepDesign& design);
// "treat.optimizer.params.lr=0.01, repeat 1": a unit's levels in words.
std::string levels_text(const SweepUnit& unit);

}  // namespace quantlab::experiment
