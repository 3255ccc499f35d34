// Parsing of `indiv.net.params.quant_schemes`: one AnaScheme per quantized module, in either form
//   2019:      "phi1_fc": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]]
//   successor: "phi1_fc": {"noise": "uniform", "strategy": "expectation",
//                          "nbits": 2, "signed": true, "balanced": true, "eps": 1.0}
//              (or "thresholds"/"levels" instead of the nbits keys).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/core/ana.h"

namespace quantlab::config {

core::AnaScheme parse_ana_scheme(const JsonNode& node);

// Parses the whole map and checks it names exactly the topology's quantized modules `expected`:
// a missing or stray name is an error naming it.
std::map<std::string, core::AnaScheme> parse_quant_schemes(const JsonNode& node,
                                                           const std::vector<std::string>& expected);

}  // namespace quantlab::config
