// Data-parallel training's faults, two processes on this machine: a rank killed in the middle of an
// epoch (the others stop naming it, the run resumes), a rank stopped, Ctrl-C on the launcher, a
// killed launcher, a port in use or a master that does not answer, a rank that starts late, a
// rank's generator state that cannot be restored.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "dist_home.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/util/process.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using dist_testing::Home;
using dist_testing::mlp_config;
using dist_testing::split_args;
using testing::TempDir;

// The children of a process, from /proc.
std::vector<pid_t> children_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  std::vector<pid_t> out;
  for (pid_t c; in >> c;) out.push_back(c);
  return out;
}

TEST(Distributed, ARankKilledMidEpochStopsTheOthersAndTheRunResumes) {
  auto cfg = mlp_config(200);
  Home home(cfg, 960);
  TempDir tmp;
  const pid_t launcher = testing::spawn_program(
      QL_BINARY, split_args(home.args("MLP", "--nproc=2 --ckpt_every=0 --dist_timeout=10")), {}, tmp.path() + "/log");
  for (int i = 0; i < 2400 && !fs::exists(home.saves(1) + "/last.ckpt"); ++i)  // 2 min: a loaded CI machine
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(fs::exists(home.saves(1) + "/last.ckpt")) << testing::slurp(tmp.path() + "/log");
  std::vector<pid_t> ranks = children_of(launcher);
  ASSERT_EQ(ranks.size(), 2u);
  // Which child is rank 1: its environment says.
  pid_t rank1 = -1;
  for (pid_t p : ranks) {
    std::ifstream env("/proc/" + std::to_string(p) + "/environ");
    const std::string all((std::istreambuf_iterator<char>(env)), {});
    if (all.find(std::string("RANK=1") + '\0') != std::string::npos && all.find("LOCAL_RANK=1") != std::string::npos)
      rank1 = p;
  }
  ASSERT_GT(rank1, 0);
  const auto t0 = std::chrono::steady_clock::now();
  kill(rank1, SIGKILL);
  const int code = testing::wait_exit(launcher);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string log = testing::slurp(tmp.path() + "/log");
  EXPECT_NE(code, 0) << log;
  EXPECT_LT(took, 60.0) << log;
  EXPECT_NE(log.find("rank 1 (PID " + std::to_string(rank1) + ") was killed by signal 9"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 0: "), std::string::npos) << log;
  EXPECT_NE(log.find("resume with --load=last"), std::string::npos) << log;
  // The last checkpoint is valid and the run resumes.
  const Checkpoint c = load_checkpoint(home.saves(1) + "/last.ckpt");
  auto stored = read_json_file(home.dir.path() + "/Toy/logs/exp001/config.json");
  stored["treat"]["max_epoch"] = c.state.epoch + 1;
  std::ofstream(home.dir.path() + "/Toy/logs/exp001/config.json") << stored.dump();
  std::string out;
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--nproc=2 --exp_id=1 --load=last"), out), 0) << out;
  EXPECT_EQ(load_checkpoint(home.saves(1) + "/last.ckpt").state.epoch, c.state.epoch + 1);
}

// The launcher's rank 1 (-1 when it has none).
pid_t rank1_of(pid_t launcher) {
  for (pid_t p : children_of(launcher)) {
    std::ifstream env("/proc/" + std::to_string(p) + "/environ");
    const std::string all((std::istreambuf_iterator<char>(env)), {});
    if (all.find(std::string("RANK=1") + '\0') != std::string::npos && all.find("LOCAL_RANK=1") != std::string::npos)
      return p;
  }
  return -1;
}

// `quantlab --nproc=2` of a long run (and `flags`), its output in `log`, once its first checkpoint
// exists.
pid_t launcher_after_its_first_checkpoint(const Home& home, const std::string& log, const std::string& flags = "") {
  const pid_t launcher = testing::spawn_program(
      QL_BINARY, split_args(home.args("MLP", "--nproc=2 --ckpt_every=0" + (flags.empty() ? "" : " " + flags))), {},
      log);
  for (int i = 0; i < 2400 && !fs::exists(home.saves(1) + "/last.ckpt"); ++i)  // 2 min: a loaded CI machine
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_TRUE(fs::exists(home.saves(1) + "/last.ckpt")) << testing::slurp(log);
  return launcher;
}

// A long two-rank run whose rank 1 is stopped by SIGSTOP, and its launcher then given Ctrl-C
// where `ctrl_c`: rank 1's PID, the launcher's exit code and its output.
struct Stopped {
  pid_t rank1 = -1;
  int code = 0;
  std::string log;
};
Stopped stop_rank1(bool ctrl_c) {
  Home home(mlp_config(200), 960);
  TempDir tmp;
  const pid_t launcher = launcher_after_its_first_checkpoint(home, tmp.path() + "/log", "--dist_timeout=3");
  Stopped s;
  s.rank1 = rank1_of(launcher);
  if (s.rank1 <= 0) {
    kill(launcher, SIGKILL);
    ADD_FAILURE() << "no rank 1";
    return s;
  }
  kill(s.rank1, SIGSTOP);
  if (ctrl_c) kill(launcher, SIGINT);
  s.code = testing::wait_exit(launcher);
  s.log = testing::slurp(tmp.path() + "/log");
  return s;
}

// A rank stopped by SIGSTOP cannot notice anything: rank 0 names it when its all-reduce times
// out, and the launcher ends it at once (it waited the timeout and 30 s more).
TEST(Distributed, AStoppedRankIsNamedAndEnded) {
  const Stopped s = stop_rank1(false);
  EXPECT_NE(s.code, 0) << s.log;
  const std::string rank = "rank 1 (PID " + std::to_string(s.rank1) + ")";
  EXPECT_NE(s.log.find(rank + " is stopped (SIGSTOP, Ctrl-Z or a debugger) and did not answer"), std::string::npos)
      << s.log;
  EXPECT_NE(s.log.find(rank + " is stopped (SIGSTOP or a debugger); ending it"), std::string::npos) << s.log;
  EXPECT_EQ(s.log.find("did not stop; ending it"), std::string::npos) << s.log;
}

// Ctrl-C on the launcher while a rank is stopped: the stopped rank is ended as after a loss (the
// launcher waited for it for ever, and ignored a second Ctrl-C).
TEST(Distributed, CtrlCWithAStoppedRankEndsIt) {
  const Stopped s = stop_rank1(true);
  EXPECT_NE(s.code, 0) << s.log;
  EXPECT_NE(s.log.find("rank 1 (PID " + std::to_string(s.rank1) + ") is stopped (SIGSTOP or a debugger); ending it"),
            std::string::npos)
      << s.log;
  EXPECT_FALSE(process_alive(s.rank1));
}

// A checkpoint whose generator state of one rank libtorch refuses (edited by hand, or written by
// another build): the resume stops naming the checkpoint and the rank, not with libtorch's bare
// message, and the checkpoint is left as it was.
TEST(Distributed, ARankGeneratorStateThatCannotBeRestoredNamesTheCheckpoint) {
  Home home(mlp_config(1), 160);
  std::string out;
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--nproc=2 --ckpt_every=0 --dist_timeout=10"), out), 0) << out;
  const std::string last = home.saves(1) + "/last.ckpt";
  Checkpoint c = load_checkpoint(last);
  ASSERT_EQ(c.rng_ranks.size(), 2u);
  c.rng_ranks[1] = torch::zeros({3}, torch::kUInt8);  // a byte tensor, of a length no generator has
  save_checkpoint(last, c);
  auto stored = read_json_file(home.dir.path() + "/Toy/logs/exp001/config.json");
  stored["treat"]["max_epoch"] = 2;
  std::ofstream(home.dir.path() + "/Toy/logs/exp001/config.json") << stored.dump();
  EXPECT_NE(testing::run_cli(home.args("MLP", "--nproc=2 --ckpt_every=0 --dist_timeout=10 --exp_id=1"), out), 0);
  EXPECT_NE(out.find("last.ckpt: the checkpoint's generator state of rank 1 cannot be restored ("), std::string::npos)
      << out;
  // Rank 0, whose all-reduce rank 1 left, says that rank 1 is gone, not that it hung.
  EXPECT_NE(out.find("failed: rank 1 (PID "), std::string::npos) << out;
  EXPECT_NE(out.find(") is gone; stopping."), std::string::npos) << out;
  EXPECT_EQ(out.find("did not answer in time"), std::string::npos) << out;
  EXPECT_EQ(load_checkpoint(last).state.epoch, 1);
}

TEST(Distributed, CtrlCOnTheLauncherStopsEveryRankAndSaysHowToResume) {
  Home home(mlp_config(200), 960);
  TempDir tmp;
  const pid_t launcher = launcher_after_its_first_checkpoint(home, tmp.path() + "/log");
  const auto ranks = children_of(launcher);
  kill(launcher, SIGINT);
  EXPECT_EQ(testing::wait_exit(launcher), 130);
  const std::string log = testing::slurp(tmp.path() + "/log");
  EXPECT_NE(log.find("resume with: quantlab --problem=Toy --topology=MLP --exp_id=1 --load=last --home=" +
                     home.dir.path() + " --ckpt_every=0 --device=cpu --nproc=2"),
            std::string::npos)
      << log;
  // Once, from rank 0: the other rank leaves it to rank 0 (two ranks writing it interleaved).
  size_t said = 0;
  for (size_t at = log.find("resume with:"); at != std::string::npos; at = log.find("resume with:", at + 1)) ++said;
  EXPECT_EQ(said, 1u) << log;
  for (pid_t p : ranks) EXPECT_FALSE(process_alive(p)) << "rank PID " << p << " still runs";
  EXPECT_NO_THROW(load_checkpoint(home.saves(1) + "/last.ckpt"));
}

// Whether `pid` still runs (an exited child not yet reaped by its new parent is a zombie: not running).
bool running(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const size_t paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' && line[paren + 2] != 'X';
}

// The launcher killed outright (SIGKILL: nothing forwarded): its ranks get SIGTERM from the kernel
// and stop, resumably, instead of training on orphaned and holding the experiment's lock.
TEST(Distributed, RanksOfAKilledLauncherStop) {
  Home home(mlp_config(200), 960);
  TempDir tmp;
  const pid_t launcher = launcher_after_its_first_checkpoint(home, tmp.path() + "/log");
  const auto ranks = children_of(launcher);
  ASSERT_EQ(ranks.size(), 2u);
  kill(launcher, SIGKILL);
  testing::wait_exit(launcher);
  // Each stops between two steps and saves: seconds; a minute for a loaded machine.
  for (int i = 0; i < 1200 && (running(ranks[0]) || running(ranks[1])); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  for (pid_t p : ranks) {
    EXPECT_FALSE(running(p)) << "rank PID " << p << " still runs";
    if (running(p)) kill(p, SIGKILL);  // not left training for the tests after this one
  }
  EXPECT_NO_THROW(load_checkpoint(home.saves(1) + "/last.ckpt"));
}

TEST(Distributed, APortInUseOrAnUnreachableMasterIsNamed) {
  Home home(mlp_config(1), 160);
  TempDir tmp;
  // A port somebody else listens on.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  listen(fd, 1);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const std::string busy = std::to_string(ntohs(a.sin_port));
  const std::vector<std::pair<std::string, std::string>> rank0 = {
      {"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", busy}};
  int code = testing::wait_exit(testing::spawn_program(
      QL_BINARY, split_args(home.args("MLP", "--dist_timeout=5 --dist_start_timeout=5")), rank0, tmp.path() + "/a"));
  std::string log = testing::slurp(tmp.path() + "/a");
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("rank 0 cannot listen on 127.0.0.1:" + busy), std::string::npos) << log;
  // Rank 1 against that port: something accepts and never answers; c10d alone waited minutes.
  const std::vector<std::pair<std::string, std::string>> rank1_busy = {
      {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", busy}};
  code = testing::wait_exit(
      testing::spawn_program(QL_BINARY, split_args(home.args("MLP", "--dist_timeout=3 --dist_start_timeout=3")),
                             rank1_busy, tmp.path() + "/c"));
  log = testing::slurp(tmp.path() + "/c");
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("rank 1 cannot reach the master at 127.0.0.1:" + busy +
                     " within 3 s: something there accepts connections but does not answer"),
            std::string::npos)
      << log;
  close(fd);
  // A master that nobody started.
  const std::string nobody = std::to_string(testing::free_port());
  const std::vector<std::pair<std::string, std::string>> rank1 = {
      {"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", nobody}};
  const auto t0 = std::chrono::steady_clock::now();
  code = testing::wait_exit(testing::spawn_program(
      QL_BINARY, split_args(home.args("MLP", "--dist_timeout=3 --dist_start_timeout=3")), rank1, tmp.path() + "/b"));
  log = testing::slurp(tmp.path() + "/b");
  EXPECT_EQ(code, 1) << log;
  EXPECT_NE(log.find("rank 1 cannot reach the master at 127.0.0.1:" + nobody + " within 3 s"), std::string::npos)
      << log;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 30.0);
}

// A rank that starts later than the collective timeout (its data listed on a slow file system) is
// waited for up to --dist_start_timeout: the collectives' 5 s do not end the start-up (rank 1 comes
// 8 s after rank 0; what rank 0 does alone between collectives takes milliseconds here).
TEST(Distributed, ARankStartingLaterThanTheCollectiveTimeoutIsWaitedFor) {
  Home home(mlp_config(1), 160);
  TempDir tmp;
  const std::string port = std::to_string(testing::free_port());
  const std::string flags = "--threads=1 --dist_timeout=5 --dist_start_timeout=120";
  std::vector<pid_t> ranks;
  for (int r = 0; r < 2; ++r) {
    if (r == 1) std::this_thread::sleep_for(std::chrono::seconds(8));
    ranks.push_back(testing::spawn_program(
        QL_BINARY, split_args(home.args("MLP", flags)),
        {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}},
        tmp.path() + "/rank" + std::to_string(r)));
  }
  for (int r = 0; r < 2; ++r)
    EXPECT_EQ(testing::wait_exit(ranks[static_cast<size_t>(r)]), 0)
        << testing::slurp(tmp.path() + "/rank" + std::to_string(r));
  EXPECT_TRUE(fs::exists(home.saves(1) + "/last.ckpt"));
}

// A rank that would train with other settings than rank 0 (a config edited on one machine, another
// --set, another --amp) stops naming them, and rank 0 makes nothing: with another rate both ranks
// trained on silently, their weights apart; with other shapes gloo aborted.
TEST(Distributed, ARankWithOtherSettingsStopsNamingThem) {
  Home home(mlp_config(1), 160);
  TempDir tmp;
  const std::string port = std::to_string(testing::free_port());
  std::vector<pid_t> ranks;
  for (int r = 0; r < 2; ++r)
    ranks.push_back(testing::spawn_program(
        QL_BINARY,
        split_args(home.args("MLP", std::string("--threads=1 --dist_timeout=5") +
                                        (r == 1 ? " --set treat.optimizer.params.lr=0.5 --amp" : ""))),
        {{"RANK", std::to_string(r)}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "127.0.0.1"}, {"MASTER_PORT", port}},
        tmp.path() + "/rank" + std::to_string(r)));
  for (int r = 0; r < 2; ++r) EXPECT_NE(testing::wait_exit(ranks[static_cast<size_t>(r)]), 0);
  const std::string log = testing::slurp(tmp.path() + "/rank1");
  EXPECT_NE(log.find("rank 1 would train with other settings than rank 0: treat.optimizer.params.lr 0.001 on rank 0, "
                     "0.5 here, --amp here only"),
            std::string::npos)
      << log;
  const std::string zero = testing::slurp(tmp.path() + "/rank0");
  EXPECT_NE(zero.find("rank 0: another rank would train with other settings than rank 0 (that rank names them); "
                      "nothing was made"),
            std::string::npos)
      << zero;
  EXPECT_FALSE(fs::exists(home.saves(1))) << "an experiment was made";
}

}  // namespace
}  // namespace quantlab
