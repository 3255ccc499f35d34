// What QuantLab promises (docs/RELIABILITY.md), the second hostile probe's findings 1-10: data
// found where the original's set-up kept it, nothing of the user's replaced or followed, branches
// that keep their history, refusals before anything is made. One test per defect; each fails on
// the code before its fix. Findings 11-19: test_reliability_resume.cpp; the first probe:
// test_reliability.cpp.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "quantlab/data/problem.h"
#include "quantlab/data/valprep.h"
#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/export/export_run.h"
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
  e.format = "onnx";  // another format's name
  EXPECT_NE(t.export_error(e).find("--out=" + e.out + ": a .qlm name for --format=onnx"), std::string::npos);
  e.format = "qlm";
  e.out = t.dir.path() + "/x.onnx";
  EXPECT_NE(t.export_error(e).find("--out=" + e.out + ": a .onnx name for --format=qlm"), std::string::npos);
  EXPECT_FALSE(fs::exists(e.out));
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
  EXPECT_NE(e.find("(e.g. a lower treat.optimizer.params.lr)"), std::string::npos) << e;
  EXPECT_EQ(bytes_of(home.saves(1) + "/last.ckpt"), last);
  EXPECT_FALSE(fs::exists(home.saves(1) + "/epoch0002.ckpt"));
  // list and compare say so (they said "stopped", and "not started" for a first epoch).
  const auto states = [&] {
    std::ostringstream table, json;
    list_experiments(home.dir.path(), "Toy", table);
    CompareOptions c;
    c.home = home.dir.path(), c.problem = "Toy", c.format = "json";
    compare_experiments(c, json);
    std::string compared;
    for (const auto& r : nlohmann::json::parse(json.str())) compared += r["state"].get<std::string>() + ";";
    return table.str() + compared;
  };
  std::string listed = states();
  EXPECT_NE(listed.find("diverged in epoch 2 (change its config.json, e.g. a lower rate, and resume with "
                        "--exp_id=1)"),
            std::string::npos)
      << listed;
  EXPECT_NE(listed.find("diverged;"), std::string::npos) << listed;
  // A new experiment diverging in epoch 1.
  home.cfg["indiv"]["loss_function"] = {{"class", "CrossEntropyLoss"},
                                        {"params", {{"weight", std::vector<double>(10, 0.0)}}}};
  home.cfg["treat"]["optimizer"]["params"]["eps"] = 0;  // the advice names it (0/0 for all-zero gradients)
  home.write_config();
  const std::string first = error_of(home.options());
  EXPECT_NE(first.find("epoch 1, step 1 of "), std::string::npos) << first;
  EXPECT_NE(first.find("(e.g. treat.optimizer.params.eps above 0, such as 1e-8"), std::string::npos) << first;
  listed = states();
  EXPECT_NE(listed.find("diverged in epoch 1 (change its config.json, e.g. a lower rate, and resume with --exp_id=2)"),
            std::string::npos)
      << listed;
  EXPECT_NE(listed.find("diverged;diverged;"), std::string::npos) << listed;
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
// declaring more than the file holds (named as such, not as more than the machine's memory),
// and files longer than their header says.
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
  EXPECT_NE(
      e.find(labels + ": its header declares 4611686018427387904 data bytes, more than the 12-byte file can hold"),
      std::string::npos)
      << e;
  {  // 4 x (2^32 - 1): more than 64 bits count
    std::ofstream f(labels, std::ios::binary | std::ios::trunc);
    const unsigned char h[] = {0,   0,   8,   4,   255, 255, 255, 255, 255, 255,
                               255, 255, 255, 255, 255, 255, 255, 255, 255, 255};
    f.write(reinterpret_cast<const char*>(h), sizeof h);
  }
  e = error_of(home.options());
  EXPECT_NE(e.find(labels + ": its header declares more data than any file can hold"), std::string::npos) << e;
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

}  // namespace
}  // namespace quantlab
