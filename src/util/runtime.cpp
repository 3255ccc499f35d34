// Allocator, threads and device.
#include "quantlab/util/runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <strings.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>

#include "quantlab/util/error.h"

namespace quantlab {

void reexec_with_passive_openmp(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv);  // returns only on failure
}

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

void configure_runtime(int threads) {
  // glibc returns large blocks to the kernel on free and faults them back next step: measured
  // 2x (VGG) to 6-10x (MLP) slower training steps without these two settings.
  mallopt(M_MMAP_MAX, 0);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  at::set_num_threads(threads > 0 ? threads : available_cores());
}

std::string blas_slow_path_note() {
#if defined(__x86_64__) && defined(__GNUC__)
  using CoreName = char* (*)();
  const auto get = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!get) return "";  // not OpenBLAS
  const std::string core = get() ? get() : "";
  const bool avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
  const auto is_one_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (strcasecmp(core.c_str(), n) == 0) return true;
    return false;
  };
  std::string fix;
  if (avx512 && !is_one_of({"SkylakeX", "Cooperlake", "SapphireRapids"}))
    fix = "SkylakeX";
  else if (!avx512 && avx2 && !is_one_of({"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"}))
    fix = "Haswell";
  if (fix.empty()) return "";
  return "OpenBLAS runs its generic " + core + " kernels on this " + (avx512 ? "AVX-512" : "AVX2") +
         " CPU, which makes matrix products several times slower (measured 55 instead of 277 GFLOP/s); "
         "export OPENBLAS_CORETYPE=" +
         fix + " before starting QuantLab to use the right ones";
#else
  return "";
#endif
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    if (!torch::cuda::is_available())
      throw Error("--device=cuda: no CUDA device is available (this build or machine has none); use --device=cpu");
    return torch::kCUDA;
  }
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  throw Error("--device: expected cpu, cuda or auto, got '" + name + "'");
}

}  // namespace quantlab
