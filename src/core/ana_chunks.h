// The ANA kernels' inner loops over one cache-resident chunk of floats (docs/ANA.md §2), shared by
// the elementwise operator (ana_kernel.cpp) and the batch norm + ANA operator (bn_ana_kernel.cpp).
// Private to the kernels: included only by translation units compiled with the kernels' flags
// (also train/adam_kernel.cpp, whose Adam step can take the weights' ANA backward).
#pragma once

#include <cstdint>
#include <cstring>

#include "quantlab/core/ana_kernel.h"
#include "quantlab/core/noise_math.h"
#include "quantlab/util/clones.h"

namespace quantlab::core::kernel::chunks {

constexpr int64_t kChunk = 512;  // floats per chunk: stays in L1 with its scratch

using noise_math::cdf;
using noise_math::density;

// bfloat16 <-> float32, and the loads and stores of a chunk in either type.
QL_INLINE float from_bf16(uint16_t v) {
  const uint32_t u = static_cast<uint32_t>(v) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// Round to nearest even, NaN kept a NaN: what c10::BFloat16 does.
QL_INLINE uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return f != f ? static_cast<uint16_t>(0x7FC0) : static_cast<uint16_t>(rounded);
}

// The n values at p[begin...] as float: in place for float32, converted into buf for bfloat16.
QL_INLINE const float* load(const void* p, Dtype t, int64_t begin, int64_t n, float* __restrict buf) {
  if (t == Dtype::kFloat32) return static_cast<const float*>(p) + begin;
  const uint16_t* __restrict s = static_cast<const uint16_t*>(p) + begin;
  for (int64_t j = 0; j < n; ++j) buf[j] = from_bf16(s[j]);
  return buf;
}

// Where to compute n output values: in place for float32, in buf for bfloat16 (then store()).
QL_INLINE float* output(void* p, Dtype t, int64_t begin, float* buf) {
  return t == Dtype::kFloat32 ? static_cast<float*>(p) + begin : buf;
}

QL_INLINE void store(void* p, Dtype t, int64_t begin, int64_t n, const float* __restrict buf) {
  if (t == Dtype::kFloat32) return;  // computed in place
  uint16_t* __restrict d = static_cast<uint16_t*>(p) + begin;
  for (int64_t j = 0; j < n; ++j) d[j] = to_bf16(buf[j]);
}

struct Args {
  const float* x;
  float* y;         // forward output, or backward output gx
  const float* gy;  // backward only
  const float* uniform;
  Stair stair;
  float mu;
  float inv_sigma;
};

QL_INLINE void hard_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict x = a.x + c;
  const float mu = a.mu;
  float* __restrict y = a.y + c;
  const float q0 = a.stair.levels[0];
  for (int64_t j = 0; j < m; ++j) y[j] = q0;
  for (int i = 0; i < a.stair.num_thresholds; ++i) {
    const float t = a.stair.thresholds[i];
    const float d = a.stair.levels[i + 1] - a.stair.levels[i];
    for (int64_t j = 0; j < m; ++j) y[j] += (x[j] - mu) - t >= 0.0f ? d : 0.0f;
  }
}

template <NoiseFamily F>
QL_INLINE void expectation_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict x = a.x + c;
  const float mu = a.mu, inv = a.inv_sigma;
  float* __restrict y = a.y + c;
  const float q0 = a.stair.levels[0];
  for (int64_t j = 0; j < m; ++j) y[j] = q0;
  for (int i = 0; i < a.stair.num_thresholds; ++i) {
    const float t = a.stair.thresholds[i];
    const float d = a.stair.levels[i + 1] - a.stair.levels[i];
    for (int64_t j = 0; j < m; ++j) y[j] += d * cdf<F>(((x[j] - mu) - t) * inv);
  }
}

template <NoiseFamily F>
QL_INLINE void random_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict x = a.x + c;
  const float mu = a.mu, inv = a.inv_sigma;
  const float* __restrict r = a.uniform + c;
  float* __restrict y = a.y + c;
  const float q0 = a.stair.levels[0];
  for (int64_t j = 0; j < m; ++j) y[j] = q0;
  // P(level index > i) = F_i, so the sampled index is #{i : r < F_i} (F_i decreases with i).
  for (int i = 0; i < a.stair.num_thresholds; ++i) {
    const float t = a.stair.thresholds[i];
    const float d = a.stair.levels[i + 1] - a.stair.levels[i];
    for (int64_t j = 0; j < m; ++j) y[j] += r[j] < cdf<F>(((x[j] - mu) - t) * inv) ? d : 0.0f;
  }
}

template <NoiseFamily F>
QL_INLINE void mode_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict x = a.x + c;
  const float mu = a.mu, inv = a.inv_sigma;
  float* __restrict y = a.y + c;
  float prev[kChunk];    // F_{k-1}
  float best_p[kChunk];  // probability of the best bin so far
  const int T = a.stair.num_thresholds;
  for (int64_t j = 0; j < m; ++j) {
    prev[j] = 1.0f;
    best_p[j] = -1.0f;
    y[j] = a.stair.levels[0];
  }
  for (int k = 0; k <= T; ++k) {
    const float q = a.stair.levels[k];
    if (k < T) {
      const float t = a.stair.thresholds[k];
      for (int64_t j = 0; j < m; ++j) {
        const float f = cdf<F>(((x[j] - mu) - t) * inv);
        const float p = prev[j] - f;
        const bool better = p > best_p[j];
        best_p[j] = better ? p : best_p[j];
        y[j] = better ? q : y[j];
        prev[j] = f;
      }
    } else {
      for (int64_t j = 0; j < m; ++j) {
        const bool better = prev[j] > best_p[j];
        y[j] = better ? q : y[j];
      }
    }
  }
}

// The operator's derivative at x[0..m), sum_k d_k f(x - mu - t_k; sigma), into jac: the backward
// without its multiply by the incoming gradient (train/adam_kernel.cpp makes that one in Adam's loop).
template <NoiseFamily F>
QL_INLINE void derivative_chunk(const Args& a, const float* __restrict x, float* __restrict jac, int64_t m) {
  const float mu = a.mu, inv = a.inv_sigma;
  for (int64_t j = 0; j < m; ++j) jac[j] = 0.0f;
  for (int i = 0; i < a.stair.num_thresholds; ++i) {
    const float t = a.stair.thresholds[i];
    const float d = a.stair.levels[i + 1] - a.stair.levels[i];
    for (int64_t j = 0; j < m; ++j) jac[j] += d * density<F>((x[j] - mu) - t, inv);
  }
}

template <NoiseFamily F>
QL_INLINE void backward_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict gy = a.gy + c;
  float* __restrict gx = a.y + c;
  derivative_chunk<F>(a, a.x + c, gx, m);
  for (int64_t j = 0; j < m; ++j) gx[j] *= gy[j];
}

}  // namespace quantlab::core::kernel::chunks
