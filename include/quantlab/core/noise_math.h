// The noise families' formulas, written once for the CPU kernel (ana_kernel.cpp) and the CUDA
// kernel (ana_kernel.cu): the CDF of the standardised noise at u = (x - mu - t) / sigma, and the
// density of the noise of spread sigma at z = x - mu - t given inv = 1 / sigma (docs/ANA.md §2).
//   uniform     on [-sigma, sigma]          triangular  on [-sigma, sigma], peak at 0
//   normal      standard deviation sigma    logistic    scale sigma
// Plain float arithmetic with min/max as comparisons, so GCC vectorises the CPU loops and nvcc
// compiles the same lines for the GPU. To add a family: an enum value (noise.h) and a cdf<>() and
// density<>() specialisation here.
#pragma once

#include <math.h>

#include "quantlab/core/noise.h"

#if defined(__CUDACC__)
#define QL_HD __host__ __device__ __forceinline__
#else
#define QL_HD inline __attribute__((always_inline))
#endif

namespace quantlab::core::noise_math {

constexpr float kInvSqrt2 = 0.70710678118654752f;
constexpr float kInvSqrt2Pi = 0.39894228040143268f;

QL_HD float min_f(float a, float b) { return b < a ? b : a; }  // std::min's choice on ties
QL_HD float max_f(float a, float b) { return a < b ? b : a; }  // std::max's

template <NoiseFamily F>
QL_HD float cdf(float u);
template <>
QL_HD float cdf<NoiseFamily::kUniform>(float u) {
  return min_f(max_f(0.5f * u + 0.5f, 0.0f), 1.0f);
}
template <>
QL_HD float cdf<NoiseFamily::kTriangular>(float u) {
  const float a = min_f(fabsf(u), 1.0f);
  return 0.5f + 0.5f * copysignf(a * (2.0f - a), u);
}
template <>
QL_HD float cdf<NoiseFamily::kNormal>(float u) {
  return 0.5f * erfcf(-u * kInvSqrt2);
}
template <>
QL_HD float cdf<NoiseFamily::kLogistic>(float u) {
  return 1.0f / (1.0f + expf(-u));
}

template <NoiseFamily F>
QL_HD float density(float z, float inv);
template <>
QL_HD float density<NoiseFamily::kUniform>(float z, float inv) {
  return fabsf(z) * inv <= 1.0f ? 0.5f * inv : 0.0f;
}
template <>
QL_HD float density<NoiseFamily::kTriangular>(float z, float inv) {
  return max_f(1.0f - fabsf(z) * inv, 0.0f) * inv;
}
template <>
QL_HD float density<NoiseFamily::kNormal>(float z, float inv) {
  const float u = z * inv;
  return expf(-0.5f * u * u) * inv * kInvSqrt2Pi;
}
template <>
QL_HD float density<NoiseFamily::kLogistic>(float z, float inv) {
  const float e = expf(-fabsf(z) * inv);
  const float s = 1.0f + e;
  return inv * e / (s * s);
}

}  // namespace quantlab::core::noise_math
