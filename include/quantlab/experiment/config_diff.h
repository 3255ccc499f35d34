// Where two configs differ: their leaves by dotted path (`quantlab diff`, compare's columns, the
// base config of a sweep changed between runs), and a leaf as a short text.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <vector>

namespace quantlab::experiment {

// One leaf of a config where two differ; "absent" when one has no such path.
struct ConfigDifference {
  std::string path;
  nlohmann::json a, b;
  bool in_a = true, in_b = true;
};

// Every leaf of `config` by dotted path ("treat.optimizer.params.lr"): scalars and lists of
// scalars; objects and lists of objects are walked into. The records of --set ("overrides") and
// of a sweep's unit ("sweep") are not settings and are left out.
std::map<std::string, nlohmann::json> config_leaves(const nlohmann::json& config);

// The leaves where `a` and `b` differ, in path order.
std::vector<ConfigDifference> config_differences(const nlohmann::json& a, const nlohmann::json& b);

// A leaf of a config as a short text ("0.003", "uniform", "[-1, 0, 1]").
std::string value_text(const nlohmann::json& v);

// `quantlab diff A B`: the config paths where two experiments differ, `A -> B`.
void diff_experiments(const std::string& home, const std::string& problem, int64_t a, int64_t b, std::ostream& out);

}  // namespace quantlab::experiment
