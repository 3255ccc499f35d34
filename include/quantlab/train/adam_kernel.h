// One Adam / AdamW update of a float32 parameter in a single pass over its buffers (p, its
// gradient and the two moments; the running maximum too with amsgrad), where libtorch's step makes
// about eight passes and allocates a temporary. Free of libtorch, like the ANA kernels: compiled
// with the kernels' flags (CMakeLists.txt) and dispatched at run time to AVX-512/AVX2/baseline.
#pragma once

#include <cstdint>

#include "quantlab/core/ana_kernel.h"
#include "quantlab/core/noise.h"

namespace quantlab::train::kernel {

// The per-step scalars, computed in double by the caller from the options and the step count, as
// libtorch computes them; the kernel's arithmetic is float32.
struct AdamCoefficients {
  float beta1, beta2;
  float one_minus_beta1, one_minus_beta2;
  float sqrt_bias_correction2;  // sqrt(1 - beta2^t)
  float eps;
  float step_size;     // lr / (1 - beta1^t)
  float weight_decay;  // Adam: added to the gradient as weight_decay * p (0: none)
  float decay_scale;   // AdamW: p *= decay_scale first (1: none)
  bool amsgrad;
};

// The derivative of the ANA operator that quantizes p (core/ana_kernel.h's backward): its stair,
// noise family, mu and sigma_backward, in p's units.
struct AnaDerivative {
  core::kernel::Stair stair;
  core::NoiseFamily family;
  float mu;
  float sigma;
};

// The ANA operator's forward over the updated p (core::kernel::ana_forward): the quantized weight
// of the next training step, written to y (float32 or bfloat16) while p is in cache. Not the
// random strategy, which samples anew at each forward pass.
struct AnaForward {
  core::kernel::Stair stair;
  core::NoiseFamily family;
  core::ForwardStrategy strategy;
  float mu;
  float sigma;  // sigma_forward; 0: the hard stair
  void* y;
  core::kernel::Dtype dtype;
};

// For i in [0, n), with g' = g + weight_decay * p:
//   p *= decay_scale; m = beta1 m + (1 - beta1) g'; v = beta2 v + (1 - beta2) g'^2;
//   vmax = max(vmax, v) (amsgrad; vmax may be null otherwise);
//   p -= step_size * m / (sqrt(amsgrad ? vmax : v) / sqrt_bias_correction2 + eps).
// With `ana`, g is the gradient of ANA(p), the quantized parameter, and the step first takes the
// operator's backward, g = g * sum_k d_k f(p - mu - t_k; sigma) (0 where sigma is 0), computed as
// core::kernel::ana_backward computes it, at p before the update, in the same pass over p and g
// (train/ana_fold.h). With `next`, y = ANA(p) after the update, computed by the operator's own
// forward kernel on each block of p just updated (the values ana_forward writes, bit for bit).
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, const AdamCoefficients& c,
               int num_threads, const AnaDerivative* ana = nullptr, const AnaForward* next = nullptr);

}  // namespace quantlab::train::kernel
