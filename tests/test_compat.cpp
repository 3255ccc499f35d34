// Files other builds of QuantLab wrote: a checkpoint written by a build against libtorch 1.13
// (Debian's) loads, and trains on, in a build against libtorch 2.x (PyPI's), and the other way
// round. The fixtures in tests/data/compat/ were written by Compat.DISABLED_WriteFixture, once
// with each build:
//   QL_FIXTURE_DIR=$PWD/tests/data/compat build/tests/test_compat \
//       --gtest_also_run_disabled_tests --gtest_filter=Compat.DISABLED_WriteFixture
// (and the same with build-pip/). Beside each .ckpt, a .json names the libtorch that wrote it and
// holds the CRC-32 of each network tensor's and Adam moment's bytes, so the reader checks the values
// it got, parameter by parameter.
#include <gtest/gtest.h>
#include <torch/version.h>
#include <zlib.h>

#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "quantlab/data/problem.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/train/trainer.h"
#include "quantlab/config/json_node.h"
#include "quantlab/util/progress.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

const std::string kFixtures = std::string(QL_SOURCE_DIR) + "/tests/data/compat";

// The toy MLP at 20 hidden units (the fixtures stay small), trained on the toy problem.
nlohmann::json fixture_config() {
  nlohmann::json cfg = testing::toy_mlp_config(2);
  cfg["indiv"]["net"]["params"]["capacity"] = 0.01;
  return cfg;
}

data::ProblemData toy_problem(const std::string& dir) {
  testing::write_toy_idx_problem(dir, 160, 32, 4, false);
  data::DataOptions o;
  o.valid_fraction = 0.2;
  return data::load_idx_problem(dir, o);
}

uint32_t tensor_crc(const torch::Tensor& t) {
  const torch::Tensor c = t.contiguous().cpu();
  return static_cast<uint32_t>(
      crc32(0, static_cast<const Bytef*>(c.data_ptr()), static_cast<uInt>(c.numel() * c.element_size())));
}

// Trains epochs state.epoch + 1 .. last.
void train(Experiment& exp, const data::ProblemData& problem, const TrainingState& state, int64_t last) {
  std::ostringstream sink;
  Progress progress(sink, false);
  Trainer trainer(exp, problem, progress);
  trainer.set_state(state);
  trainer.fit(last);
  EXPECT_EQ(trainer.state().epoch, last);
}

TEST(Compat, DISABLED_WriteFixture) {
  const char* dir = std::getenv("QL_FIXTURE_DIR");
  ASSERT_NE(dir, nullptr) << "set QL_FIXTURE_DIR to the folder to write into";
  TempDir data;
  const auto problem = toy_problem(data.path());
  const nlohmann::json cfg = fixture_config();
  Experiment exp(cfg, "MLP", torch::kCPU);
  train(exp, problem, {}, 1);
  TrainingState state;
  state.epoch = 1;
  const Checkpoint c = capture(exp, state);
  const std::string name = std::string(dir) + "/mlp_libtorch" + TORCH_VERSION;
  fs::create_directories(dir);
  save_checkpoint(name + ".ckpt", c);
  nlohmann::json side = {{"libtorch", TORCH_VERSION}, {"epoch", 1}, {"config", cfg}};
  for (const auto& [k, t] : c.net) side["net"][k] = tensor_crc(t);
  for (const auto& t : testing::adam_state(cfg, c)) side["adam"].push_back(tensor_crc(t));
  std::ofstream(name + ".json") << side.dump(1) << "\n";
}

TEST(Compat, CheckpointsOfEveryLibtorchLoadAndTrainOn) {
  TempDir data;
  const auto problem = toy_problem(data.path());
  std::set<std::string> majors;
  for (const auto& entry : fs::directory_iterator(kFixtures)) {
    if (entry.path().extension() != ".ckpt") continue;
    const std::string file = entry.path().string();
    SCOPED_TRACE(file);
    const nlohmann::json side = read_json_file(fs::path(file).replace_extension(".json").string());
    const Checkpoint c = load_checkpoint(file);  // the checksum is verified
    EXPECT_TRUE(c.notes.empty());
    EXPECT_EQ(c.state.epoch, side.at("epoch").get<int64_t>());
    ASSERT_EQ(c.net.size(), side.at("net").size());
    for (const auto& [k, crc] : side.at("net").items()) EXPECT_EQ(tensor_crc(c.net.at(k)), crc.get<uint32_t>()) << k;
    // Adam's moments and step counts, parameter by parameter, as the writer had them.
    std::vector<uint32_t> adam;
    for (const auto& t : testing::adam_state(side.at("config"), c)) adam.push_back(tensor_crc(t));
    EXPECT_EQ(adam, side.at("adam").get<std::vector<uint32_t>>());
    // It resumes here: network, optimizer, schedules and generators restored, and an epoch more.
    Experiment exp(side.at("config"), "MLP", torch::kCPU);
    restore(exp, c);
    EXPECT_EQ(tensor_crc(named_state(*exp.net).at("phi1_fc.weight")), side["net"]["phi1_fc.weight"].get<uint32_t>());
    train(exp, problem, c.state, 2);
    for (const auto& p : exp.net->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
    majors.insert(side.at("libtorch").get<std::string>().substr(0, 2));
  }
  // Both generations are here, whichever this build is.
  EXPECT_TRUE(majors.count("1.") == 1 && majors.count("2.") == 1)
      << "fixtures of libtorch 1.x and 2.x expected in " << kFixtures;
}

TEST(Compat, ThisBuildReadsItsOwnCheckpointsAsTheFixturesWereRead) {
  TempDir data, out;
  const auto problem = toy_problem(data.path());
  Experiment exp(fixture_config(), "MLP", torch::kCPU);
  train(exp, problem, {}, 1);
  TrainingState state;
  state.epoch = 1;
  const Checkpoint c = capture(exp, state);
  save_checkpoint(out.path() + "/a.ckpt", c);
  const Checkpoint back = load_checkpoint(out.path() + "/a.ckpt");
  for (const auto& [k, t] : c.net) EXPECT_EQ(tensor_crc(back.net.at(k)), tensor_crc(t)) << k;
}

}  // namespace
}  // namespace quantlab
