// The all-reduce of one training step's gradients with Gloo over the loopback interface, for a
// topology's network (the buckets GradientSync forms: as DistributedDataParallel's), between N
// processes of this machine:
//   allreduce --config FILE --topology T [--nproc 2] [--steps 20]
// Without RANK in the environment it starts the N ranks itself and prints rank 0's JSON line:
//   {"topology", "parameters", "bytes", "buckets", "nproc", "median_ms", "min_ms", "GB_per_s"}
#include <CLI/CLI.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <iostream>

#include "bench_util.h"
#include "quantlab/config/json_node.h"
#include "quantlab/dist/gradient_sync.h"
#include "quantlab/train/experiment.h"

int main(int argc, char** argv) {
  CLI::App app{"All-reduce time of a network's gradients"};
  std::string config, topology;
  int nproc = 2, steps = 20;
  app.add_option("--config", config)->required();
  app.add_option("--topology", topology)->required();
  app.add_option("--nproc", nproc);
  app.add_option("--steps", steps);
  CLI11_PARSE(app, argc, argv);
  if (!std::getenv("RANK")) {  // the launcher: one process per rank
    const std::string port = std::to_string(29600 + getpid() % 1000);
    std::vector<pid_t> pids;
    for (int r = 0; r < nproc; ++r) {
      const pid_t pid = fork();
      if (pid == 0) {
        setenv("RANK", std::to_string(r).c_str(), 1);
        setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
        setenv("MASTER_ADDR", "127.0.0.1", 1);
        setenv("MASTER_PORT", port.c_str(), 1);
        execv("/proc/self/exe", argv);
        _exit(127);
      }
      pids.push_back(pid);
    }
    int failed = 0;
    for (pid_t p : pids) {
      int st = 0;
      waitpid(p, &st, 0);
      failed += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    return failed ? 1 : 0;
  }
  at::set_num_threads(1);
  const auto env = quantlab::dist::environment_from_process();
  auto comm = quantlab::dist::Communicator::connect(*env, torch::kCPU, std::chrono::seconds(120));
  quantlab::train::Experiment exp(quantlab::config::read_json_file(config), topology, torch::kCPU);
  quantlab::dist::GradientSync sync(*exp.net, *comm);
  int64_t params = 0;
  for (const auto& p : exp.net->parameters()) params += p.numel();
  std::vector<double> ms;
  for (int s = 0; s < steps + 2; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    sync.begin_step();
    sync.finish_step();  // no backward: every bucket is launched at once and waited for
    const double t = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (s >= 2) ms.push_back(t);  // the first two warm the connections up
  }
  if (comm->rank() == 0) {
    const double med = quantlab::bench::median(ms);
    std::cout << "{\"topology\": \"" << exp.net_spec.cls << "\", \"parameters\": " << params
              << ", \"bytes\": " << sync.bytes_per_step() << ", \"buckets\": " << sync.num_buckets()
              << ", \"nproc\": " << comm->world_size() << ", \"median_ms\": " << med
              << ", \"min_ms\": " << *std::min_element(ms.begin(), ms.end())
              << ", \"GB_per_s\": " << static_cast<double>(sync.bytes_per_step()) / (med / 1e3) / 1e9 << "}"
              << std::endl;
  }
  return 0;
}
