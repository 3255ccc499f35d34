// What QuantLab promises (docs/RELIABILITY.md): never losing a checkpoint, never overwriting a
// later state, refusing before creating anything, and never reporting a wrong number. One test per
// defect the first hostile probe found; each fails on the code before its fix. The later probes'
// tests: test_reliability_probes.cpp and test_reliability_resume.cpp (findings 3-5 of this one:
// test_reliability_locks.cpp); their toy main folder: reliability_home.h.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/data/problem.h"
#include "quantlab/data/valprep.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/export/export_run.h"
#include "quantlab/train/preflight.h"
#include "quantlab/util/error.h"
#include "test_util.h"
#include "reliability_home.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using namespace reliability;  // NOLINT(google-build-using-namespace): the toy folder's helpers

// 1. --exp_id without --load continues from `last`; an earlier checkpoint never silently replaces
// the later state: it is refused, or branched into a new experiment that records its parent.
TEST(Reliability, ResumeWithoutLoadContinuesFromLastAndNeverRewindsSilently) {
  Home home(3);
  auto o = home.options();
  run(o);  // experiment 1: 3 epochs
  // Raise max_epoch in the experiment's own config and resume without --load: from last (epoch 3).
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 4;
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  o.exp_id = 1;
  std::string out;
  const LaunchResult r = run(o, &out);
  EXPECT_EQ(r.epochs_done, 4);
  EXPECT_NE(out.find("continuing from " + home.saves(1) + "/last.ckpt (after epoch 3)"), std::string::npos) << out;
  EXPECT_EQ(epoch_of(home.saves(1) + "/epoch0003.ckpt"), 3);
  // Make best.ckpt the one of epoch 1, older than last.ckpt.
  fs::copy_file(home.saves(1) + "/epoch0001.ckpt", home.saves(1) + "/best.ckpt", fs::copy_options::overwrite_existing);
  const std::string best_before = bytes_of(home.saves(1) + "/best.ckpt");
  // --load=best is after epoch 1 while the experiment trained 4: refused, nothing touched.
  const auto files = tree(home.logs() + "/exp001");
  const std::string last4 = bytes_of(home.saves(1) + "/last.ckpt");
  o.load = "best";
  const std::string e = error_of(o);
  EXPECT_NE(e.find("experiment 1 has trained 4 epochs (last.ckpt); best.ckpt is after epoch 1"), std::string::npos)
      << e;
  EXPECT_NE(e.find("--branch"), std::string::npos) << e;
  EXPECT_EQ(tree(home.logs() + "/exp001"), files);
  EXPECT_EQ(bytes_of(home.saves(1) + "/last.ckpt"), last4);
  EXPECT_EQ(bytes_of(home.saves(1) + "/best.ckpt"), best_before);
  // --branch trains from best.ckpt in experiment 2, which records its parent; experiment 1 is kept.
  o.branch = true;
  const LaunchResult b = run(o, &out);
  EXPECT_EQ(b.exp_id, 2);
  EXPECT_NE(out.find("branched from experiment 1 at best.ckpt (after epoch 1)"), std::string::npos) << out;
  const auto parent = read_json_file(home.logs() + "/exp002/parent.json");
  EXPECT_EQ(parent["exp_id"], 1);
  EXPECT_EQ(parent["epoch"], 1);
  EXPECT_EQ(parent["checkpoint"], "best.ckpt");
  EXPECT_EQ(epoch_of(home.saves(2) + "/last.ckpt"), 4);
  EXPECT_EQ(epoch_of(home.saves(2) + "/epoch0001.ckpt"), 1);  // it holds its starting point
  EXPECT_EQ(bytes_of(home.saves(1) + "/last.ckpt"), last4);
  EXPECT_EQ(bytes_of(home.saves(1) + "/best.ckpt"), best_before);
  // --mode=test keeps best as its default.
  LaunchOptions t = home.options();
  t.exp_id = 1;
  t.mode = LaunchMode::kTest;
  const LaunchResult tr = run(t);
  EXPECT_EQ(tr.tested, "best.ckpt, after epoch 1");
}

// 2. last.ckpt deleted while snapshots exist: refused, naming the newest usable checkpoint and the
// flag that resumes from it; following that flag works.
TEST(Reliability, MissingLastCheckpointIsRefusedNamingTheNewestUsable) {
  Home home(3);
  auto o = home.options();
  run(o);
  fs::remove(home.saves(1) + "/last.ckpt");
  fs::remove(home.saves(1) + "/epoch0003.ckpt");
  const std::string best = bytes_of(home.saves(1) + "/best.ckpt");
  const auto files = tree(home.logs() + "/exp001");
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 4;
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  o.exp_id = 1;
  const std::string e = error_of(o);
  EXPECT_NE(e.find("saves/last.ckpt is missing, but the experiment has trained (status.json: 3 epochs)"),
            std::string::npos)
      << e;
  const int64_t best_epoch = epoch_of(home.saves(1) + "/best.ckpt");
  const std::string newest =
      best_epoch >= 2 ? "best.ckpt (after epoch " + std::to_string(best_epoch) + "): resume from it with --load=best"
                      : "epoch0002.ckpt (after epoch 2): resume from it with --load=2";
  EXPECT_NE(e.find("The newest usable checkpoint is " + newest), std::string::npos) << e;
  EXPECT_EQ(tree(home.logs() + "/exp001"), files);
  EXPECT_EQ(bytes_of(home.saves(1) + "/best.ckpt"), best);
  o.load = best_epoch >= 2 ? "best" : "2";
  EXPECT_EQ(run(o).epochs_done, 4);
  EXPECT_EQ(epoch_of(home.saves(1) + "/last.ckpt"), 4);
}

// 6. The final test says which weights it used.
TEST(Reliability, TheFinalTestNamesTheWeightsItUsed) {
  Home home(1);
  // The best epoch is picked by the training metric, measured every second epoch only: after one
  // epoch there is no best checkpoint, and the test must not call the last weights "best".
  home.cfg["protocol"] = {{"update_metric", "train_metric"}, {"metric_period", 2}};
  home.write_config();
  std::string out;
  const LaunchResult r = run(home.options(), &out);
  EXPECT_FALSE(fs::exists(home.saves(1) + "/best.ckpt"));
  EXPECT_NE(r.tested.find("test with the weights of the last epoch (1): no best.ckpt was saved"), std::string::npos)
      << r.tested;
  EXPECT_EQ(out.find("weights of the best epoch"), std::string::npos) << out;
}

// 7. No validation set: reported as such, with the best epoch chosen by the training statistic;
// an empty test set is an error before anything is created.
TEST(Reliability, EmptyEvaluationSetsAreNeverReportedAsPerfect) {
  Home home(2);
  home.cfg["treat"]["data"]["valid_fraction"] = 0.0;
  home.write_config();
  std::string out;
  run(home.options(), &out);
  EXPECT_NE(out.find("no validation set (treat.data.valid_fraction leaves no images): the best epoch is chosen by "
                     "train_metric instead of valid_metric"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("100.00%"), std::string::npos) << out;
  EXPECT_NE(out.find("| valid none |"), std::string::npos) << out;
  const Checkpoint c = load_checkpoint(home.saves(1) + "/last.ckpt");
  EXPECT_TRUE(std::isnan(c.state.stats[Statistic::kValidMetric]));
  EXPECT_GE(c.state.best_epoch, 1);
  EXPECT_EQ(c.state.best_value, load_checkpoint(home.saves(1) + "/best.ckpt").state.stats[Statistic::kTrainMetric]);
  // An empty test file.
  testing::write_idx(home.dir.path() + "/Toy/data/t10k-images-idx3-ubyte.gz", torch::zeros({0, 28, 28}, torch::kUInt8),
                     true);
  testing::write_idx(home.dir.path() + "/Toy/data/t10k-labels-idx1-ubyte.gz", torch::zeros({0}, torch::kUInt8), true);
  const std::string e = error_of(home.options());
  EXPECT_NE(e.find("the test set is empty"), std::string::npos) << e;
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1}));
}

// 8. Schedules are validated as strictly as optimizers: no negative or zero rate.
TEST(Reliability, SchedulesThatWouldGiveANonPositiveRateAreRefused) {
  Home home(1);
  const std::vector<std::pair<nlohmann::json, std::string>> bad = {
      {{{"class", "HandScheduler"}, {"params", {{"schedule", {{"5", -1}}}}}},
       "treat.lr_scheduler.params.schedule.5: expected a positive factor"},
      {{{"class", "StepLR"}, {"params", {{"step_size", 2}, {"gamma", 0}}}},
       "treat.lr_scheduler.params.gamma: expected a positive factor"},
      {{{"class", "MultiStepLR"}, {"params", {{"milestones", {3}}, {"gamma", -0.5}}}},
       "params.gamma: expected a positive factor"},
      {{{"class", "CosineAnnealingLR"}, {"params", {{"T_max", 3}, {"eta_min", -1e-3}}}},
       "params.eta_min: expected a non-negative rate"},
  };
  for (const auto& [spec, needle] : bad) {
    home.cfg["treat"]["lr_scheduler"] = spec;
    home.write_config();
    const std::string e = error_of(home.options());
    EXPECT_NE(e.find(needle), std::string::npos) << spec.dump() << ": " << e;
  }
  EXPECT_FALSE(fs::exists(home.logs()));
}

// 9. Data that does not fit the network is found before anything is created, with file, key and value.
TEST(Reliability, MismatchesBetweenConfigAndDataStopBeforeAnythingIsCreated) {
  Home home(1);
  // A label beyond the network's 10 classes.
  auto labels = torch::zeros({64}, torch::kUInt8);
  labels[17] = 12;
  testing::write_idx(home.dir.path() + "/Toy/data/t10k-labels-idx1-ubyte.gz", labels, true);
  std::string e = error_of(home.options());
  EXPECT_NE(e.find("t10k-labels-idx1-ubyte.gz: label 12 of test sample 17 is not a class of a network with 10 outputs"),
            std::string::npos)
      << e;
  testing::write_toy_idx_problem(home.dir.path() + "/Toy/data", 320, 64, 4, true);
  // HingeLoss told another number of classes than the network has.
  home.cfg["indiv"]["loss_function"]["params"]["num_classes"] = 12;
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("indiv.loss_function: HingeLoss: the network gives 10 scores, num_classes is 12"), std::string::npos)
      << e;
  home.cfg["indiv"]["loss_function"]["params"]["num_classes"] = 10;
  // Test images of another shape.
  testing::write_idx(home.dir.path() + "/Toy/data/t10k-images-idx3-ubyte.gz", torch::zeros({64, 32, 32}, torch::kUInt8),
                     true);
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("test images are [1, 32, 32], training images"), std::string::npos) << e;
  EXPECT_NE(e.find("are [1, 28, 28]"), std::string::npos) << e;
  testing::write_toy_idx_problem(home.dir.path() + "/Toy/data", 320, 64, 4, true);
  // A capacity that leaves a layer empty, and one that cannot fit in memory.
  home.cfg["indiv"]["net"]["params"]["capacity"] = 0.0001;
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("indiv.net.params.capacity = 0.0001: layer phi1_fc would have 784 inputs and 0 outputs"),
            std::string::npos)
      << e;
  // 784 x 2,048,000 weights with gradients and Adam's moments: 25.7 GB, more than CI's 24 GiB.
  if (static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGE_SIZE)) < 25.0e9) {
    home.cfg["indiv"]["net"]["params"]["capacity"] = 1000;
    home.write_config();
    e = error_of(home.options());
    EXPECT_NE(e.find("indiv.net.params.capacity = 1000: the network would need at least"), std::string::npos) << e;
    EXPECT_NE(e.find("more than this machine's"), std::string::npos) << e;
  }
  // A last training batch of one image: batch norm cannot train on it (libtorch's error came after
  // a whole epoch, with the experiment made).
  home.cfg["indiv"]["net"]["params"]["capacity"] = 0.02;
  home.cfg["treat"]["data"]["valid_fraction"] = 0.0;
  home.cfg["treat"]["data"]["bs_train"] = 319;
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("treat.data: the last training batch holds 1 image (320 training images in batches of 319)"),
            std::string::npos)
      << e;
  EXPECT_FALSE(fs::exists(home.logs()));
  // Two processes sharing batches of 2 give each process one image a step.
  train::Experiment two(home.cfg, "MLP", torch::kCPU);
  two.data.bs_train = 2;
  try {
    train::check_training_batches(two, 320, 2);
    ADD_FAILURE() << "batches of 2 over 2 processes were not refused";
  } catch (const ConfigError& err) {
    EXPECT_NE(std::string(err.what()).find("a process's share of every training batch holds 1 image"),
              std::string::npos)
        << err.what();
  }
  two.data.bs_train = 4;
  EXPECT_NO_THROW(train::check_training_batches(two, 320, 2));
  EXPECT_THROW(train::check_training_batches(two, 321, 2), ConfigError);  // the last image alone on one process
}

// 10. Absurd nesting and thread counts are bounded with a message.
TEST(Reliability, DeepNestingAndAbsurdThreadCountsAreRefused) {
  Home home(1);
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  std::ofstream(home.dir.path() + "/Toy/config.json") << deep;
  std::string out;
  EXPECT_EQ(testing::run_cli(home.args(""), out), 1);
  EXPECT_NE(out.find("config.json: nested more than 64 levels deep"), std::string::npos) << out;
  home.write_config();
  EXPECT_NE(testing::run_cli(home.args("--threads=100000"), out), 0);
  EXPECT_NE(out.find("--threads: expected an integer from 0 to 1024, got 100000"), std::string::npos) << out;
  // Range errors print plain numbers.
  EXPECT_NE(testing::run_cli(home.args("--exp_id=-1"), out), 0);
  EXPECT_NE(out.find("--exp_id: expected an integer from 0 to 999999999, got -1"), std::string::npos) << out;
  EXPECT_LT(out.size(), 400u) << out;
}

// 11. A mistyped --problem or a --home that does not exist creates nothing.
TEST(Reliability, MistypedProblemOrHomeCreatesNothing) {
  Home home(1);
  const auto before = tree(home.dir.path());
  auto o = home.options();
  o.problem = "Tyo";
  std::string e = error_of(o);
  EXPECT_NE(e.find("--problem=Tyo: no folder " + home.dir.path() + "/Tyo (problems here: Toy)"), std::string::npos)
      << e;
  EXPECT_EQ(tree(home.dir.path()), before);
  o = home.options();
  o.home = home.dir.path() + "/nowhere";
  e = error_of(o);
  EXPECT_NE(e.find("--home=" + home.dir.path() + "/nowhere: no such folder"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(home.dir.path() + "/nowhere"));
  // A hard_storage.json naming folders that do not exist (a drive not mounted).
  fs::create_directories(home.dir.path() + "/cfg");
  std::ofstream(home.dir.path() + "/cfg/hard_storage.json")
      << R"({"data": "/nonexistent-ssd", "logs": "/nonexistent-hdd"})";
  e = error_of(home.options());
  EXPECT_NE(e.find("\"data\" is /nonexistent-ssd, which is not an existing folder"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists("/nonexistent-ssd"));
}

// 12. What a kill leaves behind is cleaned or completed at the next start, and `list` is never
// behind the last checkpoint.
TEST(Reliability, LeftoversOfAKillAreCleanedAndStatusCatchesUp) {
  Home home(2);
  auto o = home.options();
  run(o);
  const std::string saves = home.saves(1);
  // A kill after last.ckpt of epoch 2 but before its snapshot and status.json: simulate with the
  // files of epoch 1 and a partial temporary file of a dead process.
  fs::remove(saves + "/epoch0002.ckpt");
  auto st = Logbook::open(home.logs(), 1).saves().status();
  st["epochs_done"] = 1;
  st["finished"] = false;
  st["best_epoch"] = 0;  // another best epoch than last.ckpt's: its accuracy is not shown beside that one's number
  st["best"]["valid_accuracy"] = 12.34;
  std::ofstream(saves + "/status.json") << st.dump();
  fs::last_write_time(saves + "/status.json", fs::last_write_time(saves + "/last.ckpt") - std::chrono::seconds(5));
  const pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  std::ofstream(saves + "/epoch0002.ckpt.tmp." + std::to_string(dead)) << "partial";
  std::ofstream(saves + "/best.tmp.bak") << "the user's";  // not QuantLab's <name>.tmp.<PID>
  std::ofstream(home.logs() + "/exp001/notes.tmp.ipynb") << "the user's";
  fs::create_directories(home.logs() + "/.new-exp-" + std::to_string(dead) + "-1/saves");
  std::ostringstream table;
  list_experiments(home.dir.path(), "Toy", table);
  EXPECT_NE(table.str().find("2/2"), std::string::npos) << table.str();  // from last.ckpt, not the lagging status
  EXPECT_NE(table.str().find("status.json lags its last checkpoint"), std::string::npos) << table.str();
  EXPECT_EQ(table.str().find("12.34%"), std::string::npos) << table.str();
  o.exp_id = 1;
  std::string out;
  run(o, &out);
  EXPECT_NE(out.find("removed 1 partial file(s) a stopped run left: epoch0002.ckpt.tmp." + std::to_string(dead)),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("completed the save of epoch 2 that a stop interrupted: "), std::string::npos) << out;
  EXPECT_TRUE(fs::exists(saves + "/epoch0002.ckpt"));
  EXPECT_EQ(bytes_of(saves + "/epoch0002.ckpt"), bytes_of(saves + "/last.ckpt"));
  EXPECT_FALSE(fs::exists(saves + "/epoch0002.ckpt.tmp." + std::to_string(dead)));
  EXPECT_EQ(bytes_of(saves + "/best.tmp.bak"), "the user's");
  EXPECT_EQ(bytes_of(home.logs() + "/exp001/notes.tmp.ipynb"), "the user's");
  EXPECT_EQ(Logbook::open(home.logs(), 1).saves().status()["epochs_done"], 2);
  // A new launch removes the folder a killed launch was preparing.
  run(home.options());
  EXPECT_FALSE(fs::exists(home.logs() + "/.new-exp-" + std::to_string(dead) + "-1"));
}

// 13. Checkpoints count the best epoch from 1 like every other epoch; --load takes only what it
// documents; a checkpoint re-saved from Python loads.
TEST(Reliability, CheckpointEpochsAreOneBasedAndLoadIsValidated) {
  Home home(2);
  run(home.options());
  const Checkpoint c = load_checkpoint(home.saves(1) + "/best.ckpt");
  EXPECT_EQ(c.state.best_epoch, c.state.epoch);  // best.ckpt is written at its own epoch
  EXPECT_GE(c.state.best_epoch, 1);
  auto o = home.options();
  o.load = "yesterday";
  EXPECT_NE(error_of(o).find("--load needs --exp_id"), std::string::npos) << error_of(o);
  o.exp_id = 1;
  EXPECT_NE(error_of(o).find("--load='yesterday': expected best, last or an epoch number"), std::string::npos)
      << error_of(o);
  if (!testing::python_torch_available()) GTEST_SKIP() << testing::python_torch_missing();
  const std::string f = home.saves(1) + "/last.ckpt";
  const std::string script =
      "import torch,sys; f=sys.argv[1]; c=torch.load(f); torch.save(c, f + '.py')\n"
      "del c['checksum']; torch.save(c, f + '.nosum')";
  std::string log;
  ASSERT_EQ(testing::run_python(script, f, log), 0) << log;
  const Checkpoint resaved = load_checkpoint(f + ".py");
  EXPECT_TRUE(resaved.notes.empty());
  EXPECT_TRUE(torch::equal(resaved.net.at("phi1_fc.weight"), load_checkpoint(f).net.at("phi1_fc.weight")));
  const Checkpoint nosum = load_checkpoint(f + ".nosum");
  ASSERT_EQ(nosum.notes.size(), 1u);
  EXPECT_NE(nosum.notes[0].find("a valid checkpoint file without QuantLab's checksum"), std::string::npos);
}

}  // namespace
}  // namespace quantlab
