// The toy main folder of the experiment tests (test_design.cpp, test_sweep.cpp): the toy problem
// with the toy MLP config, a launch with its output dropped, and the message of an Error.
#pragma once

#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "quantlab/experiment/launch.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab::testing {

// The message of the Error `f` throws ("" when none).
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// A small main folder with the toy problem.
struct Home {
  TempDir dir;
  Home() {
    write_toy_idx_problem(dir.path() + "/Toy/data", 160, 32, 4, true);
    std::ofstream(dir.path() + "/Toy/config.json") << toy_mlp_config(1).dump(2);
  }
  experiment::LaunchOptions options() const {
    experiment::LaunchOptions o;
    o.problem = "Toy", o.topology = "MLP", o.home = dir.path(), o.device = "cpu", o.threads = 1;
    return o;
  }
  std::string logs() const { return dir.path() + "/Toy/logs"; }
};

inline experiment::LaunchResult run(const experiment::LaunchOptions& o) {
  std::ostringstream sink;
  return experiment::launch(o, nullptr, sink);
}

}  // namespace quantlab::testing
