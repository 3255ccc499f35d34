// Times training steps of a topology from a config.json on synthetic inputs (no data loading):
//   train_step CONFIG.json [--steps N] [--warmup N] [--batch B] [--threads T] [--capacity C]
//              [--input CxHxW]  (default 1x28x28; 3x32x32 for VGG on CIFAR-10)
//              [--device cpu|cuda] [--amp] [--channels_last] [--classes K] [--phases]
// Prints, as JSON on the last line, on the CPU the median step time and its parts (forward,
// backward, optimizer) with the process's peak resident memory, and with --phases, after the
// timed steps, as many again counted by kind of operation (bench/op_times.h): the mean seconds per
// step in matrix products and convolutions, the ANA operator, batch norm (with its fused ANA), the
// optimizer and the rest. On CUDA the mean step time of the timed steps queued back to back (one
// synchronisation before and after: the parts are not separable there), images/s and the host
// synchronisations per step. bench/run_all.sh and bench/gpu.sh
// compare it with bench/train_step.py.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/topology/layout.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/optimizer.h"
#include "quantlab/util/cpu_features.h"
#include "quantlab/util/host_sync.h"
#include "quantlab/util/runtime.h"
#include "bench_util.h"
#include "op_times.h"

using quantlab::bench::median;
using quantlab::bench::peak_rss_kib;

int main(int argc, char** argv) {
  quantlab::reexec_with_runtime_environment(argv);
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
  std::string device_name = "cpu";
  bool amp = false, channels_last = false, phases = false;
  int64_t classes = 10;
  app.add_option("--device", device_name)->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--amp", amp, "bfloat16 products (quantlab --amp)");
  app.add_flag("--channels_last", channels_last, "channels-last convolutions on CUDA (quantlab --channels_last)");
  app.add_option("--classes", classes, "labels drawn from 0..K-1 (the network's classes)");
  app.add_flag("--phases", phases, "then count the step's time by kind of operation (CPU)");
  CLI11_PARSE(app, argc, argv);
  try {
    quantlab::configure_runtime(threads);
    torch::manual_seed(0);
    auto cfg = quantlab::config::read_json_file(config);
    if (capacity > 0) cfg["indiv"]["net"]["params"]["capacity"] = capacity;
    const torch::Device device = quantlab::resolve_device(device_name);
    quantlab::configure_device_math(device, false);
    quantlab::topology::set_cuda_channels_last(channels_last);
    quantlab::train::Experiment exp(cfg, "", device);
    exp.net->set_mixed_precision(amp);
    exp.net->train();
    int64_t params = 0;
    for (const auto& p : exp.net->parameters()) params += p.numel();
    std::vector<int64_t> shape{batch};
    std::stringstream in(input);
    for (std::string d; std::getline(in, d, 'x');) shape.push_back(std::stoll(d));
    const auto x = torch::rand(shape).to(device);
    const auto y = torch::randint(classes, {batch}, torch::kLong).to(device);
    if (device.is_cuda()) {
      // Queued back to back as in training; a synchronisation before and after the timed steps.
      using Clock = std::chrono::steady_clock;
      for (int i = 0; i < warmup; ++i) {
        quantlab::train::clear_gradients(*exp.optimizer);
        exp.loss(exp.net->forward(x), y).backward();
        exp.optimizer->step();
      }
      torch::cuda::synchronize();
      int64_t syncs = 0;
      const auto t0 = Clock::now();
      {
        quantlab::HostSyncWatch watch(quantlab::HostSyncWatch::kCount);
        for (int i = 0; i < steps; ++i) {
          quantlab::train::clear_gradients(*exp.optimizer);
          exp.loss(exp.net->forward(x), y).backward();
          exp.optimizer->step();
        }
        syncs = watch.count();
      }
      torch::cuda::synchronize();
      const double step = std::chrono::duration<double>(Clock::now() - t0).count() / steps;
      std::cout << "{\"impl\": \"cpp\", \"device\": \"cuda\", \"amp\": " << (amp ? "true" : "false")
                << ", \"channels_last\": " << (channels_last ? "true" : "false") << ", \"parameters\": " << params
                << ", \"batch\": " << batch << ", \"step_s\": " << step
                << ", \"images_per_s\": " << static_cast<double>(batch) / step
                << ", \"host_syncs_per_step\": " << static_cast<double>(syncs) / steps << "}" << std::endl;
      return 0;
    }
    std::vector<double> total, fwd, bwd, opt;
    using Clock = std::chrono::steady_clock;
    auto secs = [](Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); };
    for (int i = 0; i < warmup + steps; ++i) {
      const auto t0 = Clock::now();
      quantlab::train::clear_gradients(*exp.optimizer);
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
    std::ostringstream kinds;
    if (phases) {
      // The same steps again, counted by kind of operation (separately, so the counting costs
      // nothing to the times above).
      double step_total = 0, opt_total = 0;
      quantlab::bench::OpTimes ops;
      for (int i = 0; i < steps; ++i) {
        const auto t0 = Clock::now();
        quantlab::train::clear_gradients(*exp.optimizer);
        exp.loss(exp.net->forward(x), y).backward();
        const auto t1 = Clock::now();
        exp.optimizer->step();
        const auto t2 = Clock::now();
        step_total += secs(t0, t2);
        opt_total += secs(t1, t2);
      }
      using quantlab::bench::OpKind;
      double counted = opt_total;
      for (auto k : {OpKind::kProducts, OpKind::kAna, OpKind::kBatchNorm}) {
        kinds << ", \"" << quantlab::bench::op_kind_name(k) << "_s\": " << ops.seconds(k) / steps;
        counted += ops.seconds(k);
      }
      kinds << ", \"phases_step_s\": " << step_total / steps << ", \"phases_optimizer_s\": " << opt_total / steps
            << ", \"other_s\": " << (step_total - counted) / steps;
    }
    std::cout << "{\"impl\": \"cpp\", \"device\": \"cpu\", \"amp\": " << (amp ? "true" : "false")
              << ", \"threads\": " << at::get_num_threads() << ", \"parameters\": " << params
              << ", \"batch\": " << batch << ", \"step_s\": " << median(total) << ", \"forward_s\": " << median(fwd)
              << ", \"backward_s\": " << median(bwd) << ", \"optimizer_s\": " << median(opt)
              << ", \"images_per_s\": " << static_cast<double>(batch) / median(total)
              << ", \"peak_rss_mib\": " << peak_rss_kib() / 1024.0 << ", \"cpu_bf16\": \""
              << quantlab::cpu_features().bf16_summary() << "\"" << kinds.str() << "}" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "train_step: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
