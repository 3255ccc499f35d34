// The bookkeeping: storage, numbered experiments, checkpoints, exact resume, and faults.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <set>
#include <sstream>
#include <thread>

#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/experiment/transfer.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

nlohmann::json tiny_config(int epochs) {
  nlohmann::json cfg = testing::toy_mlp_config(epochs);
  cfg["treat"]["lr_scheduler"] = {
      {"class", "ReduceLROnPlateau"}, {"step_metric", "valid_loss"}, {"params", {{"patience", 0}, {"factor", 0.5}}}};
  // The random strategy on one site exercises the saved RNG state.
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi2_act"] = {
      {"noise", "uniform"}, {"strategy", "random"}, {"thresholds", {-0.5, 0.5}}, {"levels", {-1.0, 0.0, 1.0}}};
  return cfg;
}

// Every tensor of two checkpoints' networks and optimizers is bit-identical.
void expect_identical(const nlohmann::json& cfg, const Checkpoint& a, const Checkpoint& b) {
  ASSERT_EQ(a.net.size(), b.net.size());
  for (const auto& kv : a.net) EXPECT_TRUE(torch::equal(kv.second, b.net.at(kv.first))) << kv.first;
  const auto oa = testing::adam_state(cfg, a), ob = testing::adam_state(cfg, b);
  ASSERT_EQ(oa.size(), ob.size());
  ASSERT_FALSE(oa.empty());
  for (size_t i = 0; i < oa.size(); ++i) EXPECT_TRUE(torch::equal(oa[i], ob[i])) << "optimizer state " << i;
  EXPECT_EQ(a.lr, b.lr);
  EXPECT_EQ(a.lr_scheduler, b.lr_scheduler);
  EXPECT_EQ(a.thermostat_clock, b.thermostat_clock);
  EXPECT_EQ(a.state.epoch, b.state.epoch);
  EXPECT_EQ(a.state.best_epoch, b.state.best_epoch);
  EXPECT_EQ(a.state.stats, b.state.stats);
  EXPECT_TRUE(torch::equal(a.rng_cpu, b.rng_cpu));
}

TEST(Storage, DefaultStorageAndLinks) {
  TempDir home;
  const Storage s = read_storage(home.path());
  EXPECT_EQ(s.logs_root, home.path() + "/storage/QuantLab");
  EXPECT_THROW(problem_paths(s, "Toy"), Error);  // no problem folder: nothing is created
  EXPECT_FALSE(fs::exists(home.path() + "/storage"));
  fs::create_directories(home.path() + "/Toy");
  const ProblemPaths p = problem_paths(s, "Toy");
  prepare_storage(s, p);
  EXPECT_TRUE(fs::is_symlink(p.logs));
  EXPECT_EQ(fs::canonical(p.logs), fs::canonical(home.path() + "/storage/QuantLab/Toy/logs"));
  EXPECT_TRUE(fs::is_directory(home.path() + "/storage/QuantLab/Toy/data"));
  EXPECT_NO_THROW(prepare_storage(s, p));  // idempotent
}

TEST(Storage, HardStorageFileAndNameChecks) {
  TempDir home, fast, large;
  fs::create_directories(home.path() + "/cfg");
  std::ofstream(home.path() + "/cfg/hard_storage.json")
      << nlohmann::json{{"data", fast.path()}, {"logs", large.path()}}.dump();
  fs::create_directories(home.path() + "/Toy");
  const ProblemPaths p = problem_paths(read_storage(home.path()), "Toy");
  prepare_storage(read_storage(home.path()), p);
  EXPECT_EQ(fs::canonical(p.data), fs::canonical(fast.path() + "/QuantLab/Toy/data"));
  EXPECT_EQ(fs::canonical(p.logs), fs::canonical(large.path() + "/QuantLab/Toy/logs"));
  for (const char* bad : {"../x", "a/b", ".hidden", "", ".."})
    EXPECT_THROW(problem_paths(read_storage(home.path()), bad), Error) << bad;
  std::ofstream(home.path() + "/cfg/hard_storage.json") << R"({"data": "/tmp", "log": "/tmp"})";
  EXPECT_THROW(read_storage(home.path()), ConfigError);
  // Storage on something that is not a folder: stops before any work, naming it.
  std::ofstream(home.path() + "/cfg/hard_storage.json") << R"({"data": "/dev/null/fast", "logs": "/dev/null/large"})";
  try {
    read_storage(home.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("/dev/null/"), std::string::npos) << e.what();
  }
  // An empty name (it was the main folder) and a link to a file that is gone (it was the default
  // storage, without a word).
  std::ofstream(home.path() + "/cfg/hard_storage.json") << R"({"data": "", "logs": "/tmp"})";
  EXPECT_THROW(read_storage(home.path()), ConfigError);
  fs::remove(home.path() + "/cfg/hard_storage.json");
  fs::create_symlink("/nonexistent/hard_storage.json", home.path() + "/cfg/hard_storage.json");
  try {
    read_storage(home.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("hard_storage.json is a link to /nonexistent/hard_storage.json, which does "
                                         "not exist"),
              std::string::npos)
        << e.what();
  }
}

TEST(Storage, ProblemAddWritesATemplateAndRefusesToOverwrite) {
  TempDir home;
  const auto lines = add_problem(read_storage(home.path()), "MyProblem");
  EXPECT_FALSE(lines.empty());
  EXPECT_NO_THROW(Experiment(read_json_file(home.path() + "/MyProblem/config.json"), "MLP", torch::kCPU));
  EXPECT_THROW(add_problem(read_storage(home.path()), "MyProblem"), Error);
  const auto spaced = add_problem(read_storage(home.path()), "My Problem");  // its command quoted for the shell
  EXPECT_NE(spaced.back().find("quantlab --problem='My Problem' --topology=MLP"), std::string::npos) << spaced.back();
  EXPECT_THROW(add_problem(read_storage(home.path()), "../evil"), Error);
  // The main folder's own folders: cfg/ and the storage root (default <home>/storage/QuantLab).
  for (const char* reserved : {"cfg", "storage"}) {
    try {
      add_problem(read_storage(home.path()), reserved);
      ADD_FAILURE() << reserved << " was made a problem";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("problem name '") + reserved + "'"), std::string::npos)
          << e.what();
    }
    EXPECT_FALSE(fs::exists(home.path() + "/" + reserved + "/config.json")) << reserved;
  }
}

TEST(Logbook, ConcurrentLaunchesGetDistinctIds) {
  TempDir logs;
  std::vector<pid_t> children;
  for (int i = 0; i < 8; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      try {
        Logbook::create(logs.path(), nlohmann::json{{"child", i}});
        _exit(0);
      } catch (...) {
        _exit(1);
      }
    }
    children.push_back(pid);
  }
  for (pid_t pid : children) {
    int status = 0;
    waitpid(pid, &status, 0);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
  EXPECT_EQ(Logbook::list(logs.path()), (std::vector<int64_t>{1, 2, 3, 4, 5, 6, 7, 8}));
  std::set<int> owners;
  for (int64_t id : Logbook::list(logs.path()))
    owners.insert(Logbook::open(logs.path(), id).config()["child"].get<int>());
  EXPECT_EQ(owners.size(), 8u);
}

TEST(Logbook, IdsGrowPastNineHundredNinetyNine) {
  TempDir logs;
  fs::create_directories(logs.path() + "/exp999");
  fs::create_directories(logs.path() + "/exp010");
  const Logbook b = Logbook::create(logs.path(), nlohmann::json::object());
  EXPECT_EQ(b.id(), 1000);
  EXPECT_EQ(fs::path(b.dir()).filename(), "exp1000");
  EXPECT_EQ(Logbook::list(logs.path()), (std::vector<int64_t>{10, 999, 1000}));
  EXPECT_EQ(Logbook::open(logs.path(), 1000).dir(), b.dir());
  try {
    Logbook::open(logs.path(), 7);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find("experiment 7: no such experiment in " + logs.path() + "; existing: 10, 999, 1000"),
        std::string::npos)
        << e.what();
  }
}

// A training run with bookkeeping, from epoch `state.epoch` to `last`, through the library.
struct ToyRun {
  TempDir data;
  data::ProblemData problem;
  ToyRun() {
    testing::write_toy_idx_problem(data.path(), 320, 64, 4, false);
    data::DataOptions o;
    o.valid_fraction = 0.2;
    problem = data::load_idx_problem(data.path(), o);
  }
  void train(Experiment& exp, const Logbook& book, TrainingState state, int64_t last) {
    std::ostringstream sink;
    Progress progress(sink, false);
    Trainer trainer(exp, problem, progress);
    trainer.set_state(state);
    Session session(exp, book, 1, Statistic::kValidMetric);
    trainer.fit(last, [&](const EpochRecord& r) { session.on_epoch(r, trainer.state()); });
  }
};

// One epoch trained with bookkeeping into a fresh logs folder.
struct TrainedOnce {
  ToyRun run;
  TempDir logs;
  const nlohmann::json cfg = tiny_config(1);
  const Logbook book = Logbook::create(logs.path(), cfg);
  Experiment exp{cfg, "MLP", torch::kCPU};
  TrainedOnce() { run.train(exp, book, {}, 1); }
};

TEST(Checkpoint, ResumedRunIsBitIdenticalToUninterruptedRun) {
  at::set_num_threads(1);
  ToyRun run;
  TempDir logs;
  const auto cfg = tiny_config(4);
  const Logbook straight = Logbook::create(logs.path(), cfg);
  {
    Experiment exp(cfg, "MLP", torch::kCPU);
    run.train(exp, straight, {}, 4);
  }
  const Logbook split = Logbook::create(logs.path(), cfg);
  {
    Experiment exp(cfg, "MLP", torch::kCPU);
    run.train(exp, split, {}, 2);
  }
  torch::manual_seed(12345);  // a different process state in between must not matter
  {
    Experiment exp(split.config(), "MLP", torch::kCPU);
    const Checkpoint c = load_checkpoint(split.saves().file(CheckpointRef::last()));
    EXPECT_EQ(c.state.epoch, 2);
    restore(exp, c);
    run.train(exp, split, c.state, 4);
  }
  expect_identical(cfg, load_checkpoint(straight.saves().last()), load_checkpoint(split.saves().last()));
  EXPECT_TRUE(fs::exists(split.saves().dir() + "/epoch0003.ckpt"));
  EXPECT_EQ(split.saves().status()["epochs_done"], 4);
  EXPECT_EQ(split.saves().status()["finished"], true);
}

TEST(Checkpoint, CorruptTruncatedMissingAndForeignFilesAreNamed) {
  TrainedOnce t;
  const auto& cfg = t.cfg;
  const Logbook& book = t.book;
  Experiment& exp = t.exp;
  const std::string file = book.saves().last();
  const auto good = load_checkpoint(file);
  std::string bytes;
  {
    std::ifstream in(file, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  auto expect_io_error = [&](const std::string& content, const std::string& needle) {
    const std::string f = book.saves().dir() + "/bad.ckpt";
    std::ofstream(f, std::ios::binary) << content;
    try {
      load_checkpoint(f);
      FAIL() << needle;
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find(f + ": " + needle), std::string::npos) << e.what();
    }
  };
  std::string flipped = bytes;  // one byte flipped in the middle (tensor data)
  const size_t at = bytes.size() / 2;
  flipped[at] = static_cast<char>(flipped[at] ^ 0x5a);
  try {
    std::ofstream(book.saves().dir() + "/flip.ckpt", std::ios::binary) << flipped;
    load_checkpoint(book.saves().dir() + "/flip.ckpt");
    FAIL() << "a flipped byte went unnoticed";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("flip.ckpt"), std::string::npos);
  }
  expect_io_error(bytes.substr(0, bytes.size() / 3), "corrupt or truncated");
  expect_io_error("not a checkpoint at all", "corrupt or truncated");
  try {
    load_checkpoint(book.saves().dir() + "/nothing.ckpt");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("nothing.ckpt: missing"), std::string::npos);
  }
  try {
    book.saves().file(CheckpointRef::at_epoch(7));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("epoch0007.ckpt: no such checkpoint; available in " + book.saves().dir() +
                                         ": best.ckpt, last.ckpt, epoch0001.ckpt"),
              std::string::npos)
        << e.what();
  }
  // A checkpoint of another topology.
  auto other = cfg;
  other["indiv"]["net"]["class"] = "MLPBaseline";
  other["indiv"]["net"]["params"].erase("quant_schemes");
  other["treat"].erase("thermostat");
  Experiment baseline(other, "MLP", torch::kCPU);
  EXPECT_THROW(restore(baseline, good), Error);
}

TEST(Checkpoint, FullDiskDuringASaveKeepsThePreviousCheckpoint) {
  TrainedOnce t;
  const auto& cfg = t.cfg;
  const Logbook& book = t.book;
  Experiment& exp = t.exp;
  const std::string file = book.saves().last();
  const auto before = load_checkpoint(file);
  // A file-size limit makes write() fail as a full disk does (EFBIG instead of ENOSPC).
  struct rlimit old {};
  getrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = old;
  small.rlim_cur = 4096;
  setrlimit(RLIMIT_FSIZE, &small);
  bool threw = false;
  try {
    save_checkpoint(file, capture(exp, TrainingState{7, 0, 0.0, {}}));
  } catch (const IoError& e) {
    threw = true;
    EXPECT_NE(std::string(e.what()).find("the previous version is unchanged"), std::string::npos) << e.what();
  }
  setrlimit(RLIMIT_FSIZE, &old);
  signal(SIGXFSZ, SIG_DFL);
  EXPECT_TRUE(threw);
  expect_identical(cfg, before, load_checkpoint(file));
  for (const auto& e : fs::directory_iterator(book.saves().dir()))
    EXPECT_EQ(e.path().string().find(".tmp."), std::string::npos) << "left behind: " << e.path();
}

TEST(Checkpoint, PretrainedCopiesTheNamedPrefixes) {
  TrainedOnce t;
  const Logbook& source = t.book;
  const std::string& logs_dir = t.logs.path();
  const auto trained = load_checkpoint(source.saves().best());
  auto cfg2 = t.cfg;
  cfg2["indiv"]["net"]["pretrained"] = {{"exp_id", source.id()}, {"epoch", "best"}, {"prefixes", {"phi1"}}};
  cfg2["treat"]["data"]["seed"] = 99;  // another initialisation
  Experiment exp(cfg2, "MLP", torch::kCPU);
  ProblemPaths paths;
  paths.dir = logs_dir + "/..";
  paths.logs = logs_dir;
  // phi1_fc.weight; phi1_bn.weight, .bias, .running_mean, .running_var (as the original, never the
  // batch-norm counter num_batches_tracked)
  EXPECT_EQ(apply_pretrained(exp, paths), 5);
  const auto now = named_state(*exp.net);
  EXPECT_TRUE(torch::equal(now.at("phi1_fc.weight"), trained.net.at("phi1_fc.weight")));
  EXPECT_FALSE(torch::equal(now.at("phi2_fc.weight"), trained.net.at("phi2_fc.weight")));
  cfg2["indiv"]["net"]["pretrained"] = {{"exp_id", 42}};
  Experiment missing(cfg2, "MLP", torch::kCPU);
  EXPECT_THROW(apply_pretrained(missing, paths), Error);
}

// A diverged run's tensors are refused by name rather than copied in (every loss would be NaN).
TEST(Checkpoint, PretrainedRefusesNonFiniteTensors) {
  TrainedOnce t;
  Experiment diverged(t.cfg, "MLP", torch::kCPU);
  {
    torch::NoGradGuard no_grad;
    named_state(*diverged.net).at("phi2_fc.weight")[0][0] = std::numeric_limits<float>::quiet_NaN();
  }
  const std::string file = t.logs.path() + "/diverged.ckpt";
  save_checkpoint(file, capture(diverged, TrainingState{1, 0, 0.0, {}}));
  auto cfg2 = t.cfg;
  cfg2["indiv"]["net"]["pretrained"] = {{"file", file}};
  Experiment exp(cfg2, "MLP", torch::kCPU);
  ProblemPaths paths;
  paths.dir = t.logs.path() + "/..";
  paths.logs = t.logs.path();
  try {
    apply_pretrained(exp, paths);
    ADD_FAILURE() << "a NaN weight was copied in";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'phi2_fc.weight' in " + file + " holds NaN"), std::string::npos) << e.what();
  }
  cfg2["indiv"]["net"]["pretrained"] = {{"file", file}, {"prefixes", {"phi1"}}};  // the NaN one not wanted
  Experiment phi1_only(cfg2, "MLP", torch::kCPU);
  EXPECT_EQ(apply_pretrained(phi1_only, paths), 5);
}

TEST(Checkpoint, ReadableFromPythonTorchLoad) {
  if (!testing::python_torch_available()) GTEST_SKIP() << testing::python_torch_missing();
  TrainedOnce t;
  const Logbook& book = t.book;
  // torch.load as users call it: PyTorch 2.6 and later load only plain data by default
  // (weights_only=True), which a checkpoint must be.
  const std::string script =
      "import torch,sys; c=torch.load(sys.argv[1]); n=c['net']\n"
      "assert c['epoch']==1 and c['net_class']=='MLP'\n"
      "assert tuple(n['phi1_fc.weight'].shape)==(40,784); assert 'phi1_bn.running_mean' in n; print('ok')";
  std::string log;
  EXPECT_EQ(testing::run_python(script, book.saves().last(), log), 0) << log;
}

}  // namespace
}  // namespace quantlab
