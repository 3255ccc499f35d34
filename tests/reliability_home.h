// The toy main folder of the reliability tests (test_reliability.cpp: the first probe's defects;
// test_reliability_probes.cpp and test_reliability_resume.cpp: the later probes'): a learnable
// toy problem "Toy" with a tiny ternary MLP, launches with their output kept, and the file helpers
// the tests compare with.
#pragma once

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab::reliability {

namespace fs = std::filesystem;
using testing::TempDir;

// A main folder with a learnable toy problem "Toy" (4 classes of 28x28 images) and a tiny ternary MLP.
struct Home {
  TempDir dir;
  nlohmann::json cfg;
  explicit Home(int epochs, int64_t train = 320) {
    testing::write_toy_idx_problem(dir.path() + "/Toy/data", train, 64, 4, true);
    cfg = testing::toy_mlp_config(epochs);
    write_config();
  }
  void write_config() const { std::ofstream(dir.path() + "/Toy/config.json") << cfg.dump(2); }
  LaunchOptions options() const {
    LaunchOptions o;
    o.problem = "Toy";
    o.topology = "MLP";
    o.home = dir.path();
    o.device = "cpu";
    o.threads = 1;
    o.ckpt_every = 1;
    return o;
  }
  std::string logs() const { return dir.path() + "/Toy/logs"; }
  std::string saves(int id) const { return logs() + "/" + Logbook::folder_name(id) + "/saves"; }
  // The CLI's flags for the same main folder.
  std::string args(const std::string& extra) const {
    return "--problem=Toy --topology=MLP --device=cpu --threads=1 --home=" + dir.path() + " " + extra;
  }
};

// Runs launch(), its output in `out`.
inline LaunchResult run(const LaunchOptions& o, std::string* out = nullptr) {
  std::ostringstream sink;
  LaunchResult r = launch(o, nullptr, sink);
  if (out) *out = sink.str();
  return r;
}

// The message of the Error that launching `o` throws ("" when none).
inline std::string error_of(const LaunchOptions& o) {
  try {
    run(o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

inline std::string bytes_of(const std::string& file) { return testing::slurp(file); }

inline int64_t epoch_of(const std::string& file) { return load_checkpoint(file).state.epoch; }

// Every file under `dir` (recursively), relative paths.
inline std::set<std::string> tree(const std::string& dir) {
  std::set<std::string> out;
  std::error_code ec;
  if (!fs::exists(dir, ec)) return out;
  for (const auto& e : fs::recursive_directory_iterator(dir, ec)) out.insert(fs::relative(e.path(), dir).string());
  return out;
}

}  // namespace quantlab::reliability
