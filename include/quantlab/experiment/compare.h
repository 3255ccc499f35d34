// Comparing experiments: `quantlab compare` (one row per experiment, the config paths where they
// differ as columns, with their results); `quantlab diff A B` is in config_diff.h.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

#include "quantlab/experiment/config_diff.h"

namespace quantlab::experiment {

struct CompareOptions {
  std::string home = ".", problem;
  std::vector<int64_t> ids;      // empty: every experiment of the problem (or of `sweep`)
  std::string sweep;             // the experiments of this sweep (experiment/sweep.h), in unit order
  std::string sort = "exp";      // exp | valid | test | epochs | time | a column's config path
  std::string format = "table";  // table | csv | markdown | json
  std::string by;                // a column: one row per level (count, mean accuracies, test range)
};

void compare_experiments(const CompareOptions& options, std::ostream& out);

// "1,3,5-8" -> {1, 3, 5, 6, 7, 8}; throws Error naming the text when it is not that.
std::vector<int64_t> parse_id_list(const std::string& text);

}  // namespace quantlab::experiment
