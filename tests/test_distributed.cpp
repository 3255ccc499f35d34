// Data-parallel training on c10d with Gloo, two processes on this machine: the sharding of an epoch, the equivalence
// with one process at the whole batch, ranks in lockstep, bit-exact resume, one process on the data-parallel path and
// the real torchrun. Some tests run this test program again as the ranks ("child" mode, selected by QL_CHILD_TASK).
// The faults (a rank killed or stopped, a port in use, Ctrl-C on the launcher): test_distributed_faults.cpp.
#include <gtest/gtest.h>

#include <zlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/split.h"
#include "quantlab/dist/communicator.h"
#include "quantlab/dist/environment.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/train/trainer.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/topology/network.h"
#include "quantlab/util/error.h"
#include "quantlab/dist/gradient_sync.h"
#include "quantlab/util/runtime.h"
#include "dist_home.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using dist_testing::Home;
using dist_testing::mlp_config;
using dist_testing::split_args;
using testing::TempDir;

// A network without batch norm (two linear layers), for the equivalence with one process.
class LinearProbe : public Network {
 public:
  explicit LinearProbe(const JsonNode& params) {
    params.allow_keys({"hidden"});
    const int64_t hidden = params.integer("hidden", 32);
    fc1_ = register_module("phi1_fc", torch::nn::Linear(784, hidden));
    fc2_ = register_module("phi2_fc", torch::nn::Linear(hidden, 10));
  }
  torch::Tensor forward(const torch::Tensor& x) override {
    return fc2_->forward(torch::relu(fc1_->forward(x.reshape({x.size(0), -1}))));
  }

 private:
  torch::nn::Linear fc1_{nullptr}, fc2_{nullptr};
};
QL_REGISTER_TOPOLOGY(LinearProbe, "LinearProbe", [](const JsonNode& p) { return std::make_shared<LinearProbe>(p); });

nlohmann::json probe_config(int epochs, int64_t batch) {
  return {{"indiv",
           {{"net", {{"class", "LinearProbe"}, {"params", {{"hidden", 32}}}}},
            {"loss_function", {{"class", "CrossEntropyLoss"}}}}},
          {"treat",
           {{"optimizer", {{"class", "Adam"}, {"params", {{"lr", 0.01}}}}},
            {"data", {{"valid_fraction", 0.2}, {"bs_train", batch}, {"bs_valid", 16}}},
            {"max_epoch", epochs}}},
          {"protocol", {{"update_metric", "valid_metric"}, {"metric_period", 1}}}};
}

// Starts this test program as `world` ranks running `task` on `home`; returns their exit codes.
std::vector<int> run_ranks(int world, const std::string& task, const std::string& home, const std::string& logs) {
  const int port = testing::free_port();
  std::vector<pid_t> pids;
  for (int r = 0; r < world; ++r)
    pids.push_back(testing::spawn_program("/proc/self/exe", {"--gtest_filter=Distributed.ChildRank"},
                                          {{"QL_CHILD_TASK", task},
                                           {"QL_CHILD_HOME", home},
                                           {"RANK", std::to_string(r)},
                                           {"WORLD_SIZE", std::to_string(world)},
                                           {"MASTER_ADDR", "127.0.0.1"},
                                           {"MASTER_PORT", std::to_string(port)},
                                           {"OMP_NUM_THREADS", "1"}},
                                          logs + "/rank" + std::to_string(r) + ".log"));
  std::vector<int> codes;
  for (pid_t p : pids) codes.push_back(testing::wait_exit(p));
  return codes;
}

// The child mode: one rank of a test's distributed run.
TEST(Distributed, ChildRank) {
  const char* task = std::getenv("QL_CHILD_TASK");
  if (!task) GTEST_SKIP() << "runs only as a rank started by the other distributed tests";
  const std::string home = std::getenv("QL_CHILD_HOME");
  LaunchOptions o;
  o.problem = "Toy";
  o.topology = "LinearProbe";
  o.home = home;
  o.device = "cpu";
  o.threads = 1;
  o.dist_timeout_s = 30;
  if (std::string(task) == "train") {
    std::ostringstream sink;
    const LaunchResult r = launch(o, nullptr, sink);
    EXPECT_GT(r.epochs_done, 0);
    return;
  }
  // "lockstep": after every training step, every rank's parameters are bit-identical.
  const auto env = dist::environment_from_process();
  ASSERT_TRUE(env.has_value());
  auto comm = dist::Communicator::connect(*env, torch::kCPU, std::chrono::seconds(30));
  at::set_num_threads(1);
  Experiment exp(read_json_file(home + "/Toy/config.json"), "", torch::kCPU);
  const auto data = data::load_problem(home + "/Toy/data", exp.data);
  dist::broadcast_state(*exp.net, *comm);
  std::ostringstream sink;
  Progress progress(sink, false);
  TrainerOptions options;
  options.comm = comm.get();
  options.out = &sink;
  options.log_every = 1;
  int64_t steps = 0, differing = 0;
  const bool diverge = std::string(task) == "diverge";
  options.on_step = [&](int64_t step, double) {
    if (diverge) {  // rank 1's own parameters made NaN after its first step: its loss alone is not finite
      if (comm->rank() == 1 && step == 1) {
        torch::NoGradGuard no_grad;
        for (auto& p : exp.net->parameters()) p.fill_(std::numeric_limits<float>::quiet_NaN());
      }
      return;
    }
    uint32_t crc = 0;
    for (const auto& p : exp.net->parameters()) {
      const auto c = p.detach().contiguous();
      crc = static_cast<uint32_t>(crc32(crc, static_cast<const Bytef*>(c.data_ptr()), static_cast<uInt>(c.nbytes())));
    }
    const auto all = comm->all_gather(torch::tensor({static_cast<int64_t>(crc)}));
    for (const auto& t : all) differing += t.item<int64_t>() != static_cast<int64_t>(crc);
    ++steps;
  };
  Trainer trainer(exp, data, progress, options);
  if (diverge) {
    try {
      trainer.fit(exp.max_epoch);
    } catch (const Diverged& e) {
      std::ofstream(home + "/diverged" + std::to_string(comm->rank()) + ".txt") << e.what() << "\n";
    }
    return;
  }
  trainer.fit(exp.max_epoch);
  // After the last validation, the batch-norm running statistics too are rank 0's on every rank.
  uint32_t crc = 0;
  for (const auto& b : exp.net->buffers()) {
    const auto c = b.detach().contiguous();
    crc = static_cast<uint32_t>(crc32(crc, static_cast<const Bytef*>(c.data_ptr()), static_cast<uInt>(c.nbytes())));
  }
  int64_t buffers_differing = 0;
  for (const auto& t : comm->all_gather(torch::tensor({static_cast<int64_t>(crc)})))
    buffers_differing += t.item<int64_t>() != static_cast<int64_t>(crc);
  if (comm->rank() == 0)
    std::ofstream(home + "/lockstep.txt") << steps << " " << differing << " " << buffers_differing << "\n";
}

// Rank r's part of every batch; the parts are disjoint and their union, batch by batch, is the
// single-process epoch.
TEST(Distributed, TheRanksSharesAreTheSingleProcessEpoch) {
  std::vector<int64_t> all(103);
  std::iota(all.begin(), all.end(), 0);
  const auto order = data::epoch_order(all, 7, 2);
  for (int world : {2, 3, 4}) {
    const int64_t batch = 12;
    std::vector<std::vector<int64_t>> parts;
    for (int r = 0; r < world; ++r) parts.push_back(data::rank_shard(order, batch, world, r));
    // Batch k of every rank, side by side, is batch k of the single-process epoch.
    const int64_t local = batch / world;
    std::vector<int64_t> joined;
    for (int64_t k = 0; k * batch < static_cast<int64_t>(order.size()); ++k)
      for (int r = 0; r < world; ++r)
        for (int64_t i = k * local; i < std::min<int64_t>((k + 1) * local, parts[r].size()); ++i)
          joined.push_back(parts[r][i]);
    EXPECT_EQ(joined, order) << world << " ranks";
    // Each rank's loader gives every sample its single-process position (the augmentation's draws
    // are a function of it): here a data set whose "image" is the position it was given.
    struct Positions : data::Dataset {
      int64_t size() const override { return 103; }
      torch::Tensor labels() const override { return torch::zeros({103}, torch::kLong); }
      std::string source(int64_t) const override { return "memory"; }
      data::Batch make_batch(const int64_t* idx, int64_t count, int64_t first,
                             const data::SampleContext&) const override {
        return {torch::arange(first, first + count, torch::kFloat64).reshape({count, 1, 1, 1}),
                torch::from_blob(const_cast<int64_t*>(idx), {count}, torch::kLong).clone()};
      }
    } positions;
    for (int r = 0; r < world; ++r) {
      data::BatchLoader loader(positions, parts[r], local, {}, {},
                               data::rank_shard_positions(static_cast<int64_t>(order.size()), batch, world, r));
      while (auto b = loader.next())
        for (int64_t i = 0; i < b->labels.size(0); ++i)
          EXPECT_EQ(order[static_cast<size_t>(b->inputs[i].item<double>())], b->labels[i].item<int64_t>())
              << "rank " << r << " of " << world;
    }
  }
  std::vector<int64_t> valid(10);
  std::iota(valid.begin(), valid.end(), 0);
  std::vector<int64_t> both = data::rank_slice(valid, 2, 0), second = data::rank_slice(valid, 2, 1);
  both.insert(both.end(), second.begin(), second.end());
  EXPECT_EQ(both, valid);
}

// Without batch norm, two processes at batch B/2 give the weights of one process at batch B: the
// same gradients, summed in another order (float32: within 1e-6 relative here).
TEST(Distributed, TwoProcessesAtHalfBatchEqualOneProcessAtFullBatch) {
  // 85 training images: batches of 32, 32 and 21 (11 + 10 on the two ranks).
  Home single(probe_config(3, 32), 106), two(probe_config(3, 32), 106);
  LaunchOptions o;
  o.problem = "Toy";
  o.topology = "LinearProbe";
  o.home = single.dir.path();
  o.device = "cpu";
  o.threads = 1;
  std::ostringstream sink;
  launch(o, nullptr, sink);
  TempDir logs;
  const auto codes = run_ranks(2, "train", two.dir.path(), logs.path());
  ASSERT_EQ(codes, (std::vector<int>{0, 0}))
      << testing::slurp(logs.path() + "/rank0.log") << testing::slurp(logs.path() + "/rank1.log");
  const Checkpoint a = load_checkpoint(single.saves(1) + "/last.ckpt"),
                   b = load_checkpoint(two.saves(1) + "/last.ckpt");
  ASSERT_EQ(a.state.epoch, 3);
  ASSERT_EQ(b.state.epoch, 3);
  double worst = 0;
  for (const auto& [name, t] : a.net) {
    const auto diff = (t - b.net.at(name)).abs().max().item<double>();
    const auto scale = t.abs().max().item<double>();
    EXPECT_LE(diff, 1e-6 * std::max(1.0, scale)) << name;
    EXPECT_FALSE(torch::equal(t, torch::zeros_like(t))) << name;
    worst = std::max(worst, diff);
  }
  std::cout << "largest weight difference, 2 processes at B/2 vs 1 process at B, 9 steps: " << worst << std::endl;
  // Statistics are summed over the ranks: the same numbers as one process (to rounding).
  EXPECT_NEAR(a.state.stats[Statistic::kTrainLoss], b.state.stats[Statistic::kTrainLoss], 1e-5);
  EXPECT_DOUBLE_EQ(a.state.stats[Statistic::kValidMetric], b.state.stats[Statistic::kValidMetric]);
}

TEST(Distributed, AllRanksHoldBitIdenticalParametersAfterEveryStep) {
  Home home(mlp_config(2), 106);  // ternary MLP with batch norm and a random-strategy site
  TempDir logs;
  const auto codes = run_ranks(2, "lockstep", home.dir.path(), logs.path());
  ASSERT_EQ(codes, (std::vector<int>{0, 0}))
      << testing::slurp(logs.path() + "/rank0.log") << testing::slurp(logs.path() + "/rank1.log");
  std::ifstream in(home.dir.path() + "/lockstep.txt");
  int64_t steps = 0, differing = -1, buffers_differing = -1;
  in >> steps >> differing >> buffers_differing;
  EXPECT_EQ(steps, 2 * 3);  // 85 images in batches of 32: 3 steps per epoch
  EXPECT_EQ(differing, 0);
  EXPECT_EQ(buffers_differing, 0);  // evaluated with rank 0's batch-norm statistics
}

// One rank's training loss not finite: every rank stops with the divergence at the next step's
// agreement (alone, that rank left the others failing in the collective with "rank 1 is gone").
TEST(Distributed, ADivergenceOfOneRankStopsEveryRankWithIt) {
  Home home(mlp_config(2), 160);
  TempDir logs;
  const auto codes = run_ranks(2, "diverge", home.dir.path(), logs.path());
  ASSERT_EQ(codes, (std::vector<int>{0, 0}))
      << testing::slurp(logs.path() + "/rank0.log") << testing::slurp(logs.path() + "/rank1.log");
  const std::string zero = testing::slurp(home.dir.path() + "/diverged0.txt"),
                    one = testing::slurp(home.dir.path() + "/diverged1.txt");
  EXPECT_NE(zero.find("epoch 1, step 2 of 5: the training loss on another process is NaN"), std::string::npos) << zero;
  EXPECT_NE(one.find("epoch 1, step 2 of 5: the training loss is"), std::string::npos) << one;
}

// A two-process run stopped after an epoch and resumed ends bit-identical to an uninterrupted
// two-process run; resuming with one process works and says it is not bit-exact.
TEST(Distributed, StoppedAndResumedTwoProcessRunIsBitIdentical) {
  Home home(mlp_config(3), 160);
  std::string out;
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--nproc=2 --ckpt_every=0"), out), 0) << out;  // exp 1: 3 epochs
  auto cfg = mlp_config(1);
  std::ofstream(home.dir.path() + "/Toy/config.json") << cfg.dump(2);
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--nproc=2 --ckpt_every=0"), out), 0) << out;  // exp 2: 1 epoch
  {
    auto stored = read_json_file(home.dir.path() + "/Toy/logs/exp002/config.json");
    stored["treat"]["max_epoch"] = 3;
    std::ofstream(home.dir.path() + "/Toy/logs/exp002/config.json") << stored.dump();
  }
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--nproc=2 --ckpt_every=0 --exp_id=2"), out), 0) << out;
  const Checkpoint a = load_checkpoint(home.saves(1) + "/last.ckpt"), b = load_checkpoint(home.saves(2) + "/last.ckpt");
  ASSERT_EQ(a.state.epoch, 3);
  ASSERT_EQ(b.state.epoch, 3);
  ASSERT_EQ(a.rng_ranks.size(), 2u);
  for (const auto& [name, t] : a.net) EXPECT_TRUE(torch::equal(t, b.net.at(name))) << name;
  const auto oa = testing::adam_state(read_json_file(home.dir.path() + "/Toy/logs/exp001/config.json"), a);
  const auto ob = testing::adam_state(read_json_file(home.dir.path() + "/Toy/logs/exp002/config.json"), b);
  ASSERT_EQ(oa.size(), ob.size());
  for (size_t i = 0; i < oa.size(); ++i) EXPECT_TRUE(torch::equal(oa[i], ob[i])) << "optimizer state " << i;
  EXPECT_EQ(a.state.stats, b.state.stats);
  // Another number of processes: it goes on, and says so.
  {
    auto stored = read_json_file(home.dir.path() + "/Toy/logs/exp002/config.json");
    stored["treat"]["max_epoch"] = 4;
    std::ofstream(home.dir.path() + "/Toy/logs/exp002/config.json") << stored.dump();
  }
  ASSERT_EQ(testing::run_cli(home.args("MLP", "--threads=1 --exp_id=2"), out), 0) << out;
  EXPECT_EQ(load_checkpoint(home.saves(2) + "/last.ckpt").state.epoch, 4);
}

TEST(Distributed, OneProcessOnTheDataParallelPathTrainsAndCheckpoints) {
  Home home(mlp_config(1), 160);
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> env = {{"QUANTLAB_DIST", "1"},
                                                                {"RANK", "0"},
                                                                {"WORLD_SIZE", "1"},
                                                                {"MASTER_ADDR", "127.0.0.1"},
                                                                {"MASTER_PORT", std::to_string(testing::free_port())}};
  const int code = testing::wait_exit(
      testing::spawn_program(QL_BINARY, split_args(home.args("MLP", "--dist_timeout=20")), env, tmp.path() + "/log"));
  const std::string log = testing::slurp(tmp.path() + "/log");
  EXPECT_EQ(code, 0) << log;
  EXPECT_NE(log.find("rank 0 of 1 (gloo"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(home.saves(1) + "/last.ckpt")) << log;
}

// The real torchrun (the tests' PyTorch: Debian's 1.13, or 2.x in the PyPI build) with its default
// static rendezvous: its agent already listens on MASTER_PORT and tells the workers so
// (TORCHELASTIC_USE_AGENT_STORE=True); rank 0 joins that store instead of failing to listen on its
// port. Debian's torchrun 1.13 fails on Python 3.11 before it starts any worker (its `redirects`
// default is None); the script mends that and runs torchrun's own main.
TEST(Distributed, UnderTorchrunItsAgentsStoreIsJoined) {
  if (!testing::python_torch_available()) GTEST_SKIP() << testing::python_torch_missing();
  Home home(mlp_config(1), 160);
  TempDir tmp;
  const std::string script = tmp.path() + "/torchrun.py";
  std::ofstream(script) << "import sys\n"
                           "import torch.distributed.elastic.multiprocessing as mp\n"
                           "api = mp.api\n"
                           "if hasattr(api, 'to_map'):\n"
                           "    _to_map = api.to_map\n"
                           "    def to_map(v, n):\n"
                           "        return _to_map(api.Std.NONE if v is None else v, n)\n"
                           "    api.to_map = mp.to_map = to_map\n"
                           "from torch.distributed.run import main\n"
                           "sys.exit(main())\n";
  std::vector<std::string> args = {"--nnodes=1",
                                   "--nproc_per_node=2",
                                   "--master_addr=127.0.0.1",
                                   "--master_port=" + std::to_string(testing::free_port()),
                                   "--no_python",
                                   QL_BINARY};
  for (const auto& a : split_args(home.args("MLP", "--threads=1 --dist_timeout=60"))) args.push_back(a);
  std::string log;
  const int code = testing::run_script_file(testing::torch_python(), script, args, log);
  EXPECT_EQ(code, 0) << log;
  EXPECT_NE(log.find("2 processes (torchrun)"), std::string::npos) << log;
  EXPECT_NE(log.find("rank 0 of 2 (gloo"), std::string::npos) << log;
  EXPECT_TRUE(fs::exists(home.saves(1) + "/last.ckpt")) << log;
}

}  // namespace
}  // namespace quantlab
