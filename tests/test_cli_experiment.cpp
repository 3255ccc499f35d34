// The command line's bookkeeping: kills at random moments, SIGINT, test mode, list.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "quantlab/experiment/session.h"
#include "quantlab/util/process.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::run_cli;
using testing::slurp;
using testing::spawn;
using testing::TempDir;
using testing::wait_exit;

// A main folder with a toy problem of `train` images and a tiny config of `epochs` epochs.
struct Home {
  TempDir dir;
  explicit Home(int epochs, int train = 480) {
    testing::write_toy_idx_problem(dir.path() + "/Toy/data", train, 64, 4, true);
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

using Clock = std::chrono::steady_clock;

// Waits until `path` exists or `pid` ends (then *code is its exit code; -1 while it runs).
void wait_for_path_or_exit(pid_t pid, const std::string& path, int* code) {
  *code = -1;
  for (const auto end = Clock::now() + std::chrono::minutes(5); Clock::now() < end;) {
    if (fs::exists(path)) return;
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      *code = exit_code(status);
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A kill is drawn at a random moment of the run as this machine runs it now: the delays are
// fractions of the start-up and training times of the same run uninterrupted, measured first
// (under a loaded CI they were longer than fixed delays, and every kill came before the experiment
// existed). A fresh launch is killed only after its folder exists, so each experiment is resumed
// at least once; a resume is killed anywhere from late in its start-up to past its end. Should an
// experiment finish before two kills landed, the next experiment is killed too.
TEST(CliExperiment, KilledAtRandomMomentsAlwaysResumesToTheSameWeights) {
  Home home(4, 1920);
  TempDir tmp;
  const auto t0 = Clock::now();
  int code = -1;
  const pid_t first = spawn(home.args(""), tmp.path() + "/log");  // experiment 1, uninterrupted
  wait_for_path_or_exit(first, home.dir.path() + "/Toy/logs/exp001", &code);
  const double startup = seconds_since(t0);
  if (code < 0) code = wait_exit(first);
  ASSERT_EQ(code, 0) << slurp(tmp.path() + "/log");
  const double training = std::max(0.05, seconds_since(t0) - startup);
  std::mt19937 rng(20261127);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const auto sleep_s = [](double s) { std::this_thread::sleep_for(std::chrono::duration<double>(s)); };
  const nlohmann::json cfg = read_json_file(home.dir.path() + "/Toy/config.json");
  int landed = 0;  // kills that ended a running process
  for (int id = 2; id <= 6 && landed < 2; ++id) {
    const std::string dir = home.dir.path() + "/Toy/logs/" + Logbook::folder_name(id);
    // The fresh launch, killed at a random moment after its folder exists.
    const pid_t pid = spawn(home.args(""), tmp.path() + "/log");
    wait_for_path_or_exit(pid, dir, &code);
    if (code < 0) {
      if (fs::exists(dir)) sleep_s(unit(rng) * training);
      kill(pid, SIGKILL);
      code = wait_exit(pid);
      if (code == 128 + SIGKILL) ++landed;
    }
    ASSERT_TRUE(fs::exists(dir) && (code == 0 || code == 128 + SIGKILL)) << "exit code " << code << "\n"
                                                                         << slurp(tmp.path() + "/log");
    // Resumes, each killed anywhere from late in its start-up (loading the checkpoint) to a little
    // past its expected end.
    for (int attempt = 0; attempt < 12 && code != 0; ++attempt) {
      const bool finished = Logbook::open(home.dir.path() + "/Toy/logs", id).saves().status().value("finished", false);
      if (finished) break;
      if (fs::exists(home.saves(id) + "/last.ckpt")) EXPECT_NO_THROW(load_checkpoint(home.saves(id) + "/last.ckpt"));
      const pid_t again = spawn(home.args("--exp_id=" + std::to_string(id) + " --load=last"), tmp.path() + "/log");
      sleep_s(0.8 * startup + unit(rng) * (0.4 * startup + 1.2 * training));
      kill(again, SIGKILL);
      code = wait_exit(again);
      if (code == 128 + SIGKILL) ++landed;
      ASSERT_TRUE(code == 0 || code == 128 + SIGKILL) << "exit code " << code << "\n" << slurp(tmp.path() + "/log");
    }
    // Finish whatever is left, then compare with the uninterrupted run.
    std::string out;
    ASSERT_EQ(run_cli(home.args("--exp_id=" + std::to_string(id) + " --load=last"), out), 0) << out;
    expect_same_weights(cfg, home.saves(1) + "/last.ckpt", home.saves(id) + "/last.ckpt");
  }
  EXPECT_GE(landed, 2) << "start-up " << startup << " s, training " << training << " s";
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
  EXPECT_NE(out.find("experiment 5: no such experiment"), std::string::npos) << out;
  EXPECT_NE(out.find("existing: 1"), std::string::npos) << out;
  ASSERT_EQ(run_cli("list --problem=Toy --home=" + home.dir.path(), out), 0) << out;
  EXPECT_NE(out.find("exp001"), std::string::npos) << out;
  EXPECT_NE(out.find("2/2"), std::string::npos) << out;
  EXPECT_NE(out.find("finished"), std::string::npos) << out;
  // --nproc is for training: with a subcommand it is refused (each process ran the subcommand).
  EXPECT_EQ(run_cli("--nproc=2 list --problem=Toy --home=" + home.dir.path(), out), 1);
  EXPECT_NE(out.find("--nproc applies to training, not to `quantlab list`"), std::string::npos) << out;
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
