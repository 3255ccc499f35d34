// The fused Adam step (adam_kernel.h): one loop over the parameter, memory-bound, split in
// contiguous ranges between threads.
#include "quantlab/train/adam_kernel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

#include "quantlab/util/clones.h"

namespace quantlab::train::kernel {
namespace {

constexpr int64_t kMinParallel = 1 << 16;  // values; below this one thread
constexpr int64_t kAlign = 64;             // range boundaries on whole cache lines of floats

QL_CLONES void step_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                          float* __restrict vmax, int64_t begin, int64_t end, const AdamCoefficients c) {
  if (c.amsgrad) {
    for (int64_t i = begin; i < end; ++i) {
      const float pi = p[i] * c.decay_scale;
      const float gi = g[i] + c.weight_decay * pi;
      const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
      const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
      const float wi = std::max(vmax[i], vi);
      m[i] = mi;
      v[i] = vi;
      vmax[i] = wi;
      p[i] = pi - c.step_size * (mi / (std::sqrt(wi) / c.sqrt_bias_correction2 + c.eps));
    }
    return;
  }
  for (int64_t i = begin; i < end; ++i) {
    const float pi = p[i] * c.decay_scale;
    const float gi = g[i] + c.weight_decay * pi;
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - c.step_size * (mi / (std::sqrt(vi) / c.sqrt_bias_correction2 + c.eps));
  }
}

}  // namespace

void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, const AdamCoefficients& c,
               int num_threads) {
  if (n < kMinParallel || num_threads <= 1) {
    step_range(p, g, m, v, vmax, 0, n, c);
    return;
  }
#pragma omp parallel num_threads(num_threads)
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    const int64_t per = ((n + nt - 1) / nt + kAlign - 1) / kAlign * kAlign;
    const int64_t begin = std::min(n, id * per);
    const int64_t end = std::min(n, begin + per);
    if (begin < end) step_range(p, g, m, v, vmax, begin, end, c);
  }
}

}  // namespace quantlab::train::kernel
