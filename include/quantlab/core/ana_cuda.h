// The fused ANA operator on a CUDA device: the mathematics of ana_kernel.h (the same CDFs,
// densities and strategies), one thread per element looping over the stair's thresholds, so no
// [thresholds x elements] intermediate either. Built only when libtorch has CUDA and a CUDA
// compiler is found (QL_WITH_CUDA); without it the GPU path is the tensor-op formulation.
// All pointers are device pointers, the stair's too; `stream` is the cudaStream_t to launch on.
// Launch errors throw std::runtime_error with CUDA's message.
#pragma once

#include <cstdint>

#include "quantlab/core/ana_kernel.h"

namespace quantlab::core::kernel {

void ana_forward_cuda(const float* x, float* y, int64_t n, const Stair& stair, NoiseFamily family,
                      ForwardStrategy strategy, float mu, float sigma, const float* uniform, void* stream);

void ana_backward_cuda(const float* x, const float* gy, float* gx, int64_t n, const Stair& stair, NoiseFamily family,
                       float mu, float sigma, void* stream);

}  // namespace quantlab::core::kernel
