// One Adam / AdamW update of a float32 parameter in a single pass over its buffers (p, its
// gradient and the two moments; the running maximum too with amsgrad), where libtorch's step makes
// about eight passes and allocates a temporary. Free of libtorch, like the ANA kernels: compiled
// with the kernels' flags (CMakeLists.txt) and dispatched at run time to AVX-512/AVX2/baseline.
#pragma once

#include <cstdint>

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

// For i in [0, n), with g' = g + weight_decay * p:
//   p *= decay_scale; m = beta1 m + (1 - beta1) g'; v = beta2 v + (1 - beta2) g'^2;
//   vmax = max(vmax, v) (amsgrad; vmax may be null otherwise);
//   p -= step_size * m / (sqrt(amsgrad ? vmax : v) / sqrt_bias_correction2 + eps).
void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, const AdamCoefficients& c,
               int num_threads);

}  // namespace quantlab::train::kernel
