// Fused ANA kernels: the loops of docs/ANA.md §2 over raw float buffers.
// Each element is read once per call; thresholds are looped over inside a cache-resident chunk, so
// memory traffic and scratch space do not grow with the number of levels. The range functions are
// compiled for AVX-512, AVX2 and baseline x86-64 and picked at load time (GCC target_clones).
// The noise families' formulas are in core/noise_math.h; to add a family, a row in the tables below.
#include "quantlab/core/ana_kernel.h"

#include "ana_chunks.h"

#include <omp.h>

#include <algorithm>
#include <cmath>

namespace quantlab::core::kernel {
namespace {

using namespace chunks;  // NOLINT(google-build-using-namespace)

constexpr int64_t kMinParallel = 1 << 15;  // below this, threads cost more than they save

using RangeFn = void (*)(const Args&, int64_t, int64_t);

#define QL_RANGE(NAME, CHUNK)                                                             \
  QL_CLONES void NAME(const Args& a, int64_t begin, int64_t end) {                        \
    for (int64_t c = begin; c < end; c += kChunk) CHUNK(a, c, std::min(kChunk, end - c)); \
  }
// bfloat16 output (forward) or incoming gradient (backward): a.y / a.gy hold the bfloat16 buffer
// (uint16_t); each chunk is computed through a float32 buffer on the stack.
#define QL_RANGE_BF16_OUT(NAME, CHUNK)                                                                      \
  QL_CLONES void NAME(const Args& a, int64_t begin, int64_t end) {                                          \
    float buf[kChunk];                                                                                      \
    for (int64_t c = begin; c < end; c += kChunk) {                                                         \
      const int64_t m = std::min(kChunk, end - c);                                                          \
      const Args b{a.x + c, buf, nullptr, a.uniform ? a.uniform + c : nullptr, a.stair, a.mu, a.inv_sigma}; \
      CHUNK(b, 0, m);                                                                                       \
      store(a.y, Dtype::kBFloat16, c, m, buf);                                                              \
    }                                                                                                       \
  }
#define QL_RANGE_BF16_GRAD(NAME, CHUNK)                                        \
  QL_CLONES void NAME(const Args& a, int64_t begin, int64_t end) {             \
    float buf[kChunk];                                                         \
    for (int64_t c = begin; c < end; c += kChunk) {                            \
      const int64_t m = std::min(kChunk, end - c);                             \
      const float* gy = load(a.gy, Dtype::kBFloat16, c, m, buf);               \
      const Args b{a.x + c, a.y + c, gy, nullptr, a.stair, a.mu, a.inv_sigma}; \
      CHUNK(b, 0, m);                                                          \
    }                                                                          \
  }
// The ranges of every noise family (QL_NOISE_FAMILIES), float32 and bfloat16, and their tables.
#define QL_RANGES_FOR(FAM, SUFFIX)                                                  \
  QL_RANGE(expectation_##SUFFIX, expectation_chunk<NoiseFamily::FAM>)               \
  QL_RANGE(mode_##SUFFIX, mode_chunk<NoiseFamily::FAM>)                             \
  QL_RANGE(random_##SUFFIX, random_chunk<NoiseFamily::FAM>)                         \
  QL_RANGE(backward_##SUFFIX, backward_chunk<NoiseFamily::FAM>)                     \
  QL_RANGE_BF16_OUT(expectation_bf16_##SUFFIX, expectation_chunk<NoiseFamily::FAM>) \
  QL_RANGE_BF16_OUT(mode_bf16_##SUFFIX, mode_chunk<NoiseFamily::FAM>)               \
  QL_RANGE_BF16_OUT(random_bf16_##SUFFIX, random_chunk<NoiseFamily::FAM>)           \
  QL_RANGE_BF16_GRAD(backward_bf16_##SUFFIX, backward_chunk<NoiseFamily::FAM>)

QL_RANGE(hard_range, hard_chunk)
QL_RANGE_BF16_OUT(hard_bf16_range, hard_chunk)
QL_NOISE_FAMILIES(QL_RANGES_FOR)

// [family][strategy]; rows follow NoiseFamily, columns ForwardStrategy.
#define QL_FORWARD_ROW(FAM, SUFFIX) {expectation_##SUFFIX, mode_##SUFFIX, random_##SUFFIX},
#define QL_BACKWARD_ENTRY(FAM, SUFFIX) backward_##SUFFIX,
const RangeFn kForward[][3] = {QL_NOISE_FAMILIES(QL_FORWARD_ROW)};
const RangeFn kBackward[] = {QL_NOISE_FAMILIES(QL_BACKWARD_ENTRY)};
#define QL_FORWARD_BF16_ROW(FAM, SUFFIX) {expectation_bf16_##SUFFIX, mode_bf16_##SUFFIX, random_bf16_##SUFFIX},
#define QL_BACKWARD_BF16_ENTRY(FAM, SUFFIX) backward_bf16_##SUFFIX,
const RangeFn kForwardBf16[][3] = {QL_NOISE_FAMILIES(QL_FORWARD_BF16_ROW)};
const RangeFn kBackwardBf16[] = {QL_NOISE_FAMILIES(QL_BACKWARD_BF16_ENTRY)};

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

void ana_forward(const float* x, void* y, Dtype yt, int64_t n, const Stair& stair, NoiseFamily family,
                 ForwardStrategy strategy, float mu, float sigma, const float* uniform, int num_threads) {
  if (yt == Dtype::kFloat32)
    return ana_forward(x, static_cast<float*>(y), n, stair, family, strategy, mu, sigma, uniform, num_threads);
  // Args carries float pointers; the bfloat16 ranges read y as uint16_t (store()).
  Args a{x, static_cast<float*>(y), nullptr, uniform, stair, mu, sigma > 0.0f ? 1.0f / sigma : 0.0f};
  const RangeFn fn =
      sigma > 0.0f ? kForwardBf16[static_cast<int>(family)][static_cast<int>(strategy)] : hard_bf16_range;
  run_parallel(fn, a, n, num_threads);
}

void ana_backward(const float* x, const void* gy, Dtype gyt, float* gx, int64_t n, const Stair& stair,
                  NoiseFamily family, float mu, float sigma, int num_threads) {
  if (gyt == Dtype::kFloat32)
    return ana_backward(x, static_cast<const float*>(gy), gx, n, stair, family, mu, sigma, num_threads);
  if (sigma <= 0.0f) {
    std::fill(gx, gx + n, 0.0f);
    return;
  }
  Args a{x, gx, static_cast<const float*>(gy), nullptr, stair, mu, 1.0f / sigma};
  run_parallel(kBackwardBf16[static_cast<int>(family)], a, n, num_threads);
}

}  // namespace quantlab::core::kernel
