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

bool libtorch_has_cuda() {
  // libtorch's CUDA half is its own library, loaded with libtorch when libtorch was built with CUDA
  // (libtorch_cuda.so since 1.8; libtorch_cuda_cu.so / _cpp.so in some 1.x builds).
  for (const char* lib : {"libtorch_cuda.so", "libtorch_cuda_cpp.so", "libtorch_cuda_cu.so"}) {
    if (void* h = dlopen(lib, RTLD_NOW | RTLD_NOLOAD)) {
      dlclose(h);
      return true;
    }
  }
  return false;
}

std::string cuda_unavailable_reason() {
  if (torch::cuda::is_available()) return "";
  if (!libtorch_has_cuda())
    return "this QuantLab is built against a libtorch without CUDA (Debian's libtorch is CPU-only); build it with "
           "`make build TORCH=pip` (PyTorch 2.x with CUDA from PyPI) or, on a machine with a CUDA PyTorch installed, "
           "`make build TORCH=python` (docs/GPU.md), or use --device=cpu";
  const char* visible = std::getenv("CUDA_VISIBLE_DEVICES");
  return std::string("this QuantLab has CUDA but sees no GPU on this machine") +
         (visible ? " (CUDA_VISIBLE_DEVICES=" + std::string(visible) + ")" : std::string()) +
         ": check nvidia-smi, the driver and CUDA_VISIBLE_DEVICES, or use --device=cpu";
}

torch::Device resolve_device(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  if (name == "cuda") {
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw Error("--device=cuda: " + why);
    return torch::kCUDA;
  }
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  throw Error("--device: expected cpu, cuda or auto, got '" + name + "'");
}

void configure_device_math(torch::Device device, bool deterministic) {
  auto& ctx = at::globalContext();
  if (deterministic) {
    // cuBLAS reads its workspace setting when it first creates a handle: before any GPU work.
    if (device.is_cuda()) setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8", 0);
    // warn_only: an operation without a deterministic version (e.g. adaptive average pooling's
    // CUDA backward) warns once instead of stopping the run; docs/GPU.md lists them.
    ctx.setDeterministicAlgorithms(true, /*warn_only=*/true);
    ctx.setDeterministicCuDNN(true);
    ctx.setBenchmarkCuDNN(false);
  } else {
    // cuDNN tries the algorithms of each new shape once and keeps the fastest.
    ctx.setBenchmarkCuDNN(device.is_cuda());
  }
}

}  // namespace quantlab
