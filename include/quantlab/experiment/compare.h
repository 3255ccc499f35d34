// Comparing experiments: `quantlab compare` (one row per experiment, the config paths where they
// differ as columns, with their results) and `quantlab diff A B` (the config paths where two
// experiments differ).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace quantlab::experiment {

// One leaf of a config where two differ; "absent" when one has no such path.
struct ConfigDifference {
  std::string path;
  nlohmann::json a, b;
  bool in_a = true, in_b = true;
};

// The leaves (scalars and lists of scalars; objects and lists of objects are walked into) where
// `a` and `b` differ, in path order. The record of --set ("overrides") is not compared.
std::vector<ConfigDifference> config_differences(const nlohmann::json& a, const nlohmann::json& b);

// A leaf of a config as a short text ("0.003", "uniform", "[-1, 0, 1]").
std::string value_text(const nlohmann::json& v);

struct CompareOptions {
  std::string home = ".", problem;
  std::vector<int64_t> ids;      // empty: every experiment of the problem (or of `sweep`)
  std::string sweep;             // the experiments of this sweep (experiment/sweep.h), in unit order
  std::string sort = "exp";      // exp | valid | test | epochs | time | a column's config path
  std::string format = "table";  // table | csv | markdown | json
  std::string by;                // a column: one row per level (count, mean accuracies, test range)
};

void compare_experiments(const CompareOptions& options, std::ostream& out);
void diff_experiments(const std::string& home, const std::string& problem, int64_t a, int64_t b, std::ostream& out);

// "1,3,5-8" -> {1, 3, 5, 6, 7, 8}; throws Error naming the text when it is not that.
std::vector<int64_t> parse_id_list(const std::string& text);

}  // namespace quantlab::experiment
