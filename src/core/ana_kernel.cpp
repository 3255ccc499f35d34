// Fused ANA kernels: the loops of docs/ANA.md §2 over raw float buffers.
// Each element is read once per call; thresholds are looped over inside a cache-resident chunk, so
// memory traffic and scratch space do not grow with the number of levels. The range functions are
// compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (GCC target_clones).
// The noise families' formulas are in core/noise_math.h; to add a family, a row in the tables below.
#include "quantlab/core/ana_kernel.h"

#include "quantlab/core/noise_math.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

namespace quantlab::core::kernel {
namespace {

constexpr int64_t kChunk = 512;            // floats per chunk: stays in L1 with its scratch
constexpr int64_t kMinParallel = 1 << 15;  // below this, threads cost more than they save

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define QL_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QL_CLONES
#endif
#define QL_INLINE inline __attribute__((always_inline))

using noise_math::cdf;
using noise_math::density;

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

template <NoiseFamily F>
QL_INLINE void backward_chunk(const Args& a, int64_t c, int64_t m) {
  const float* __restrict x = a.x + c;
  const float mu = a.mu, inv = a.inv_sigma;
  const float* __restrict gy = a.gy + c;
  float* __restrict gx = a.y + c;
  for (int64_t j = 0; j < m; ++j) gx[j] = 0.0f;
  for (int i = 0; i < a.stair.num_thresholds; ++i) {
    const float t = a.stair.thresholds[i];
    const float d = a.stair.levels[i + 1] - a.stair.levels[i];
    for (int64_t j = 0; j < m; ++j) gx[j] += d * density<F>((x[j] - mu) - t, inv);
  }
  for (int64_t j = 0; j < m; ++j) gx[j] *= gy[j];
}

using RangeFn = void (*)(const Args&, int64_t, int64_t);

#define QL_RANGE(NAME, CHUNK)                                                             \
  QL_CLONES void NAME(const Args& a, int64_t begin, int64_t end) {                        \
    for (int64_t c = begin; c < end; c += kChunk) CHUNK(a, c, std::min(kChunk, end - c)); \
  }
// The ranges of every noise family (QL_NOISE_FAMILIES), and their table.
#define QL_RANGES_FOR(FAM, SUFFIX)                                    \
  QL_RANGE(expectation_##SUFFIX, expectation_chunk<NoiseFamily::FAM>) \
  QL_RANGE(mode_##SUFFIX, mode_chunk<NoiseFamily::FAM>)               \
  QL_RANGE(random_##SUFFIX, random_chunk<NoiseFamily::FAM>)           \
  QL_RANGE(backward_##SUFFIX, backward_chunk<NoiseFamily::FAM>)

QL_RANGE(hard_range, hard_chunk)
QL_NOISE_FAMILIES(QL_RANGES_FOR)

// [family][strategy]; rows follow NoiseFamily, columns ForwardStrategy.
#define QL_FORWARD_ROW(FAM, SUFFIX) {expectation_##SUFFIX, mode_##SUFFIX, random_##SUFFIX},
#define QL_BACKWARD_ENTRY(FAM, SUFFIX) backward_##SUFFIX,
const RangeFn kForward[][3] = {QL_NOISE_FAMILIES(QL_FORWARD_ROW)};
const RangeFn kBackward[] = {QL_NOISE_FAMILIES(QL_BACKWARD_ENTRY)};

// Splits [0, n) into chunk-aligned ranges, one per thread.
void run_parallel(RangeFn fn, const Args& a, int64_t n, int num_threads) {
  if (n < kMinParallel || num_threads <= 1) {
    fn(a, 0, n);
    return;
  }
  const int64_t chunks = (n + kChunk - 1) / kChunk;
#pragma omp parallel num_threads(num_threads)
  {
    const int64_t nt = omp_get_num_threads();
    const int64_t id = omp_get_thread_num();
    const int64_t per = (chunks + nt - 1) / nt;
    const int64_t begin = std::min(n, id * per * kChunk);
    const int64_t end = std::min(n, (id + 1) * per * kChunk);
    if (begin < end) fn(a, begin, end);
  }
}

}  // namespace

void ana_forward(const float* x, float* y, int64_t n, const Stair& stair, NoiseFamily family, ForwardStrategy strategy,
                 float mu, float sigma, const float* uniform, int num_threads) {
  Args a{x, y, nullptr, uniform, stair, mu, sigma > 0.0f ? 1.0f / sigma : 0.0f};
  const RangeFn fn = sigma > 0.0f ? kForward[static_cast<int>(family)][static_cast<int>(strategy)] : hard_range;
  run_parallel(fn, a, n, num_threads);
}

void ana_backward(const float* x, const float* gy, float* gx, int64_t n, const Stair& stair, NoiseFamily family,
                  float mu, float sigma, int num_threads) {
  if (sigma <= 0.0f) {
    std::fill(gx, gx + n, 0.0f);
    return;
  }
  Args a{x, gx, gy, nullptr, stair, mu, 1.0f / sigma};
  run_parallel(kBackward[static_cast<int>(family)], a, n, num_threads);
}

}  // namespace quantlab::core::kernel
