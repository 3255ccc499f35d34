// What QuantLab promises (docs/RELIABILITY.md), the second hostile probe's findings 11-19:
// resuming (with another number of processes, a damaged status.json, pretrained tensors), branches
// of running experiments or with a failed first save, --mode=test's checkpoints, the printed resume
// command, the smaller ones. One test per defect; each fails on the code before its fix. Findings
// 1-10: test_reliability_probes.cpp; the first probe: test_reliability.cpp.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/util/error.h"
#include "test_util.h"
#include "reliability_home.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using namespace reliability;  // NOLINT(google-build-using-namespace): the toy folder's helpers

// 11 (in one process). Resuming a checkpoint of 2 processes with 1 says it is not bit-identical.
TEST(Reliability, ResumingATwoProcessCheckpointWithOneSaysSo) {
  Home home(1);
  run(home.options());
  Checkpoint c = load_checkpoint(home.saves(1) + "/last.ckpt");
  c.rng_ranks = {c.rng_cpu.clone(), c.rng_cpu.clone()};
  // Each rank's GPU generator (a CUDA run's): kept as written, in rank order.
  c.rng_cuda_ranks = {torch::arange(16, torch::kUInt8), torch::arange(16, 32, torch::kUInt8)};
  save_checkpoint(home.saves(1) + "/last.ckpt", c);
  const Checkpoint again = load_checkpoint(home.saves(1) + "/last.ckpt");
  ASSERT_EQ(again.rng_cuda_ranks.size(), 2u);
  EXPECT_TRUE(torch::equal(again.rng_cuda_ranks[1], c.rng_cuda_ranks[1]));
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 2;
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  auto o = home.options();
  o.exp_id = 1;
  std::string out;
  run(o, &out);
  EXPECT_NE(out.find("note: resuming with 1 process from a checkpoint of 2: the run goes on, but it is not "
                     "bit-identical"),
            std::string::npos)
      << out;
}

// 12. The smaller ones.
TEST(Reliability, ConfigWithExpIdHandRollbackAndListingAreTold) {
  Home home(2);
  run(home.options());
  auto o = home.options();
  o.exp_id = 1;
  o.config = home.dir.path() + "/missing.json";
  EXPECT_NE(error_of(o).find("--config"), std::string::npos) << error_of(o);
  o.config.reset();
  // A hand rollback: last.ckpt replaced by epoch 1's; refused, and best.ckpt is left as it is.
  const std::string best = bytes_of(home.saves(1) + "/best.ckpt");
  fs::copy_file(home.saves(1) + "/epoch0001.ckpt", home.saves(1) + "/last.ckpt", fs::copy_options::overwrite_existing);
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 3;
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  const std::string e = error_of(o);
  EXPECT_NE(e.find("--branch"), std::string::npos) << e;
  EXPECT_EQ(bytes_of(home.saves(1) + "/best.ckpt"), best);
  // list: an unknown problem is an error; exp5 is not exp005; a missing last.ckpt is not "resume";
  // a damaged status.json is named as such.
  std::ostringstream table;
  EXPECT_THROW(list_experiments(home.dir.path(), "Nope", table), Error);
  fs::create_directories(home.logs() + "/exp5");
  fs::remove(home.saves(1) + "/last.ckpt");
  std::ofstream(home.saves(1) + "/status.json") << "{ damaged";
  list_experiments(home.dir.path(), "Toy", table);
  const std::string t = table.str();
  EXPECT_EQ(t.find("exp005"), std::string::npos) << t;
  EXPECT_EQ(t.find("--load=last"), std::string::npos) << t;
  EXPECT_NE(t.find("status.json is damaged"), std::string::npos) << t;
  EXPECT_EQ(t.find("lags its last checkpoint"), std::string::npos) << t;
  // One that parses with a field of another type (edited by hand) is damaged too, not an error of
  // list or compare.
  std::ofstream(home.saves(1) + "/status.json") << R"({"epochs_done": "3", "max_epoch": 5})";
  std::ostringstream retyped;
  list_experiments(home.dir.path(), "Toy", retyped);
  EXPECT_NE(retyped.str().find("status.json is damaged"), std::string::npos) << retyped.str();
  std::string damaged;  // compare says so too (it said "not started")
  EXPECT_EQ(testing::run_cli("compare --problem=Toy --home=" + home.dir.path(), damaged), 0) << damaged;
  EXPECT_NE(damaged.find("(status.json damaged: the figures are last.ckpt's)"), std::string::npos) << damaged;
  // The files of 2026-11-27 recorded update_metric as a number: well formed.
  std::ofstream(home.saves(1) + "/status.json") << R"({"epochs_done": 2, "max_epoch": 2, "update_metric": 1})";
  EXPECT_FALSE(Logbook::open(home.logs(), 1).saves().status_damaged());
  EXPECT_EQ(Logbook::open(home.logs(), 1).saves().status().value("epochs_done", 0), 2);
  std::string compared;
  EXPECT_EQ(testing::run_cli("compare --problem=Toy --home=" + home.dir.path(), compared), 0) << compared;
  std::string cli;
  EXPECT_NE(testing::run_cli("list --problem=Nope --home=" + home.dir.path(), cli), 0) << cli;
}

// 12. A shape error names the image file, not the label file.
TEST(Reliability, ShapeErrorsNameTheImageFile) {
  Home home(1);
  testing::write_idx(home.dir.path() + "/Toy/data/train-images-idx3-ubyte.gz",
                     torch::zeros({320, 20, 20}, torch::kUInt8), true);
  const std::string e = error_of(home.options());
  EXPECT_NE(e.find("train-images-idx3-ubyte.gz"), std::string::npos) << e;
  EXPECT_EQ(e.find("labels-idx1"), std::string::npos) << e;
}

// 13. An experiment stopped before its first checkpoint resumes as it was made: with
// indiv.net.pretrained's tensors (before, it trained from the random initialisation).
TEST(Reliability, AnExperimentWithoutACheckpointResumesWithItsPretrainedTensors) {
  Home home(1);
  run(home.options());  // experiment 1: the source of the tensors
  home.cfg["indiv"]["net"]["pretrained"] = {{"exp_id", 1}, {"epoch", "last"}};
  home.write_config();
  run(home.options());  // experiment 2, uninterrupted
  const Checkpoint whole = load_checkpoint(home.saves(2) + "/last.ckpt");
  // The same experiment as a stop during its first epoch leaves it: no checkpoint, no status.
  for (const char* f : {"last.ckpt", "best.ckpt", "epoch0001.ckpt", "status.json"}) fs::remove(home.saves(2) + "/" + f);
  auto o = home.options();
  o.exp_id = 2;
  std::string out;
  EXPECT_EQ(run(o, &out).epochs_done, 1);
  EXPECT_NE(out.find("no checkpoint yet"), std::string::npos) << out;
  EXPECT_NE(out.find("pretrained tensors"), std::string::npos) << out;
  const Checkpoint resumed = load_checkpoint(home.saves(2) + "/last.ckpt");
  for (const auto& [name, t] : whole.net) EXPECT_TRUE(torch::equal(t, resumed.net.at(name))) << name;
}

// 14. A branch whose first save fails (a full disk) is not made: a branch never exists without
// its starting point (before, it was left holding none and trained from epoch 1 when resumed).
TEST(Reliability, ABranchWhoseFirstSaveFailsIsNotMade) {
  Home home(2);
  run(home.options());
  auto o = home.options();
  o.exp_id = 1;
  o.load = "1";
  o.branch = true;
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_IGN);
  // config.json and parent.json fit; a checkpoint does not.
  const auto ckpt = fs::file_size(home.saves(1) + "/last.ckpt");
  ASSERT_LT(2 * fs::file_size(home.logs() + "/exp001/config.json"), ckpt);
  struct rlimit small = old;
  small.rlim_cur = ckpt / 2;
  setrlimit(RLIMIT_FSIZE, &small);
  const std::string e = error_of(o);
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_NE(e.find("the previous version is unchanged"), std::string::npos) << e;
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1}));
  for (const auto& f : tree(home.logs())) EXPECT_EQ(f.find(".new-exp-"), std::string::npos) << f;
  // A branch folder without its start (made by an older QuantLab) is refused, not trained afresh.
  fs::create_directories(home.logs() + "/exp002/saves");
  fs::copy_file(home.logs() + "/exp001/config.json", home.logs() + "/exp002/config.json");
  std::ofstream(home.logs() + "/exp002/parent.json") << R"({"exp_id": 1, "checkpoint": "epoch0001.ckpt"})";
  o.exp_id = 2;
  o.load.reset();
  o.branch = false;
  const std::string refused = error_of(o);
  EXPECT_NE(refused.find("is a branch of experiment 1 (parent.json) but holds no checkpoint"), std::string::npos)
      << refused;
  EXPECT_FALSE(fs::exists(home.saves(2) + "/last.ckpt"));
}

// 15. A stop during the start-up makes no new experiment; a stopped test is not an error.
TEST(Reliability, AStopBeforeTheStartMakesNothingAndAStoppedTestIsNoError) {
  Home home(1);
  std::atomic<int> stop{SIGINT};
  std::ostringstream sink;
  const LaunchResult r = launch(home.options(), &stop, sink);
  EXPECT_EQ(r.interrupted_by, SIGINT);
  EXPECT_EQ(r.exp_id, -1);
  EXPECT_TRUE(Logbook::list(home.logs()).empty());
  run(home.options());
  auto t = home.options();
  t.exp_id = 1;
  t.mode = LaunchMode::kTest;
  const LaunchResult tested = launch(t, &stop, sink);
  EXPECT_EQ(tested.interrupted_by, SIGINT);
  EXPECT_FALSE(tested.test.has_value());
}

// The error of a launch that must stop before it reads the data.
std::string error_before_the_data(const LaunchOptions& o) {
  std::ostringstream out;
  std::string e;
  try {
    launch(o, nullptr, out);
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_EQ(out.str().find("loading data"), std::string::npos) << out.str();
  return e;
}

// 16. --mode=test: `last` is the highest epoch where there is no last.ckpt (the original's folders);
// a missing checkpoint is named, with what to do, before the data are read.
TEST(Reliability, TestModeFindsTheHighestEpochAndNamesAMissingCheckpointBeforeTheData) {
  Home home(2);
  run(home.options());  // best, last, epoch0001, epoch0002
  fs::remove(home.saves(1) + "/last.ckpt");
  auto t = home.options();
  t.exp_id = 1;
  t.mode = LaunchMode::kTest;
  t.load = "last";
  EXPECT_EQ(run(t).tested, "epoch0002.ckpt, after epoch 2");
  fs::remove(home.saves(1) + "/best.ckpt");
  t.load.reset();  // best
  std::string e = error_before_the_data(t);
  EXPECT_NE(e.find("best.ckpt: no such checkpoint; available in"), std::string::npos) << e;
  EXPECT_NE(e.find("choose another with --load=last or --load=EPOCH"), std::string::npos) << e;
  for (const auto& f : fs::directory_iterator(home.saves(1))) fs::remove(f.path());
  e = error_of(t);
  EXPECT_NE(e.find("the experiment has none yet (it has not completed an epoch)"), std::string::npos) << e;
}

// 16b. Training from a checkpoint that is not there (--load=EPOCH or best, or a --branch of an
// experiment without any) is refused before the data are read, as in --mode=test.
TEST(Reliability, TrainingNamesAMissingCheckpointBeforeTheData) {
  Home home(2);
  run(home.options());  // best, last, epoch0001, epoch0002
  const auto refused = [&](const std::optional<std::string>& load, bool branch) {
    auto t = home.options();
    t.exp_id = 1;
    t.load = load;
    t.branch = branch;
    return error_before_the_data(t);
  };
  std::string e = refused("7", false);
  EXPECT_NE(e.find("epoch0007.ckpt: no such checkpoint; available in"), std::string::npos) << e;
  e = refused("7", true);
  EXPECT_NE(e.find("epoch0007.ckpt: no such checkpoint; available in"), std::string::npos) << e;
  fs::remove(home.saves(1) + "/best.ckpt");
  e = refused("best", true);
  EXPECT_NE(e.find("best.ckpt: no such checkpoint; available in"), std::string::npos) << e;
  for (const auto& f : fs::directory_iterator(home.saves(1))) fs::remove(f.path());
  e = refused(std::nullopt, true);
  EXPECT_NE(e.find("experiment 1 has no checkpoint yet (it has not completed an epoch): there is nothing to branch "
                   "from"),
            std::string::npos)
      << e;
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1}));  // no branch made
}

// 17. The printed resume command survives the shell: folders with spaces or quotes are quoted.
TEST(Reliability, TheResumeCommandQuotesWhatTheShellWouldSplit) {
  LaunchOptions o;
  o.problem = "Toy", o.topology = "MLP", o.home = "/data/my runs/it's", o.data = "/mnt/fashion";
  EXPECT_EQ(resume_command(o, 3),
            "quantlab --problem=Toy --topology=MLP --exp_id=3 --load=last --home='/data/my "
            "runs/it'\\''s' --data=/mnt/fashion");
  // Under an outside launcher, with it: a resume keeps the number of processes.
  o.home = ".", o.data = "";
  EXPECT_EQ(resume_command(o, 3, "SLURM"), "srun quantlab --problem=Toy --topology=MLP --exp_id=3 --load=last");
  EXPECT_EQ(resume_command(o, 3, "torchrun").rfind("torchrun <this run's torchrun options> --no-python quantlab ", 0),
            0u);
}

// 18. A branch of an experiment that another process trains reads its saved checkpoint and leaves
// it alone (resuming it is still refused); a branch of one without a checkpoint is refused
// (before, that launch trained the experiment itself from epoch 1).
TEST(Reliability, ABranchOfARunningExperimentAndOfOneWithoutACheckpoint) {
  Home home(2);
  run(home.options());
  const std::string parent_last = bytes_of(home.saves(1) + "/last.ckpt");
  auto o = home.options();
  o.exp_id = 1;
  o.load = "1";
  o.branch = true;
  std::string out;
  auto r = home.options();
  r.exp_id = 1;
  {
    ExperimentLock held(home.logs() + "/exp001", "experiment 1");
    EXPECT_EQ(run(o, &out).exp_id, 2);
    EXPECT_NE(error_of(r).find("in use by another QuantLab process"), std::string::npos);
  }
  EXPECT_NE(out.find("note: experiment 1 is in use by another process"), std::string::npos) << out;
  EXPECT_EQ(epoch_of(home.saves(2) + "/last.ckpt"), 2);
  EXPECT_EQ(bytes_of(home.saves(1) + "/last.ckpt"), parent_last);
  fs::create_directories(home.saves(3));
  fs::copy_file(home.logs() + "/exp001/config.json", home.logs() + "/exp003/config.json");
  o.exp_id = 3;
  o.load = "last";
  EXPECT_NE(error_of(o).find("experiment 3 has no checkpoint yet (it has not completed an epoch): there is nothing "
                             "to branch from"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(home.saves(3) + "/last.ckpt"));
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1, 2, 3}));
}

// 19. A damaged status.json is written again from the checkpoints when the experiment resumes,
// its best epoch's accuracies from best.ckpt (before, they were lost: "best" became null).
TEST(Reliability, ADamagedStatusIsWrittenAgainWithTheBestEpochFromItsCheckpoint) {
  Home home(2);
  run(home.options());
  // A best epoch before the last one: epoch 1's checkpoint as best.ckpt, last.ckpt saying so.
  Checkpoint last = load_checkpoint(home.saves(1) + "/last.ckpt");
  const Checkpoint first = load_checkpoint(home.saves(1) + "/epoch0001.ckpt");
  last.state.best_epoch = 1;
  last.state.best_value = first.state.best_value;
  save_checkpoint(home.saves(1) + "/last.ckpt", last);
  fs::copy_file(home.saves(1) + "/epoch0001.ckpt", home.saves(1) + "/best.ckpt", fs::copy_options::overwrite_existing);
  std::ofstream(home.saves(1) + "/status.json") << "{ damaged";
  auto o = home.options();
  o.exp_id = 1;
  std::string out;
  EXPECT_EQ(run(o, &out).epochs_done, 2);  // nothing left to train: the status, then the final test
  EXPECT_NE(out.find("status.json is damaged: it is written again from the checkpoints"), std::string::npos) << out;
  const auto st = read_json_file(home.saves(1) + "/status.json");
  ASSERT_TRUE(st["best"].is_object()) << st.dump(2);
  EXPECT_EQ(st["best"]["epoch"], 1) << st.dump(2);
  EXPECT_DOUBLE_EQ(st["best"]["valid_accuracy"].get<double>(),
                   100.0 - first.state.stats[train::Statistic::kValidMetric])
      << st.dump(2);
  EXPECT_EQ(st["epochs_done"], 2);
}

}  // namespace
}  // namespace quantlab
