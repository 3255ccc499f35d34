// What QuantLab promises (docs/RELIABILITY.md), the later hostile probes: data found where the
// original's set-up kept it, nothing of the user's replaced or followed, branches and resumes
// that keep their history, refusals before anything is made. One test per defect; each fails on
// the code before its fix. The first probe's tests: test_reliability.cpp.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <thread>

#include "quantlab/data/problem.h"
#include "quantlab/data/valprep.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/lock.h"
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

// ---- The second hostile probe (docs/RELIABILITY.md, "Second probe"): one test per defect. ----

// The original README's set-up: the data copied to <drive>/QuantLab/<Problem>/data, and
// cfg/hard_storage.json naming the drives; <home>/<Problem>/data is not linked before the first launch.
struct Drives {
  TempDir fast, large;
  std::string data(const std::string& problem) const { return fast.path() + "/QuantLab/" + problem + "/data"; }
  void write_storage_file(const std::string& home) const {
    fs::create_directories(home + "/cfg");
    std::ofstream(home + "/cfg/hard_storage.json")
        << nlohmann::json{{"data", fast.path()}, {"logs", large.path()}}.dump();
  }
};

// A first launch finds IDX data on the data drive (a user's copy wins over Debian's packaged one),
// then links it; nothing is linked before the experiment exists.
TEST(Reliability, FirstLaunchFindsTheDataOnTheDataDrive) {
  for (const std::string problem : {"Toy", "FashionMNIST"}) {
    Home home(1);
    Drives drives;
    drives.write_storage_file(home.dir.path());
    fs::create_directories(home.dir.path() + "/" + problem);
    std::ofstream(home.dir.path() + "/" + problem + "/config.json") << home.cfg.dump();
    fs::remove_all(home.dir.path() + "/Toy/data");
    testing::write_toy_idx_problem(drives.data(problem), 160, 32, 4, true);
    auto o = home.options();
    o.problem = problem;
    std::string out;
    const LaunchResult r = run(o, &out);
    EXPECT_EQ(r.epochs_done, 1);
    EXPECT_NE(out.find("from " + drives.data(problem)), std::string::npos) << problem << ": " << out;
    const std::string link = home.dir.path() + "/" + problem + "/data";
    ASSERT_TRUE(fs::is_symlink(link)) << problem;
    EXPECT_EQ(fs::canonical(link), fs::canonical(drives.data(problem)));
    EXPECT_EQ(fs::canonical(home.dir.path() + "/" + problem + "/logs"),
              fs::canonical(drives.large.path() + "/QuantLab/" + problem + "/logs"));
  }
}

// The same look-up for CIFAR's binary files and ImageNet's image folders on the data drive.
TEST(Reliability, FirstLaunchLooksUpCifarAndImageFoldersOnTheDataDrive) {
  TempDir home;
  Drives drives;
  testing::write_cifar10(drives.data("CIFAR-10"), 3);
  testing::write_image_tree(drives.data("ImageNet") + "/train", {"n01440764", "n01443537"}, 2);
  testing::write_image_tree(drives.data("ImageNet") + "/val", {"n01440764", "n01443537"}, 1);
  for (const std::string problem : {"CIFAR-10", "ImageNet"}) {
    const std::string dir = data::find_data_dir(home.path(), problem, "", drives.data(problem));
    EXPECT_EQ(dir, drives.data(problem));
    data::DataOptions d;
    d.valid_fraction = 0.0;
    const auto loaded = data::load_problem(dir, d);
    EXPECT_EQ(loaded.format, problem == "CIFAR-10" ? "CIFAR-10" : "image folders") << loaded.format;
    EXPECT_GT(loaded.test->size(), 0);
  }
  // Once <home>/<Problem>/data exists (a link or a folder), it alone is looked at.
  fs::create_directories(home.path() + "/CIFAR-10/data");
  try {
    data::find_data_dir(home.path(), "CIFAR-10", "", drives.data("CIFAR-10"));
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(home.path() + "/CIFAR-10/data: no data files of CIFAR-10"), std::string::npos)
        << e.what();
  }
}

// 1. valprep follows only plain names of the images folder: paths are refused, nothing moves.
TEST(Reliability, ValprepNeverMovesFilesFromOutsideTheFolderNorLosesOne) {
  TempDir dir;
  const std::string val = dir.path() + "/val";
  fs::create_directories(val + "/sub");
  fs::create_directories(val + "/other");
  std::ofstream(val + "/sub/img.JPEG") << "a";
  std::ofstream(val + "/other/img.JPEG") << "b";
  std::ofstream(dir.path() + "/outside.JPEG") << "mine";
  const auto before = tree(dir.path());
  std::ofstream(dir.path() + "/sub.txt") << "sub/img.JPEG n01440764\nother/img.JPEG n01440764\n";
  std::ofstream(dir.path() + "/abs.txt") << dir.path() << "/outside.JPEG n01440764\n";
  std::ofstream(dir.path() + "/dots.txt") << "../outside.JPEG n01440764\n";
  for (const char* labels : {"/sub.txt", "/abs.txt", "/dots.txt"}) {
    try {
      data::sort_validation_images(val, dir.path() + labels, val);
      FAIL() << labels;
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("is not a plain file name of the images folder"), std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("nothing was moved"), std::string::npos) << e.what();
    }
  }
  auto after = tree(dir.path());
  for (const char* f : {"sub.txt", "abs.txt", "dots.txt"}) after.erase(f);
  EXPECT_EQ(after, before);
  EXPECT_EQ(bytes_of(dir.path() + "/outside.JPEG"), "mine");
}

// A trained toy experiment for the export and infer cases.
struct TrainedToy : Home {
  TrainedToy() : Home(1) { run(options()); }
  ExportOptions exporting() const {
    ExportOptions e;
    e.problem = "Toy";
    e.home = dir.path();
    e.exp_id = 1;
    e.threads = 1;
    return e;
  }
  std::string export_error(const ExportOptions& e) const {
    std::ostringstream sink;
    try {
      run_export(e, sink);
    } catch (const Error& err) {
      return err.what();
    }
    return "";
  }
};

// 2. export --out never replaces anything, never follows a link and never makes folders.
TEST(Reliability, ExportNeverReplacesWhatItDidNotWrite) {
  TrainedToy t;
  const std::string config = t.logs() + "/exp001/config.json", config_bytes = bytes_of(config);
  fs::create_symlink(config, t.dir.path() + "/link.qlm");
  auto e = t.exporting();
  e.check = false;
  for (const std::string& out : {config, t.dir.path() + "/link.qlm", std::string("/dev/null")}) {
    e.out = out;
    const std::string err = t.export_error(e);
    EXPECT_NE(err.find("--out=" + out + ": a"), std::string::npos) << err;
    EXPECT_NE(err.find("is there already"), std::string::npos) << err;
  }
  EXPECT_EQ(bytes_of(config), config_bytes);
  EXPECT_TRUE(fs::is_symlink(t.dir.path() + "/link.qlm"));
  e.out = t.dir.path() + "/no/such/dir/x.qlm";
  EXPECT_NE(t.export_error(e).find("does not exist (QuantLab does not create it)"), std::string::npos);
  EXPECT_FALSE(fs::exists(t.dir.path() + "/no"));
  e.out = t.dir.path() + "/x.qlm";  // a new file: written
  EXPECT_EQ(t.export_error(e), "");
  EXPECT_TRUE(fs::is_regular_file(e.out));
}

// 3 and 4. A branch holds its starting point and its inherited best from its first moment.
TEST(Reliability, ABranchStoppedAtOnceResumesWhereItBranchedAndKeepsItsInheritedBest) {
  Home home(3);
  run(home.options());
  const Checkpoint parent_best = load_checkpoint(home.saves(1) + "/best.ckpt");
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 5;
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  // A branch from last (epoch 3) stopped before its first batch ends.
  auto o = home.options();
  o.exp_id = 1;
  o.load = "3";
  o.branch = true;
  std::atomic<int> stop{SIGINT};
  std::ostringstream sink;
  const LaunchResult stopped = launch(o, &stop, sink);
  EXPECT_EQ(stopped.exp_id, 2);
  EXPECT_EQ(epoch_of(home.saves(2) + "/last.ckpt"), 3);
  ASSERT_TRUE(fs::exists(home.saves(2) + "/best.ckpt"));
  EXPECT_EQ(epoch_of(home.saves(2) + "/best.ckpt"), parent_best.state.epoch);
  // --mode=test works on it at once, with the inherited best.
  auto t = home.options();
  t.exp_id = 2;
  t.mode = LaunchMode::kTest;
  EXPECT_EQ(run(t).tested, "best.ckpt, after epoch " + std::to_string(parent_best.state.epoch));
  std::ostringstream table;
  list_experiments(home.dir.path(), "Toy", table);
  EXPECT_NE(table.str().find("exp002  MLP                   3/5"), std::string::npos) << table.str();
  // Resumed, it trains epochs 4 and 5 only.
  auto r = home.options();
  r.exp_id = 2;
  std::string out;
  EXPECT_EQ(run(r, &out).epochs_done, 5);
  EXPECT_NE(out.find("(after epoch 3)"), std::string::npos) << out;
  EXPECT_EQ(out.find("epoch 1/5"), std::string::npos) << out;
  EXPECT_EQ(out.find("never measured"), std::string::npos) << out;
  // A branch at the final epoch holds last.ckpt too; resumed, it has nothing left to train.
  o.load = "last";
  o.exp_id = 2;
  const LaunchResult at_end = run(o);
  EXPECT_EQ(at_end.exp_id, 3);
  EXPECT_EQ(epoch_of(home.saves(3) + "/last.ckpt"), 5);
  r.exp_id = 3;
  EXPECT_EQ(run(r, &out).epochs_done, 5);
  EXPECT_EQ(out.find("epoch 1/5"), std::string::npos) << out;
}

// 5. A loss that becomes NaN stops the run at once, naming epoch and step; the last good
// checkpoint is kept; export refuses non-finite weights.
TEST(Reliability, ANonFiniteLossStopsTheRunAndExportRefusesNonFiniteWeights) {
  Home home(1);
  run(home.options());
  const std::string last = bytes_of(home.saves(1) + "/last.ckpt");
  {
    auto stored = read_json_file(home.logs() + "/exp001/config.json");
    stored["treat"]["max_epoch"] = 2;
    stored["indiv"]["loss_function"] = {{"class", "CrossEntropyLoss"},
                                        {"params", {{"weight", std::vector<double>(10, 0.0)}}}};
    std::ofstream(home.logs() + "/exp001/config.json") << stored.dump();
  }
  auto o = home.options();
  o.exp_id = 1;
  const std::string e = error_of(o);
  EXPECT_NE(e.find("epoch 2, step 1 of "), std::string::npos) << e;
  EXPECT_NE(e.find("the training loss is NaN"), std::string::npos) << e;
  EXPECT_NE(e.find("last.ckpt (after epoch 1) is the last good state"), std::string::npos) << e;
  EXPECT_NE(e.find("resume with: quantlab "), std::string::npos) << e;
  EXPECT_EQ(bytes_of(home.saves(1) + "/last.ckpt"), last);
  EXPECT_FALSE(fs::exists(home.saves(1) + "/epoch0002.ckpt"));
  // A new experiment diverging in epoch 1.
  home.cfg["indiv"]["loss_function"] = {{"class", "CrossEntropyLoss"},
                                        {"params", {{"weight", std::vector<double>(10, 0.0)}}}};
  home.write_config();
  EXPECT_NE(error_of(home.options()).find("epoch 1, step 1 of "), std::string::npos);
  // A checkpoint with a NaN weight is not exported.
  Checkpoint c = load_checkpoint(home.saves(1) + "/best.ckpt");
  c.net.at("phi1_fc.weight")[0][0] = std::numeric_limits<float>::quiet_NaN();
  save_checkpoint(home.saves(1) + "/best.ckpt", c);
  ExportOptions x;
  x.problem = "Toy", x.home = home.dir.path(), x.exp_id = 1, x.threads = 1;
  std::ostringstream sink;
  try {
    run_export(x, sink);
    FAIL() << sink.str();
  } catch (const Error& err) {
    EXPECT_NE(std::string(err.what()).find("phi1_fc.weight holds values that are not finite"), std::string::npos)
        << err.what();
  }
  EXPECT_FALSE(fs::exists(home.logs() + "/exp001/export"));
}

// 6. infer measures nothing on an empty test set, and a label beyond the classes is an error.
TEST(Reliability, InferRefusesEmptyTestSetsAndLabelsBeyondTheClasses) {
  TrainedToy t;
  std::ostringstream sink;
  const ExportResult x = run_export(t.exporting(), sink);
  TempDir data;
  testing::write_toy_idx_problem(data.path(), 8, 8, 4, false);
  auto labels = torch::zeros({8}, torch::kUInt8);
  labels[5] = 200;
  testing::write_idx(data.path() + "/t10k-labels-idx1-ubyte", labels, false);
  InferOptions i;
  i.model = x.file, i.problem = "Toy", i.data = data.path(), i.threads = 1;
  try {
    run_infer(i, sink);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("label 200 of test image 5"), std::string::npos) << e.what();
  }
  testing::write_idx(data.path() + "/t10k-images-idx3-ubyte", torch::zeros({0, 28, 28}, torch::kUInt8), false);
  testing::write_idx(data.path() + "/t10k-labels-idx1-ubyte", torch::zeros({0}, torch::kUInt8), false);
  try {
    run_infer(i, sink);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("the test set has no images"), std::string::npos) << e.what();
  }
  // --labels never replaces a file.
  testing::write_toy_idx_problem(data.path(), 8, 8, 4, false);
  std::ofstream(data.path() + "/mine.txt") << "keep";
  i.labels_out = data.path() + "/mine.txt";
  EXPECT_THROW(run_infer(i, sink), IoError);
  EXPECT_EQ(bytes_of(data.path() + "/mine.txt"), "keep");
}

// 7. Trainings that cannot learn are refused: an epoch at learning rate 0, no training samples.
TEST(Reliability, TrainingsThatCannotLearnAreRefused) {
  Home home(4);
  home.cfg["treat"]["lr_scheduler"] = {{"class", "CosineAnnealingLR"}, {"params", {{"T_max", 2}}}};
  home.write_config();
  std::string e = error_of(home.options());
  EXPECT_NE(e.find("gives the learning rate 0.000000 after epoch 2, so epoch 3 of treat.max_epoch 4"),
            std::string::npos)
      << e;
  home.cfg["treat"]["lr_scheduler"] = {{"class", "CosineAnnealingLR"}, {"params", {{"T_max", 4}}}};
  home.cfg["treat"]["data"]["valid_fraction"] = 0.99999;
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("treat.data.valid_fraction: "), std::string::npos) << e;
  // RMSprop's alpha above 1 makes its average of squares negative (NaN at the first step).
  home.cfg["treat"]["data"]["valid_fraction"] = 0.1;
  home.cfg["treat"]["optimizer"] = {{"class", "RMSprop"}, {"params", {{"lr", 1e-3}, {"alpha", 2}}}};
  home.write_config();
  e = error_of(home.options());
  EXPECT_NE(e.find("treat.optimizer.params.alpha: expected a smoothing constant in [0, 1]"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(home.logs()));
}

// 8. Reading data is bounded: devices, FIFOs and links to them are refused, and so are headers
// declaring more than the machine's memory, and files longer than their header says.
TEST(Reliability, DataFilesAreBoundedAndNeverDevicesOrFifos) {
  Home home(1);
  const std::string labels = home.dir.path() + "/Toy/data/train-labels-idx1-ubyte";
  fs::remove(labels + ".gz");
  fs::create_symlink("/dev/zero", labels);
  std::string e = error_of(home.options());
  EXPECT_NE(e.find(labels + ": is a device"), std::string::npos) << e;
  fs::remove(labels);
  ASSERT_EQ(::mkfifo(labels.c_str(), 0600), 0);
  e = error_of(home.options());  // would block forever on open before the fix
  EXPECT_NE(e.find(labels + ": is a FIFO"), std::string::npos) << e;
  fs::remove(labels);
  // A header of 2^31 x 2^31 labels.
  {
    std::ofstream f(labels, std::ios::binary);
    const unsigned char h[] = {0, 0, 8, 2, 0x80, 0, 0, 0, 0x80, 0, 0, 0};
    f.write(reinterpret_cast<const char*>(h), sizeof h);
  }
  e = error_of(home.options());
  EXPECT_NE(e.find(labels + ": its header declares more data than this machine's memory"), std::string::npos) << e;
  // More data than the header declares.
  testing::write_idx(labels, torch::zeros({320}, torch::kUInt8), false);
  std::ofstream(labels, std::ios::binary | std::ios::app) << "trailing";
  e = error_of(home.options());
  EXPECT_NE(e.find(labels + ": more data than its header declares"), std::string::npos) << e;
  // A config file of 2 MiB.
  fs::remove(labels);
  testing::write_idx(labels, torch::zeros({320}, torch::kUInt8), false);
  {
    std::ofstream f(home.dir.path() + "/Toy/config.json");
    f << home.cfg.dump() << std::string(2 << 20, ' ');
  }
  e = error_of(home.options());
  EXPECT_NE(e.find("config.json: "), std::string::npos) << e;
  EXPECT_NE(e.find("KiB a JSON file may have"), std::string::npos) << e;
  EXPECT_FALSE(fs::exists(home.logs()));
}

// 9. A wrong indiv.net.pretrained, and problem add on a bad logs storage, create nothing.
TEST(Reliability, BadPretrainedReferencesAndBadStorageCreateNothing) {
  Home home(1);
  run(home.options());
  const auto before = tree(home.logs());
  const std::vector<nlohmann::json> bad = {
      {{"exp_id", 42}},
      {{"exp_id", 1}, {"epoch", 7}},
      {{"exp_id", 1}, {"epoch", "best"}, {"prefixes", {"nothing_matches"}}},
  };
  for (const auto& ref : bad) {
    home.cfg["indiv"]["net"]["pretrained"] = ref;
    home.write_config();
    EXPECT_NE(error_of(home.options()).find("indiv.net.pretrained"), std::string::npos) << ref.dump();
    EXPECT_EQ(tree(home.logs()), before) << ref.dump();
  }
  // problem add: a dangling logs link, and logs storage on /proc.
  TempDir other;
  fs::create_directories(other.path() + "/P");
  fs::create_symlink(other.path() + "/gone", other.path() + "/P/logs");
  const auto other_before = tree(other.path());
  EXPECT_THROW(add_problem(read_storage(other.path()), "P"), Error);
  EXPECT_EQ(tree(other.path()), other_before);
  TempDir third;
  fs::create_directories(third.path() + "/cfg");
  std::ofstream(third.path() + "/cfg/hard_storage.json")
      << R"({"data": ")" << third.path() << R"(/d", "logs": "/proc"})";
  fs::create_directories(third.path() + "/d");
  const auto third_before = tree(third.path());
  EXPECT_THROW(add_problem(read_storage(third.path()), "P"), Error);
  EXPECT_EQ(tree(third.path()), third_before);
}

// 10. The experiment lock never follows a link.
TEST(Reliability, TheExperimentLockNeverFollowsALink) {
  Home home(1);
  run(home.options());
  TempDir outside;
  const std::string victim = outside.path() + "/precious.txt";
  std::ofstream(victim) << "precious";
  const std::string lock = home.logs() + "/exp001/.lock";
  fs::remove(lock);
  fs::create_symlink(victim, lock);
  auto o = home.options();
  o.exp_id = 1;
  const std::string e = error_of(o);
  EXPECT_NE(e.find(lock + ": is a symbolic link"), std::string::npos) << e;
  EXPECT_EQ(bytes_of(victim), "precious");
}

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
  std::ostringstream out;
  std::string e;
  try {
    launch(t, nullptr, out);
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find("best.ckpt: no such checkpoint; available in"), std::string::npos) << e;
  EXPECT_NE(e.find("choose another with --load=last or --load=EPOCH"), std::string::npos) << e;
  EXPECT_EQ(out.str().find("loading data"), std::string::npos) << out.str();
  for (const auto& f : fs::directory_iterator(home.saves(1))) fs::remove(f.path());
  e = error_of(t);
  EXPECT_NE(e.find("the experiment has none yet (it has not completed an epoch)"), std::string::npos) << e;
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
