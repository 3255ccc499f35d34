// Times training steps of a topology from a config.json on synthetic inputs (no data loading):
//   train_step CONFIG.json [--steps N] [--warmup N] [--batch B] [--threads T] [--capacity C]
//              [--input CxHxW]  (default 1x28x28; 3x32x32 for VGG on CIFAR-10)
// Prints the median step time and its parts (forward, backward, optimizer) as JSON on the last
// line, with the process's peak resident memory. bench/run_mlp.sh compares it with Python.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/runtime.h"
#include "bench_util.h"

using quantlab::bench::median;
using quantlab::bench::peak_rss_kib;

int main(int argc, char** argv) {
  quantlab::reexec_with_passive_openmp(argv);
  CLI::App app{"Time training steps"};
  std::string config;
  int steps = 20, warmup = 3, threads = 0;
  int64_t batch = 256;
  double capacity = 0;
  app.add_option("config", config, "config.json")->required();
  app.add_option("--steps", steps);
  app.add_option("--warmup", warmup);
  app.add_option("--batch", batch);
  app.add_option("--threads", threads);
  app.add_option("--capacity", capacity, "override indiv.net.params.capacity");
  std::string input = "1x28x28";
  app.add_option("--input", input, "input shape CxHxW");
  CLI11_PARSE(app, argc, argv);
  try {
    quantlab::configure_runtime(threads);
    torch::manual_seed(0);
    auto cfg = quantlab::read_json_file(config);
    if (capacity > 0) cfg["indiv"]["net"]["params"]["capacity"] = capacity;
    quantlab::Experiment exp(cfg, "", torch::kCPU);
    exp.net->train();
    std::vector<int64_t> shape{batch};
    std::stringstream in(input);
    for (std::string d; std::getline(in, d, 'x');) shape.push_back(std::stoll(d));
    const auto x = torch::rand(shape);
    const auto y = torch::randint(10, {batch}, torch::kLong);
    std::vector<double> total, fwd, bwd, opt;
    using Clock = std::chrono::steady_clock;
    auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    for (int i = 0; i < warmup + steps; ++i) {
      const auto t0 = Clock::now();
      exp.optimizer->zero_grad();
      auto loss = exp.loss(exp.net->forward(x), y);
      const auto t1 = Clock::now();
      loss.backward();
      const auto t2 = Clock::now();
      exp.optimizer->step();
      const auto t3 = Clock::now();
      if (i < warmup) continue;
      fwd.push_back(secs(t0, t1));
      bwd.push_back(secs(t1, t2));
      opt.push_back(secs(t2, t3));
      total.push_back(secs(t0, t3));
    }
    std::cout << "{\"impl\": \"cpp\", \"threads\": " << at::get_num_threads() << ", \"batch\": " << batch
              << ", \"step_s\": " << median(total) << ", \"forward_s\": " << median(fwd)
              << ", \"backward_s\": " << median(bwd) << ", \"optimizer_s\": " << median(opt)
              << ", \"peak_rss_mib\": " << peak_rss_kib() / 1024.0 << "}" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "train_step: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
