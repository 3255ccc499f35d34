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

void reexec_with_runtime_environment(char** argv) {
  bool changed = false;
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    changed = true;
  }
  if (std::getenv("OPENBLAS_CORETYPE") == nullptr && std::getenv("QL_KEEP_OPENBLAS_CORETYPE") == nullptr) {
    const std::string core = blas_better_coretype();
    if (!core.empty()) {
      setenv("OPENBLAS_CORETYPE", core.c_str(), 1);
      setenv("QL_SET_OPENBLAS_CORETYPE", core.c_str(), 1);  // so the run can say it chose this
      changed = true;
    }
  }
  if (!changed) return;
  execv("/proc/self/exe", argv);  // returns only on failure: the run goes on as it is
  unsetenv("QL_SET_OPENBLAS_CORETYPE");
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

namespace {

// The loaded OpenBLAS's core name ("" when the BLAS is not OpenBLAS).
std::string blas_corename() {
#if defined(__x86_64__) && defined(__GNUC__)
  using CoreName = char* (*)();
  const auto get = reinterpret_cast<CoreName>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!get) return "";
  const char* core = get();
  return core ? core : "";
#else
  return "";
#endif
}

}  // namespace

std::string blas_better_coretype() {
#if defined(__x86_64__) && defined(__GNUC__)
  const std::string core = blas_corename();
  if (core.empty()) return "";  // not OpenBLAS
  const bool avx512 = __builtin_cpu_supports("avx512f"), avx2 = __builtin_cpu_supports("avx2");
  const auto is_one_of = [&](std::initializer_list<const char*> names) {
    for (const char* n : names)
      if (strcasecmp(core.c_str(), n) == 0) return true;
    return false;
  };
  if (avx512 && !is_one_of({"SkylakeX", "Cooperlake", "SapphireRapids"})) return "SkylakeX";
  if (!avx512 && avx2 && !is_one_of({"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids"})) return "Haswell";
#endif
  return "";
}

std::string blas_slow_path_note() {
  const std::string fix = blas_better_coretype();
  if (fix.empty()) return "";
  const bool avx512 = fix == "SkylakeX";
  return "OpenBLAS runs its generic " + blas_corename() + " kernels on this " + (avx512 ? "AVX-512" : "AVX2") +
         " CPU, which makes matrix products several times slower (measured 55 instead of 277 GFLOP/s); "
         "export OPENBLAS_CORETYPE=" +
         fix + " before starting QuantLab to use the right ones";
}

std::string blas_choice_note() {
  const char* set = std::getenv("QL_SET_OPENBLAS_CORETYPE");
  const char* now = std::getenv("OPENBLAS_CORETYPE");
  if (set == nullptr || now == nullptr || std::string(set) != now) return "";
  const std::string core = blas_corename();
  if (!core.empty() && strcasecmp(core.c_str(), now) != 0)
    return "QuantLab set OPENBLAS_CORETYPE=" + std::string(now) + ", but this OpenBLAS runs its " + core +
           " kernels all the same (it was built without a choice of kernels at run time)";
  return "OpenBLAS runs its " + (core.empty() ? std::string(now) : core) +
         " kernels: QuantLab set OPENBLAS_CORETYPE=" + now +
         " because OpenBLAS does not recognise this CPU and would run its generic ones, several times slower "
         "(set OPENBLAS_CORETYPE yourself, or QL_KEEP_OPENBLAS_CORETYPE=1 to keep OpenBLAS's own choice)";
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
           "`make build TORCH=python` (into build-python/; docs/GPU.md), or use --device=cpu";
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
