// The command line's bookkeeping: kills at random moments, SIGINT, test mode, list.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "quantlab/experiment/session.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;
using testing::slurp;
using testing::spawn;
using testing::TempDir;
using testing::wait_exit;

// A main folder with a toy problem and a tiny config of `epochs` epochs.
struct Home {
  TempDir dir;
  explicit Home(int epochs) {
    testing::write_toy_idx_problem(dir.path() + "/Toy/data", 480, 64, 4, true);
    nlohmann::json cfg = testing::toy_mlp_config(epochs);
    cfg["indiv"]["net"]["params"]["capacity"] = 0.05;
    cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_act"] = {
        {"noise", "uniform"}, {"strategy", "random"}, {"thresholds", {-0.5, 0.5}}, {"levels", {-1.0, 0.0, 1.0}}};
    cfg["treat"]["data"]["bs_train"] = 16;
    std::ofstream(dir.path() + "/Toy/config.json") << cfg.dump(2);
  }
  std::string args(const std::string& extra) const {
    return "--problem=Toy --topology=MLP --device=cpu --threads=1 --home=" + dir.path() + " " + extra;
  }
  std::string saves(int id) const { return dir.path() + "/Toy/logs/" + Logbook::folder_name(id) + "/saves"; }
};

void expect_same_weights(const nlohmann::json& cfg, const std::string& a, const std::string& b) {
  const Checkpoint ca = load_checkpoint(a), cb = load_checkpoint(b);
  ASSERT_EQ(ca.state.epoch, cb.state.epoch);
  for (const auto& kv : ca.net) EXPECT_TRUE(torch::equal(kv.second, cb.net.at(kv.first))) << kv.first;
  const auto oa = testing::adam_state(cfg, ca), ob = testing::adam_state(cfg, cb);
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i) EXPECT_TRUE(torch::equal(oa[i], ob[i])) << "optimizer state " << i;
  EXPECT_EQ(ca.state.stats, cb.state.stats);
}

TEST(CliExperiment, KilledAtRandomMomentsAlwaysResumesToTheSameWeights) {
  Home home(4);
  std::string out;
  ASSERT_EQ(run_cli(home.args(""), out), 0) << out;  // experiment 1, uninterrupted
  std::mt19937 rng(20261127);
  std::uniform_int_distribution<int> delay_ms(150, 2500);
  TempDir tmp;
  int kills = 0;
  const std::string exp2 = home.dir.path() + "/Toy/logs/exp002";
  for (int attempt = 0; attempt < 40; ++attempt) {
    // Until the experiment exists (a kill may come before it is created), launch it anew.
    const std::string extra = fs::exists(exp2) ? "--exp_id=2 --load=last" : "";
    const pid_t pid = spawn(home.args(extra), tmp.path() + "/log");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms(rng)));
    if (kill(pid, SIGKILL) == 0) ++kills;
    const int code = wait_exit(pid);
    if (fs::exists(home.saves(2) + "/last.ckpt")) EXPECT_NO_THROW(load_checkpoint(home.saves(2) + "/last.ckpt"));
    if (code == 0) break;
    if (fs::exists(exp2) && Logbook::open(home.dir.path() + "/Toy/logs", 2).saves().status().value("finished", false))
      break;
  }
  ASSERT_TRUE(fs::exists(exp2)) << slurp(tmp.path() + "/log");
  EXPECT_GE(kills, 2);
  // Finish whatever is left, then compare with the uninterrupted run.
  ASSERT_EQ(run_cli(home.args("--exp_id=2 --load=last"), out), 0) << out;
  expect_same_weights(read_json_file(home.dir.path() + "/Toy/config.json"), home.saves(1) + "/last.ckpt",
                      home.saves(2) + "/last.ckpt");
}

TEST(CliExperiment, SigintAbandonsTheEpochAndSaysHowToResume) {
  Home home(200);
  TempDir tmp;
  const pid_t pid = spawn(home.args("--ckpt_every=0"), tmp.path() + "/log");
  for (int i = 0; i < 600 && !fs::exists(home.saves(1) + "/last.ckpt"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 130);
  const std::string log = slurp(tmp.path() + "/log");
  EXPECT_NE(log.find("resume with: quantlab --problem=Toy --topology=MLP --exp_id=1 --load=last"), std::string::npos)
      << log;
  EXPECT_NO_THROW(load_checkpoint(home.saves(1) + "/last.ckpt"));
}

TEST(CliExperiment, TestModeListAndBadInput) {
  Home home(2);
  std::string out;
  ASSERT_EQ(run_cli(home.args("--ckpt_every=1"), out), 0) << out;
  EXPECT_NE(out.find("experiment 1: "), std::string::npos) << out;
  EXPECT_EQ(slurp(home.dir.path() + "/Toy/logs/exp001/config.json").empty(), false);
  ASSERT_EQ(run_cli(home.args("--mode=test --exp_id=1 --load=1"), out), 0) << out;
  EXPECT_NE(out.find("test (epoch0001.ckpt, after epoch 1): loss"), std::string::npos) << out;
  EXPECT_EQ(run_cli(home.args("--mode=test --exp_id=1 --load=9"), out), 1);
  EXPECT_NE(out.find("epoch0009.ckpt: no such checkpoint; available in"), std::string::npos) << out;
  EXPECT_NE(out.find("best.ckpt, last.ckpt, epoch0001.ckpt, epoch0002.ckpt"), std::string::npos) << out;
  EXPECT_EQ(run_cli(home.args("--exp_id=5"), out), 1);
  EXPECT_NE(out.find("--exp_id=5: no such experiment"), std::string::npos) << out;
  EXPECT_NE(out.find("existing: 1"), std::string::npos) << out;
  ASSERT_EQ(run_cli("list --problem=Toy --home=" + home.dir.path(), out), 0) << out;
  EXPECT_NE(out.find("exp001"), std::string::npos) << out;
  EXPECT_NE(out.find("2/2"), std::string::npos) << out;
  EXPECT_NE(out.find("finished"), std::string::npos) << out;
  // A config that fails validation creates no experiment folder.
  auto cfg = read_json_file(home.dir.path() + "/Toy/config.json");
  cfg["treat"]["max_epoch"] = "two";
  std::ofstream(home.dir.path() + "/Toy/config.json") << cfg.dump();
  EXPECT_EQ(run_cli(home.args(""), out), 1);
  EXPECT_NE(out.find("treat.max_epoch: expected an integer"), std::string::npos) << out;
  EXPECT_EQ(Logbook::list(home.dir.path() + "/Toy/logs"), (std::vector<int64_t>{1}));
}

}  // namespace
}  // namespace quantlab
