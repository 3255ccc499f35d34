// The fused Adam step (adam_kernel.h): one loop over the parameter, memory-bound, split in
// contiguous ranges between threads. With the ANA operator's backward folded in, its derivative
// is computed in the update's own loop for stairs of 1-3 thresholds, and for more on a chunk of 512
// values in L1 (the ANA kernels' own chunk code) just before the chunk's update. With the next
// step's quantized weight asked for, the operator's forward runs over each block just updated.
#include "quantlab/train/adam_kernel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "../core/ana_chunks.h"
#include "quantlab/util/clones.h"

namespace quantlab::train::kernel {
namespace {

namespace chunks = core::kernel::chunks;
using core::NoiseFamily;

constexpr int64_t kMinParallel = 1 << 16;  // values; below this one thread
constexpr int64_t kAlign = 64;             // range boundaries on whole cache lines of floats

// With kJac, the gradient is jac * g (jac: the ANA operator's derivative at p, ana_chunks.h's
// derivative_chunk, so the product is the one backward_chunk makes).
template <bool kJac>
QL_INLINE void update(float* __restrict p, const float* __restrict g, const float* __restrict jac, float* __restrict m,
                      float* __restrict v, float* __restrict vmax, int64_t n, const AdamCoefficients& c) {
  if (c.amsgrad) {
    for (int64_t i = 0; i < n; ++i) {
      const float pi = p[i] * c.decay_scale;
      const float gi = (kJac ? jac[i] * g[i] : g[i]) + c.weight_decay * pi;
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
  for (int64_t i = 0; i < n; ++i) {
    const float pi = p[i] * c.decay_scale;
    const float gi = (kJac ? jac[i] * g[i] : g[i]) + c.weight_decay * pi;
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = pi - c.step_size * (mi / (std::sqrt(vi) / c.sqrt_bias_correction2 + c.eps));
  }
}

// The buffers of one step, offset by the range functions.
struct Buffers {
  float* p;
  const float* g;
  float* m;
  float* v;
  float* vmax;
};

QL_INLINE Buffers at(const Buffers& b, int64_t i) {
  return {b.p + i, b.g + i, b.m + i, b.v + i, b.vmax ? b.vmax + i : nullptr};
}

using RangeFn = void (*)(const Buffers&, int64_t, int64_t, const AdamCoefficients&, const chunks::Args&);

QL_CLONES void plain_range(const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c,
                           const chunks::Args&) {
  const Buffers r = at(b, begin);
  update<false>(r.p, r.g, nullptr, r.m, r.v, r.vmax, end - begin, c);
}

// sigma_backward == 0: the operator's gradient is 0 (core::kernel::ana_backward fills zeros).
QL_CLONES void zero_gradient_range(const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c,
                                   const chunks::Args&) {
  float zeros[chunks::kChunk] = {};
  for (int64_t i = begin; i < end; i += chunks::kChunk) {
    const Buffers r = at(b, i);
    update<false>(r.p, zeros, nullptr, r.m, r.v, r.vmax, std::min(chunks::kChunk, end - i), c);
  }
}

// For a stair of T thresholds known at compile time (binary, ternary, 2-bit): the
// derivative inside update()'s loop, so the step is one loop over p, g and the moments as without
// the derivative (the chunked form costs a third more on a 10 M weight: p is read alone first).
template <NoiseFamily F, int T, bool kAmsgrad>
QL_INLINE void folded_fixed(const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c,
                            const chunks::Args& a) {
  float* __restrict p = b.p + begin;
  const float* __restrict g = b.g + begin;
  float* __restrict m = b.m + begin;
  float* __restrict v = b.v + begin;
  float* __restrict vmax = b.vmax ? b.vmax + begin : nullptr;
  const int64_t n = end - begin;
  const float mu = a.mu, inv = a.inv_sigma;
  float t[T], d[T];
  for (int k = 0; k < T; ++k) {
    t[k] = a.stair.thresholds[k];
    d[k] = a.stair.levels[k + 1] - a.stair.levels[k];
  }
  for (int64_t i = 0; i < n; ++i) {
    float jac = 0.0f;  // as chunks::derivative_chunk sums it
#pragma GCC unroll 4
    for (int k = 0; k < T; ++k) jac += d[k] * chunks::density<F>((p[i] - mu) - t[k], inv);
    const float pi = p[i] * c.decay_scale;
    const float gi = jac * g[i] + c.weight_decay * pi;
    const float mi = c.beta1 * m[i] + c.one_minus_beta1 * gi;
    const float vi = c.beta2 * v[i] + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float wi = vi;
    if constexpr (kAmsgrad) {
      wi = std::max(vmax[i], vi);
      vmax[i] = wi;
    }
    p[i] = pi - c.step_size * (mi / (std::sqrt(wi) / c.sqrt_bias_correction2 + c.eps));
  }
}

// a: the ANA backward's stair, mu and 1/sigma.
template <NoiseFamily F>
QL_INLINE void folded(const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c, const chunks::Args& a) {
  const bool ams = c.amsgrad;
  switch (a.stair.num_thresholds) {
    case 1:
      return ams ? folded_fixed<F, 1, true>(b, begin, end, c, a) : folded_fixed<F, 1, false>(b, begin, end, c, a);
    case 2:
      return ams ? folded_fixed<F, 2, true>(b, begin, end, c, a) : folded_fixed<F, 2, false>(b, begin, end, c, a);
    case 3:
      return ams ? folded_fixed<F, 3, true>(b, begin, end, c, a) : folded_fixed<F, 3, false>(b, begin, end, c, a);
    default:
      break;
  }
  float jac[chunks::kChunk];
  for (int64_t i = begin; i < end; i += chunks::kChunk) {
    const int64_t n = std::min(chunks::kChunk, end - i);
    const Buffers r = at(b, i);
    chunks::derivative_chunk<F>(a, r.p, jac, n);  // at p before update() writes it
    update<true>(r.p, r.g, jac, r.m, r.v, r.vmax, n, c);
  }
}

#define QL_FOLDED_RANGE(FAM, SUFFIX)                                                                      \
  QL_CLONES void folded_##SUFFIX(const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c, \
                                 const chunks::Args& a) {                                                 \
    folded<NoiseFamily::FAM>(b, begin, end, c, a);                                                        \
  }
QL_NOISE_FAMILIES(QL_FOLDED_RANGE)
#define QL_FOLDED_ENTRY(FAM, SUFFIX) folded_##SUFFIX,
const RangeFn kFolded[] = {QL_NOISE_FAMILIES(QL_FOLDED_ENTRY)};

// With the next forward: the update and then the operator's forward over each block of p while
// the block is still in cache (8 KB of p; the forward's chunks of 512 inside it).
constexpr int64_t kForwardBlock = 2048;

// Copies `bytes` with stores that bypass the cache where the destination is 16-byte aligned (as
// the layer's buffer is, and every thread's range of it), the last few bytes with memcpy: the
// quantized weight is read only by the next forward pass, and a weight too large for the cache
// would otherwise be read into it before being written (a third more traffic).
void stream_copy(char* __restrict dst, const char* __restrict src, int64_t bytes) {
#if defined(__x86_64__)
  int64_t i = 0;
  if (reinterpret_cast<uintptr_t>(dst) % 16 == 0) {
    for (; i + 16 <= bytes; i += 16)
      _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
  }
  std::memcpy(dst + i, src + i, static_cast<size_t>(bytes - i));
#else
  std::memcpy(dst, src, static_cast<size_t>(bytes));
#endif
}

void run_range(RangeFn fn, const Buffers& b, int64_t begin, int64_t end, const AdamCoefficients& c,
               const chunks::Args& a, const AnaForward* next) {
  if (next == nullptr) return fn(b, begin, end, c, a);
  const int64_t size = next->dtype == core::kernel::Dtype::kFloat32 ? 4 : 2;
  alignas(64) float block[kForwardBlock];  // the block's quantized values (bfloat16: its first half)
  for (int64_t i = begin; i < end; i += kForwardBlock) {
    const int64_t e = std::min(end, i + kForwardBlock);
    fn(b, i, e, c, a);
    core::kernel::ana_forward(b.p + i, block, next->dtype, e - i, next->stair, next->family, next->strategy, next->mu,
                              next->sigma, nullptr, 1);
    stream_copy(static_cast<char*>(next->y) + i * size, reinterpret_cast<const char*>(block), (e - i) * size);
  }
#if defined(__x86_64__)
  _mm_sfence();  // the streamed stores visible before the step returns
#endif
}

}  // namespace

void adam_step(float* p, const float* g, float* m, float* v, float* vmax, int64_t n, const AdamCoefficients& c,
               int num_threads, const AnaDerivative* ana, const AnaForward* next) {
  if (next != nullptr && next->strategy == core::ForwardStrategy::kRandom && next->sigma > 0.0f)
    throw std::invalid_argument("adam_step: the random strategy's forward cannot be computed ahead");
  const Buffers b{p, g, m, v, vmax};
  chunks::Args a{};
  RangeFn fn = plain_range;
  if (ana != nullptr) {
    // As core::kernel::ana_backward decides: a NaN spread gives NaN gradients (a broken noise
    // schedule shows as a diverged run), not the zero gradient of a spread of 0.
    const bool zero = ana->sigma <= 0.0f;
    fn = zero ? zero_gradient_range : kFolded[static_cast<int>(ana->family)];
    a.stair = ana->stair;
    a.mu = ana->mu;
    a.inv_sigma = zero ? 0.0f : 1.0f / ana->sigma;
  }
  if (n < kMinParallel || num_threads <= 1) {
    run_range(fn, b, 0, n, c, a, next);
    return;
  }
#pragma omp parallel num_threads(num_threads)
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    const int64_t per = ((n + nt - 1) / nt + kAlign - 1) / kAlign * kAlign;
    const int64_t begin = std::min(n, id * per);
    const int64_t end = std::min(n, begin + per);
    if (begin < end) run_range(fn, b, begin, end, c, a, next);
  }
}

}  // namespace quantlab::train::kernel
