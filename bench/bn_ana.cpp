// Times batch norm (training mode) + ANA activation, forward + backward, on one layer's activations:
// fused (core/bn_ana.h, what training runs) against the batch norm module followed by the ANA
// operator (what it ran before, and still runs with QL_UNFUSED_BN_ANA=1):
//   bn_ana [--shape NxCxHxW | --shape NxC] [--dtype float32|bfloat16] [--threads T] [--reps 30]
// Channels-last layout, uniform noise, ternary stair, alternating fused and unfused calls.
// Prints one JSON line: the medians in ms and the ratio.
#include <CLI/CLI.hpp>

#include <chrono>
#include <iostream>
#include <sstream>

#include "quantlab/core/bn_ana.h"
#include "quantlab/util/runtime.h"
#include "bench_util.h"

using quantlab::bench::median;

int main(int argc, char** argv) {
  quantlab::reexec_with_runtime_environment(argv);
  CLI::App app{"Time batch norm + ANA, fused and unfused"};
  std::string shape_text = "64x32x32x32", dtype = "float32";
  int threads = 0, reps = 30;
  app.add_option("--shape", shape_text, "NxCxHxW or NxC");
  app.add_option("--dtype", dtype)->check(CLI::IsMember({"float32", "bfloat16"}));
  app.add_option("--threads", threads);
  app.add_option("--reps", reps);
  CLI11_PARSE(app, argc, argv);
  if (threads > 0) at::set_num_threads(threads);
  std::vector<int64_t> shape;
  std::stringstream ss(shape_text);
  for (std::string part; std::getline(ss, part, 'x');) shape.push_back(std::stoll(part));
  if (shape.size() != 2 && shape.size() != 4) {
    std::cerr << "bn_ana: --shape takes NxC or NxCxHxW\n";
    return 2;
  }
  namespace core = quantlab::core;
  core::AnaScheme s;
  s.quantizer = core::Quantizer::from_stair({-0.5f, 0.5f}, {-1.0f, 0.0f, 1.0f});
  const core::NoiseState noise{0.0f, 0.5f, 0.5f};
  const torch::Tensor stair = core::stair_tensor(s.quantizer, torch::kCPU);
  const auto type = dtype == "bfloat16" ? torch::kBFloat16 : torch::kFloat32;
  torch::Tensor x = torch::randn(shape).to(type);
  if (shape.size() == 4) x = x.contiguous(c10::MemoryFormat::ChannelsLast);
  const torch::Tensor gy = torch::randn(shape).to(type).contiguous(x.suggest_memory_format());
  torch::nn::BatchNorm2d bn(shape[1]);
  bn->train();
  const core::BatchNormRefs refs{
      bn->weight, bn->bias, bn->running_mean, bn->running_var, bn->num_batches_tracked, 0.1, bn->options.eps()};
  auto fused = [&] {
    const torch::Tensor xi = x.detach().requires_grad_(true);
    core::bn_ana(xi, refs, stair, s, noise, type).backward(gy);
  };
  auto unfused = [&] {
    const torch::Tensor xi = x.detach().requires_grad_(true);
    const torch::Tensor x4 = xi.dim() == 2 ? xi.unsqueeze(2).unsqueeze(3) : xi;
    torch::Tensor y = core::ana(bn->forward(x4.to(torch::kFloat32)), stair, s, noise, true);
    y = y.dim() != xi.dim() ? y.squeeze(3).squeeze(2) : y;
    y.to(type).backward(gy);
  };
  auto time_ms = [](const std::function<void()>& f) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  for (int i = 0; i < 3; ++i) {
    fused();
    unfused();
  }
  std::vector<double> tf, tu;
  for (int i = 0; i < reps; ++i) {
    tf.push_back(time_ms(fused));
    tu.push_back(time_ms(unfused));
  }
  std::cout << "{\"shape\": \"" << shape_text << "\", \"dtype\": \"" << dtype
            << "\", \"threads\": " << at::get_num_threads() << ", \"fused_ms\": " << median(tf)
            << ", \"unfused_ms\": " << median(tu) << ", \"speedup\": " << median(tu) / median(tf) << "}\n";
  return 0;
}
