// The sweep tests' helpers (test_sweep.cpp, test_sweep_parallel.cpp): a sweep over the toy home and
// compare's options and output over it.
#pragma once

#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/sweep.h"
#include "toy_home.h"

namespace quantlab::sweep_testing {

using testing::Home;

// A sweep of the toy problem: its name and factors (config paths and their levels).
inline SweepOptions sweep_of(const Home& home, const std::string& name,
                             std::vector<std::pair<std::string, std::vector<nlohmann::json>>> factors) {
  SweepOptions s;
  s.launch = home.options();
  s.design.name = name;
  s.design.factors = std::move(factors);
  return s;
}

// compare's options over the toy home: one sweep's units where `sweep` is given, else every
// experiment.
inline CompareOptions compare_of(const Home& home, const std::string& sweep = "", const std::string& format = "table") {
  CompareOptions c;
  c.home = home.dir.path(), c.problem = "Toy", c.sweep = sweep, c.format = format;
  return c;
}

// What compare prints (parsed where the format is JSON).
inline std::string compare_text(const CompareOptions& c) {
  std::ostringstream out;
  compare_experiments(c, out);
  return out.str();
}
inline nlohmann::json compare_json(const CompareOptions& c) { return nlohmann::json::parse(compare_text(c)); }

}  // namespace quantlab::sweep_testing
