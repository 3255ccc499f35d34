// The two-process runs' toy main folder (test_distributed.cpp, test_distributed_faults.cpp): the
// toy IDX problem "Toy" with a ternary MLP, and the command line that launches it.
#pragma once

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "quantlab/experiment/logbook.h"
#include "test_util.h"

namespace quantlab::dist_testing {

// The toy ternary MLP, one of its activations drawn at random (the ranks' generators matter).
inline nlohmann::json mlp_config(int epochs) {
  nlohmann::json cfg = testing::toy_mlp_config(epochs);
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi2_act"] = {
      {"noise", "uniform"}, {"strategy", "random"}, {"thresholds", {-0.5, 0.5}}, {"levels", {-1.0, 0.0, 1.0}}};
  return cfg;
}

// A main folder holding the toy problem (`train` training images) and `cfg`.
struct Home {
  testing::TempDir dir;
  Home(const nlohmann::json& cfg, int64_t train) {
    testing::write_toy_idx_problem(dir.path() + "/Toy/data", train, 64, 4, true);
    std::ofstream(dir.path() + "/Toy/config.json") << cfg.dump(2);
  }
  std::string saves(int id) const { return dir.path() + "/Toy/logs/" + Logbook::folder_name(id) + "/saves"; }
  std::string args(const std::string& topology, const std::string& extra) const {
    return "--problem=Toy --topology=" + topology + " --device=cpu --home=" + dir.path() + " " + extra;
  }
};

// A command line split at spaces.
inline std::vector<std::string> split_args(const std::string& s) {
  std::istringstream is(s);
  std::vector<std::string> out;
  for (std::string a; is >> a;) out.push_back(a);
  return out;
}

}  // namespace quantlab::dist_testing
