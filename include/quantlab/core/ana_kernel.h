// The fused ANA kernels on raw float buffers: one pass over the tensor, no [thresholds x elements]
// intermediate. Free of libtorch on purpose: this file's loops are compiled with the flags that
// let GCC vectorise them (see CMakeLists.txt) and dispatched at run time to AVX-512/AVX2/SSE.
#pragma once

#include <cstdint>

#include "quantlab/core/noise.h"

namespace quantlab::core::kernel {

// A stair with T thresholds t[0..T-1] (sorted) and T+1 levels q[0..T] (see docs/ANA.md §1).
struct Stair {
  const float* thresholds;
  const float* levels;
  int num_thresholds;
};

// Forward: y[i] = smoothed stair at x[i] with noise (family, mu, sigma).
// sigma == 0 gives the hard stair Q(x - mu) (H(0) = 1) whatever the strategy.
// `uniform` (n values in [0,1)) is read only by ForwardStrategy::kRandom.
void ana_forward(const float* x, float* y, int64_t n, const Stair& stair, NoiseFamily family, ForwardStrategy strategy,
                 float mu, float sigma, const float* uniform, int num_threads);

// Backward: gx[i] = gy[i] * sum_k d_k f(x[i] - mu - t_k; sigma). sigma == 0 gives gx = 0.
void ana_backward(const float* x, const float* gy, float* gx, int64_t n, const Stair& stair, NoiseFamily family,
                  float mu, float sigma, int num_threads);

}  // namespace quantlab::core::kernel
