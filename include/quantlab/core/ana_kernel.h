// The fused ANA kernels on raw float buffers: one pass over the tensor, no [thresholds x elements]
// intermediate. Free of libtorch on purpose: this file's loops are compiled with the flags that
// let GCC vectorise them (see CMakeLists.txt) and dispatched at run time to AVX-512/AVX2/SSE.
#pragma once

#include <cstdint>

#include "quantlab/core/noise.h"

namespace quantlab::core::kernel {

enum class Dtype { kFloat32, kBFloat16 };  // bfloat16 values are the high halves of float32 (uint16_t)

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

// The same with the forward's y, or the backward's gy, of type yt / gyt: bfloat16 for the operand
// of a bfloat16 product under --amp (a quantized weight) and its gradient, converted inside the
// loop (the arithmetic stays float32) instead of in a separate pass over a float32 copy.
void ana_forward(const float* x, void* y, Dtype yt, int64_t n, const Stair& stair, NoiseFamily family,
                 ForwardStrategy strategy, float mu, float sigma, const float* uniform, int num_threads);
void ana_backward(const float* x, const void* gy, Dtype gyt, float* gx, int64_t n, const Stair& stair,
                  NoiseFamily family, float mu, float sigma, int num_threads);

}  // namespace quantlab::core::kernel
