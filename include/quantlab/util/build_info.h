// What this QuantLab binary was built with and against: libtorch's version, whether it has CUDA
// (and the CUDA, cuDNN and NCCL versions it carries), the GPU architectures of QuantLab's own CUDA
// kernels, and the data-parallel backends compiled in. `quantlab --version` prints it; every
// training launch starts with its one-line summary.
#pragma once

#include <string>
#include <vector>

namespace quantlab {

struct BuildInfo {
  std::string quantlab;               // QuantLab's revision (git), or "unknown"
  std::string libtorch;               // e.g. "2.11.0"
  bool libtorch_cuda = false;         // libtorch built with CUDA (a GPU may still be missing)
  std::string cuda;                   // CUDA runtime libtorch was built with, e.g. "13.0"; "" without CUDA
  std::string cudnn;                  // e.g. "9.19.0"; "" without
  std::string nccl;                   // e.g. "2.28.9"; "" without
  std::vector<std::string> kernels;   // GPU architectures of QuantLab's CUDA kernels, e.g. {"sm_80", "sm_90"}
  std::vector<std::string> backends;  // data-parallel backends: "gloo", and "nccl" where compiled in
  int gpus = 0;                       // CUDA devices this process sees now
};

BuildInfo build_info();

// The lines of `quantlab --version`.
std::string describe_build(const BuildInfo& b);
// One line for the start of a launch: "libtorch 2.11.0 with CUDA 13.0" or "libtorch 1.13.1, CPU only".
std::string build_summary(const BuildInfo& b);

}  // namespace quantlab
