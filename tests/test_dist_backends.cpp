// The data-parallel environment and backends, without a run of several processes: the variables
// of torchrun, SLURM and the launcher read into one environment, the group's waits on every rank
// (two ranks as threads of this process), and NCCL (a message where no GPU
// is visible; on a GPU, the collectives taking the host tensors the trainer gives them). The runs
// of two processes are in test_distributed.cpp.
#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "quantlab/dist/communicator.h"
#include "quantlab/dist/environment.h"
#include "quantlab/dist/group.h"
#include "quantlab/dist/parallelism.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "test_util.h"

namespace quantlab {
namespace {

TEST(Distributed, TheEnvironmentOfTorchrunSlurmAndTheLauncher) {
  EXPECT_FALSE(dist::environment_from({}).has_value());
  EXPECT_FALSE(dist::environment_from({{"RANK", "0"}, {"WORLD_SIZE", "1"}}).has_value());  // one process
  // ... unless the data-parallel path is asked for (a check of the backend on one GPU).
  EXPECT_TRUE(dist::environment_from({{"RANK", "0"}, {"WORLD_SIZE", "1"}, {"QUANTLAB_DIST", "1"}}).has_value());
  const auto t = dist::environment_from({{"RANK", "3"},
                                         {"WORLD_SIZE", "8"},
                                         {"LOCAL_RANK", "1"},
                                         {"LOCAL_WORLD_SIZE", "2"},
                                         {"MASTER_ADDR", "10.0.0.5"},
                                         {"MASTER_PORT", "1234"}});
  ASSERT_TRUE(t.has_value());
  EXPECT_EQ(t->rank, 3);
  EXPECT_EQ(t->world_size, 8);
  EXPECT_EQ(t->local_rank, 1);
  EXPECT_EQ(t->master_addr, "10.0.0.5");
  EXPECT_EQ(t->master_port, 1234);
  EXPECT_EQ(t->source, "torchrun");
  EXPECT_FALSE(t->agent_store);
  // torchrun's agent hosts the store: every rank joins it, under the attempt's prefix.
  const auto agent = dist::environment_from({{"RANK", "0"},
                                             {"WORLD_SIZE", "2"},
                                             {"TORCHELASTIC_USE_AGENT_STORE", "True"},
                                             {"TORCHELASTIC_RESTART_COUNT", "2"}});
  ASSERT_TRUE(agent.has_value());
  EXPECT_TRUE(agent->agent_store);
  EXPECT_EQ(agent->store_prefix, "/worker/attempt_2");
  EXPECT_FALSE(dist::environment_from({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"TORCHELASTIC_USE_AGENT_STORE", "False"}})
                   ->agent_store);
  const auto s = dist::environment_from({{"SLURM_PROCID", "5"},
                                         {"SLURM_NTASKS", "8"},
                                         {"SLURM_STEP_ID", "0"},
                                         {"SLURM_LOCALID", "1"},
                                         {"SLURM_NTASKS_PER_NODE", "4"},
                                         {"SLURM_JOB_NODELIST", "gpu[07-08],login1"}});
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->source, "SLURM");
  EXPECT_EQ(s->rank, 5);
  EXPECT_EQ(s->local_world_size, 4);
  EXPECT_EQ(s->master_addr, "gpu07");
  EXPECT_EQ(s->master_port, 29500);
  const auto explicit_master = dist::environment_from(
      {{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "2"}, {"SLURM_STEPID", "3"}, {"SLURM_JOB_NODELIST", "n1"}},
      {"head", 4000});
  EXPECT_EQ(explicit_master->master_addr, "head");
  EXPECT_EQ(explicit_master->master_port, 4000);
  EXPECT_FALSE(dist::environment_from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "1"}}).has_value());
  // A batch script's shell (the job's variables, no job step) is refused at once, not left waiting
  // for tasks that srun never started.
  try {
    dist::environment_from({{"SLURM_PROCID", "0"}, {"SLURM_NTASKS", "4"}, {"SLURM_JOB_NODELIST", "n1"}});
    FAIL() << "a batch script's shell was taken as rank 0 of 4";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("SLURM_NTASKS=4 but this process was not started by srun"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(dist::first_slurm_host("node[003-005,9]"), "node003");
  EXPECT_EQ(dist::first_slurm_host("a1,b[1-2]"), "a1");
  EXPECT_EQ(dist::first_slurm_host("rack[1-2]-n[01-04],x9"), "rack1-n01");
  EXPECT_EQ(dist::first_slurm_host("plain"), "plain");
  try {
    dist::environment_from({{"RANK", "2"}, {"WORLD_SIZE", "two"}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("WORLD_SIZE='two': expected an integer"), std::string::npos) << e.what();
  }
  EXPECT_THROW(dist::environment_from({{"RANK", "2"}, {"WORLD_SIZE", "2"}}), Error);  // rank beyond the world
}

// Work that every rank does before any goes on (reading the checkpoint it resumes from) is waited
// for up to the start-up timeout, not the collective one: rank 1 takes 4.5 s with a 3 s collective
// timeout. A rank's error reaches the other, which says whose it was; rank 0's too, though its
// process (the store's) ends with it while rank 1 is still reading.
TEST(Distributed, EveryRanksWorkIsWaitedForUpToTheStartTimeoutAndItsErrorsReachTheOthers) {
  const int port = testing::free_port();
  const auto rank = [port](int r, const std::function<void(dist::Group&)>& body) {
    return std::async(std::launch::async, [=] {
      dist::Environment env;
      env.rank = r, env.world_size = 2, env.master_port = port;
      std::ostringstream out;
      dist::Group group(env, torch::kCPU, std::chrono::seconds(3), std::chrono::seconds(60), out);
      body(group);
    });  // the group, and with rank 0's the store, end with the body
  };
  auto r0 = rank(0, [](dist::Group& g) {
    int calls = 0;
    g.done_by_every_rank("read last.ckpt", [&] { ++calls; });
    EXPECT_EQ(calls, 1);
    try {
      g.done_by_every_rank("read best.ckpt", [] {});
      ADD_FAILURE() << "rank 1's error did not reach rank 0";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "rank 1 could not read best.ckpt: no such file");
    }
    EXPECT_THROW(g.done_by_every_rank("read 5.ckpt", [] { throw IoError("disk gone"); }), IoError);
  });
  auto r1 = rank(1, [](dist::Group& g) {
    g.done_by_every_rank("read last.ckpt", [] { std::this_thread::sleep_for(std::chrono::milliseconds(4500)); });
    EXPECT_THROW(g.done_by_every_rank("read best.ckpt", [] { throw IoError("no such file"); }), IoError);
    try {
      g.done_by_every_rank("read 5.ckpt", [] { std::this_thread::sleep_for(std::chrono::seconds(1)); });
      ADD_FAILURE() << "rank 0's error did not reach rank 1";
    } catch (const Error& e) {
      EXPECT_EQ(std::string(e.what()), "rank 0 could not read 5.ckpt: disk gone");
    }
  });
  r0.get();
  r1.get();
}

// The ranks agree between two steps on the first step whose loss was not finite on any rank (on a
// GPU a rank learns its own a few steps late, when it reads its sums), and on a stop.
TEST(Distributed, TheRanksAgreeOnTheFirstDivergedStepAndOnAStop) {
  const int port = testing::free_port();
  const auto rank = [port](int r, const std::vector<std::pair<int, int64_t>>& mine) {
    return std::async(std::launch::async, [=] {
      dist::Environment env;
      env.rank = r, env.world_size = 2, env.master_port = port;
      auto comm = dist::Communicator::connect(env, torch::kCPU, std::chrono::seconds(30));
      torch::nn::Linear net(2, 2);
      auto par = dist::data_parallel(*comm, *net);
      std::vector<std::pair<int, int64_t>> agreed;
      for (const auto& [stop, step] : mine) {
        const auto a = par->agree(stop, step);
        agreed.emplace_back(a.stop, a.diverged_step);
      }
      return agreed;
    });
  };
  auto r0 = rank(0, {{0, 0}, {0, 7}, {0, 7}, {15, 0}});
  auto r1 = rank(1, {{0, 0}, {0, 0}, {0, 5}, {0, 0}});
  const std::vector<std::pair<int, int64_t>> zero = r0.get(), one = r1.get();
  const std::vector<std::pair<int, int64_t>> expected0{{0, 0}, {0, 7}, {0, 5}, {15, 0}};
  EXPECT_EQ(zero, expected0);
  EXPECT_EQ(one, (std::vector<std::pair<int, int64_t>>{{0, 0}, {0, 7}, {0, 5}, {2, 0}}));  // another's stop: SIGINT
}

TEST(Distributed, NcclOnAMachineWithoutAGpuIsAMessageNotACrash) {
  // The NCCL process group is chosen for CUDA devices; here no GPU is visible (a GPU machine skips).
  if (torch::cuda::device_count() > 0) GTEST_SKIP() << "this machine has a GPU: NCCL can start";
  dist::Environment env;
  env.master_port = testing::free_port();
  try {
    dist::Communicator::connect(env, torch::kCUDA, std::chrono::milliseconds(3000));
    FAIL() << "a CUDA process group formed without a GPU";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("rank 0: data-parallel training on CUDA (NCCL) needs a GPU on every rank, and this one sees none"),
              std::string::npos)
        << m;
    EXPECT_NE(m.find(cuda_unavailable_reason()), std::string::npos) << m;
  }
}

// NCCL takes GPU tensors only: the collectives' host tensors (the stop flag, the epoch's metric
// sums, the generators' states, the best-checkpoint flag) travel through a copy on the GPU and come
// back. One GPU allows one NCCL rank, whose sums are its own: this checks that host tensors are
// taken and written back in place, not the arithmetic of several ranks (the Gloo tests do that).
TEST(Distributed, NcclCollectivesTakeHostTensors) {
  if (torch::cuda::device_count() == 0) GTEST_SKIP() << "needs a GPU: " << cuda_unavailable_reason();
  dist::Environment env;
  env.master_port = testing::free_port();
  std::unique_ptr<dist::Communicator> comm;
  try {
    comm = dist::Communicator::connect(env, torch::Device(torch::kCUDA, 0), std::chrono::seconds(30));
  } catch (const Error& e) {
    if (std::string(e.what()).find("was built without it") != std::string::npos) GTEST_SKIP() << e.what();
    throw;
  }
  ASSERT_EQ(comm->backend(), "nccl");
  torch::Tensor flag = torch::tensor({3.0f});
  auto pending = comm->all_reduce_sum(flag);
  flag.fill_(0);  // the GPU's copy holds the sum: written back at the end
  pending->wait();
  EXPECT_TRUE(flag.device().is_cpu());
  EXPECT_EQ(flag.item<float>(), 3.0f);
  torch::Tensor sums = torch::tensor({1.5, 2.5}, torch::kFloat64);
  comm->all_reduce_sum(sums)->wait();
  EXPECT_TRUE(torch::equal(sums, torch::tensor({1.5, 2.5}, torch::kFloat64)));
  torch::Tensor start = torch::arange(4, torch::kInt64);
  comm->broadcast(start, 0);
  EXPECT_TRUE(start.device().is_cpu());
  EXPECT_TRUE(torch::equal(start, torch::arange(4, torch::kInt64)));
  const auto gathered = comm->all_gather(torch::tensor({7}, torch::kInt64));
  ASSERT_EQ(gathered.size(), 1u);
  EXPECT_TRUE(gathered[0].device().is_cpu());
  EXPECT_EQ(gathered[0].item<int64_t>(), 7);
  torch::Tensor grads = torch::ones({5}, torch::Device(torch::kCUDA, 0));
  comm->all_reduce_sum(grads)->wait();
  EXPECT_TRUE(grads.device().is_cuda());
  EXPECT_TRUE(torch::equal(grads.cpu(), torch::ones({5})));
}

}  // namespace
}  // namespace quantlab
