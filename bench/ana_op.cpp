// Times the ANA operator, forward + backward, fused kernel vs the plain tensor-op formulation:
//   ana_op --impl fused|tensor_ops [--n 4194304] [--levels 3] [--noise uniform] [--threads T] [--memory]
//          [--device cpu|cuda]
// One configuration per process, so the peak resident memory it prints (JSON, last line) is that
// configuration's own. bench/run_all.sh sweeps levels and implementations.
// On CUDA it times the forward and the backward separately (reps queued back to back between two
// synchronisations) and their memory rates (forward 8 bytes per element: x in, y out; backward 12:
// x and the gradient in, the gradient out) against a device-to-device copy of the same tensor
// (bench/gpu.sh: the kernel should reach 70 % of the copy's rate).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <iostream>

#include <malloc.h>

#include "quantlab/core/ana.h"
#ifdef QL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>

#include "quantlab/core/ana_cuda.h"
#endif
#include "quantlab/util/runtime.h"
#include "bench_util.h"

using quantlab::bench::median;
using quantlab::bench::peak_rss_kib;

int main(int argc, char** argv) {
  quantlab::reexec_with_runtime_environment(argv);
  CLI::App app{"Time the ANA operator"};
  std::string impl = "fused", noise = "uniform";
  int64_t n = 1 << 22;
  int levels = 3, threads = 0, reps = 20;
  app.add_option("--impl", impl)->check(CLI::IsMember({"fused", "tensor_ops"}));
  app.add_option("--n", n);
  app.add_option("--levels", levels, "number of levels (odd: symmetric around 0)");
  app.add_option("--noise", noise);
  app.add_option("--threads", threads);
  app.add_option("--reps", reps);
  bool memory = false;
  app.add_flag("--memory", memory, "measure peak memory (allocator returns every buffer)");
  std::string device_name = "cpu";
  app.add_option("--device", device_name)->check(CLI::IsMember({"cpu", "cuda"}));
  CLI11_PARSE(app, argc, argv);
  try {
    quantlab::configure_runtime(threads);
    if (memory) {
      // Every tensor buffer its own mapping, returned on free: the peak resident size then
      // measures the live tensors, not what the allocator keeps. Slows the run: time separately.
      mallopt(M_MMAP_THRESHOLD, 64 * 1024);
      mallopt(M_TRIM_THRESHOLD, 0);
      mallopt(M_MMAP_MAX, 1 << 20);
    }
    quantlab::core::AnaScheme s;
    s.noise = quantlab::core::noise_family_from_name(noise);
    std::vector<float> t, q;
    for (int k = 0; k < levels; ++k) q.push_back(static_cast<float>(k - levels / 2));
    for (int k = 1; k < levels; ++k) t.push_back(0.5f * (q[k - 1] + q[k]));
    s.quantizer = quantlab::core::Quantizer::from_stair(t, q);
    quantlab::core::NoiseState ns{0.0f, 0.5f, 0.5f};
    if (device_name == "cuda") {
      const torch::Device dev = quantlab::resolve_device("cuda");
      const auto stair = quantlab::core::stair_tensor(s.quantizer, dev);
      const auto x = torch::randn({n}, torch::TensorOptions().device(dev)) * (levels / 2.0);
      const auto g = torch::randn({n}, torch::TensorOptions().device(dev));
      auto timed = [&](const std::function<void()>& f) {
        for (int i = 0; i < 3; ++i) f();
        torch::cuda::synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) f();
        torch::cuda::synchronize();
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / reps;
      };
      torch::Tensor y = torch::empty_like(x);
      const double copy_s = timed([&] { y.copy_(x); });
      double fwd_s = 0, bwd_s = 0;
      if (impl == "fused") {
#ifdef QL_WITH_CUDA
        // The kernels alone, on the current stream, into preallocated outputs.
        const float* sp = stair.data_ptr<float>();
        const quantlab::core::kernel::Stair st{sp, sp + s.quantizer.num_thresholds(), s.quantizer.num_thresholds()};
        void* stream = at::cuda::getCurrentCUDAStream().stream();
        torch::Tensor gx = torch::empty_like(x);
        fwd_s = timed([&] {
          quantlab::core::kernel::ana_forward_cuda(x.data_ptr<float>(), y.data_ptr<float>(), n, st, s.noise, s.strategy,
                                                   ns.mu, ns.sigma_forward, nullptr, stream);
        });
        bwd_s = timed([&] {
          quantlab::core::kernel::ana_backward_cuda(x.data_ptr<float>(), g.data_ptr<float>(), gx.data_ptr<float>(), n,
                                                    st, s.noise, ns.mu, ns.sigma_backward, stream);
        });
#else
        throw std::runtime_error("this build has no CUDA kernels of the ANA operator (no CUDA compiler was found)");
#endif
      } else {
        torch::NoGradGuard ng;
        fwd_s = timed([&] { y = quantlab::core::ana_tensor_ops_forward(x, s, ns.mu, ns.sigma_forward); });
        bwd_s = timed([&] { y = quantlab::core::ana_tensor_ops_backward(x, g, s, ns.mu, ns.sigma_backward); });
      }
      const double N = static_cast<double>(n);
      std::cout << "{\"impl\": \"" << impl << "\", \"device\": \"cuda\", \"n\": " << n << ", \"levels\": " << levels
                << ", \"noise\": \"" << noise << "\", \"forward_us\": " << 1e6 * fwd_s
                << ", \"backward_us\": " << 1e6 * bwd_s << ", \"forward_gbps\": " << 8 * N / fwd_s / 1e9
                << ", \"backward_gbps\": " << 12 * N / bwd_s / 1e9 << ", \"copy_gbps\": " << 8 * N / copy_s / 1e9
                << ", \"forward_of_copy\": " << copy_s / fwd_s << "}" << std::endl;
      return 0;
    }
    const auto stair = quantlab::core::stair_tensor(s.quantizer, torch::kCPU);
    auto x = (torch::randn({n}) * (levels / 2.0)).requires_grad_(true);
    const auto g = torch::randn({n});
    const long rss0 = peak_rss_kib();
    std::vector<double> times;
    for (int i = 0; i < reps + 2; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      if (impl == "fused") {
        auto y = quantlab::core::ana(x, stair, s, ns, true);
        y.backward(g);
      } else {
        torch::NoGradGuard ng;
        auto y = quantlab::core::ana_tensor_ops_forward(x, s, ns.mu, ns.sigma_forward);
        auto gx = quantlab::core::ana_tensor_ops_backward(x, g, s, ns.mu, ns.sigma_backward);
      }
      const auto t1 = std::chrono::steady_clock::now();
      x.mutable_grad() = torch::Tensor();
      if (i >= 2) times.push_back(std::chrono::duration<double>(t1 - t0).count());
    }
    std::cout << "{\"impl\": \"" << impl << "\", \"n\": " << n << ", \"levels\": " << levels << ", \"noise\": \""
              << noise << "\", \"threads\": " << at::get_num_threads()
              << (memory ? ", \"extra_peak_mib\": " : ", \"fwd_bwd_ms\": ")
              << (memory ? (peak_rss_kib() - rss0) / 1024.0 : 1e3 * median(times)) << "}" << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "ana_op: " << e.what() << std::endl;
    return 1;
  }
  return 0;
}
