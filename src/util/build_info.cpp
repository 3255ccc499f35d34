// BuildInfo: the versions come from libtorch itself (its CUDA hooks and NCCL wrapper), not from the
// headers QuantLab was compiled with, except libtorch's own version (its headers and library are
// one install).
#include "quantlab/util/build_info.h"

#include <torch/torch.h>
#include <torch/version.h>

#ifdef QL_LIBTORCH_CUDA
#include <ATen/detail/CUDAHooksInterface.h>
#include <torch/csrc/cuda/nccl.h>
#endif

#include <sstream>

#include "quantlab/util/strings.h"

namespace quantlab {

// git describe --always --dirty of the sources at the last build ("unknown" outside a git
// checkout), written by tools/revision.cmake into the build folder's generated/revision.cpp.
extern const char* const kGitRevision;

namespace {

#ifdef QL_LIBTORCH_CUDA
// cuDNN's and CUDA's integer versions: 91900 -> 9.19.0 (cuDNN 9), 13000 -> 13.0 (CUDA).
std::string cudnn_text(long v) {
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}
std::string cuda_text(long v) { return std::to_string(v / 1000) + "." + std::to_string(v / 10 % 100); }
#endif

}  // namespace

BuildInfo build_info() {
  BuildInfo b;
  b.quantlab = kGitRevision;
  b.libtorch = TORCH_VERSION;
  b.backends = {"gloo"};
#ifdef QL_LIBTORCH_CUDA
  b.libtorch_cuda = true;
  const auto& hooks = at::detail::getCUDAHooks();
  try {
    b.cuda = cuda_text(hooks.versionCUDART());
  } catch (const std::exception&) {
  }
  try {
    b.cudnn = cudnn_text(hooks.versionRuntimeCuDNN());
  } catch (const std::exception&) {
  }
  try {
    const uint64_t v = torch::cuda::nccl::version();
    b.nccl = std::to_string(v >> 32) + "." + std::to_string((v >> 16) & 0xffff) + "." + std::to_string(v & 0xffff);
  } catch (const std::exception&) {
  }
#endif
#ifdef QL_WITH_NCCL
  b.backends.push_back("nccl");
#endif
#ifdef QL_CUDA_ARCHITECTURES
  for (const auto& a : split(QL_CUDA_ARCHITECTURES, ',')) b.kernels.push_back("sm_" + a);
#endif
  b.gpus = static_cast<int>(torch::cuda::device_count());
  return b;
}

std::string build_summary(const BuildInfo& b) {
  if (!b.libtorch_cuda) return "libtorch " + b.libtorch + ", CPU only";
  return "libtorch " + b.libtorch + " with CUDA " + (b.cuda.empty() ? "(version unknown)" : b.cuda);
}

std::string describe_build(const BuildInfo& b) {
  std::ostringstream s;
  s << "QuantLab " << b.quantlab << "\n";
  if (!b.libtorch_cuda) {
    s << "libtorch " << b.libtorch << ": CPU only (built without CUDA)\n";
  } else {
    s << "libtorch " << b.libtorch << " with CUDA " << (b.cuda.empty() ? "?" : b.cuda) << ", cuDNN "
      << (b.cudnn.empty() ? "?" : b.cudnn) << ", NCCL " << (b.nccl.empty() ? "?" : b.nccl) << "\n";
    s << "QuantLab's CUDA kernels: "
      << (b.kernels.empty() ? std::string("not built (no CUDA compiler at build time; the GPU path uses tensor ops)")
                            : join(b.kernels))
      << "\n";
  }
  s << "data-parallel backends: " << join(b.backends) << "\n";
  s << "GPUs visible: " << b.gpus << "\n";
  return s.str();
}

}  // namespace quantlab
