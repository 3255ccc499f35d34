// Batch norm + ANA, fused (bn_ana_kernel.h). Each thread takes a range of rows and walks it in
// chunks of at most kChunk values (whole rows when a row is shorter, else pieces of one row), so a
// chunk's x, z and y stay in L1; the ANA arithmetic is the elementwise operator's (ana_chunks.h).
// Per-channel sums are kept in float over at most kFlushRows rows, then added up in double.
#include "quantlab/core/bn_ana_kernel.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ana_chunks.h"

namespace quantlab::core::kernel {
namespace {

using namespace chunks;  // NOLINT(google-build-using-namespace)

constexpr int64_t kMinParallel = 1 << 15;  // values; below this one thread
constexpr int64_t kFlushRows = 64;         // rows summed in float before the double totals

// The chunk and piece lambdas are inlined into the cloned range functions, so they are compiled
// for the clone's instruction set (a lambda left out of line would be baseline x86-64).
#define QL_LAMBDA_INLINE __attribute__((always_inline))

// Calls fn(begin, n) for the chunks of rows [r0, r1): flat ranges of at most kChunk values.
template <class Fn>
QL_INLINE void for_chunks(Matrix m, int64_t r0, int64_t r1, Fn&& fn) {
  const int64_t C = m.channels;
  if (C <= kChunk) {
    const int64_t per = kChunk / C;
    for (int64_t r = r0; r < r1; r += per) fn(r * C, std::min(per, r1 - r) * C);
  } else {
    for (int64_t r = r0; r < r1; ++r)
      for (int64_t c = 0; c < C; c += kChunk) fn(r * C + c, std::min(kChunk, C - c));
  }
}

// Calls fn(k, c, len) for the pieces of the flat range [begin, begin + n) that lie in one row:
// values k .. k + len of the chunk are channels c .. c + len.
template <class Fn>
QL_INLINE void for_pieces(Matrix m, int64_t begin, int64_t n, Fn&& fn) {
  int64_t c = begin % m.channels;
  for (int64_t k = 0; k < n;) {
    const int64_t len = std::min(n - k, m.channels - c);
    fn(k, c, len);
    k += len;
    c = 0;
  }
}

// Per-thread channel sums: float over a few rows, then double.
struct Sums {
  std::vector<float> part1, part2;
  std::vector<double> total1, total2;
  int64_t rows = 0;
  explicit Sums(int64_t channels) : part1(channels), part2(channels), total1(channels), total2(channels) {}
  void add_rows(int64_t n) {
    rows += n;
    if (rows >= kFlushRows) flush();
  }
  void flush() {
    for (size_t c = 0; c < part1.size(); ++c) {
      total1[c] += part1[c];
      total2[c] += part2[c];
      part1[c] = part2[c] = 0.0f;
    }
    rows = 0;
  }
};

// Rows of a chunk (a piece of one row counts when it ends the row).
QL_INLINE int64_t rows_ended(Matrix m, int64_t begin, int64_t n) {
  return (begin + n) / m.channels - begin / m.channels;
}

// Runs body(r0, r1, sums) on each thread's rows; returns the channel totals of all threads.
template <class Body>
void parallel_sums(Matrix m, int num_threads, std::vector<double>& t1, std::vector<double>& t2, Body&& body) {
  t1.assign(m.channels, 0.0);
  t2.assign(m.channels, 0.0);
  const int nt = m.rows * m.channels < kMinParallel ? 1 : std::max(1, num_threads);
  std::vector<Sums> all(nt, Sums(m.channels));
#pragma omp parallel num_threads(nt)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t per = (m.rows + n - 1) / n;
    const int64_t r0 = std::min(m.rows, id * per), r1 = std::min(m.rows, (id + 1) * per);
    Sums& s = all[id];
    if (r0 < r1) body(r0, r1, s);
    s.flush();
  }
  for (const Sums& s : all)
    for (int64_t c = 0; c < m.channels; ++c) {
      t1[c] += s.total1[c];
      t2[c] += s.total2[c];
    }
}

template <class Body>
void parallel_rows(Matrix m, int num_threads, Body&& body) {
  if (m.rows * m.channels < kMinParallel || num_threads <= 1) {
    body(int64_t{0}, m.rows);
    return;
  }
#pragma omp parallel num_threads(num_threads)
  {
    const int64_t n = omp_get_num_threads(), id = omp_get_thread_num();
    const int64_t per = (m.rows + n - 1) / n;
    const int64_t r0 = std::min(m.rows, id * per), r1 = std::min(m.rows, (id + 1) * per);
    if (r0 < r1) body(r0, r1);
  }
}

// Statistics in one pass: the sums of d and d^2 with d = x - shift[c], the shift being the first
// row's value, so that the variance does not come from the difference of two large sums.
QL_CLONES void sum_range(const void* x, Dtype xt, Matrix m, const float* shift, int64_t r0, int64_t r1, Sums& s) {
  float buf[kChunk];
  for_chunks(m, r0, r1, [&](int64_t b, int64_t n) QL_LAMBDA_INLINE {
    const float* v_all = load(x, xt, b, n, buf);
    for_pieces(m, b, n, [&](int64_t k, int64_t c, int64_t len) QL_LAMBDA_INLINE {
      float* __restrict s1 = s.part1.data() + c;
      float* __restrict s2 = s.part2.data() + c;
      const float* __restrict v = v_all + k;
      const float* __restrict k0 = shift + c;
      for (int64_t j = 0; j < len; ++j) {
        const float d = v[j] - k0[j];
        s1[j] += d;
        s2[j] += d * d;
      }
    });
    s.add_rows(rows_ended(m, b, n));
  });
}

struct ForwardArgs {
  const void* x;
  Dtype xt;
  void* y;
  Dtype yt;
  Matrix m;
  const float* scale;
  const float* shift;
  const float* uniform;
  Stair stair;
  float mu, inv_sigma;
};

// z = x scale + shift over a chunk, from the float values v.
QL_INLINE void affine(Matrix m, int64_t b, int64_t n, const float* v, const float* scale, const float* shift,
                      float* z) {
  for_pieces(m, b, n, [&](int64_t k, int64_t c, int64_t len) QL_LAMBDA_INLINE {
    const float* __restrict vk = v + k;
    const float* __restrict sc = scale + c;
    const float* __restrict sh = shift + c;
    float* __restrict zk = z + k;
    for (int64_t j = 0; j < len; ++j) zk[j] = vk[j] * sc[j] + sh[j];
  });
}

using ForwardRange = void (*)(const ForwardArgs&, int64_t, int64_t);

#define QL_BN_FORWARD(NAME, CHUNK)                                                                  \
  QL_CLONES void NAME(const ForwardArgs& f, int64_t r0, int64_t r1) {                               \
    float vbuf[kChunk], z[kChunk], ybuf[kChunk];                                                    \
    for_chunks(f.m, r0, r1, [&](int64_t b, int64_t n) QL_LAMBDA_INLINE {                            \
      const float* v = load(f.x, f.xt, b, n, vbuf);                                                 \
      affine(f.m, b, n, v, f.scale, f.shift, z);                                                    \
      float* y = output(f.y, f.yt, b, ybuf);                                                        \
      const Args a{z, y, nullptr, f.uniform ? f.uniform + b : nullptr, f.stair, f.mu, f.inv_sigma}; \
      CHUNK(a, 0, n);                                                                               \
      store(f.y, f.yt, b, n, ybuf);                                                                 \
    });                                                                                             \
  }

#define QL_BN_FORWARDS_FOR(FAM, SUFFIX)                                       \
  QL_BN_FORWARD(bn_expectation_##SUFFIX, expectation_chunk<NoiseFamily::FAM>) \
  QL_BN_FORWARD(bn_mode_##SUFFIX, mode_chunk<NoiseFamily::FAM>)               \
  QL_BN_FORWARD(bn_random_##SUFFIX, random_chunk<NoiseFamily::FAM>)

QL_BN_FORWARD(bn_hard, hard_chunk)
QL_NOISE_FAMILIES(QL_BN_FORWARDS_FOR)

#define QL_BN_FORWARD_ROW(FAM, SUFFIX) {bn_expectation_##SUFFIX, bn_mode_##SUFFIX, bn_random_##SUFFIX},
const ForwardRange kBnForward[][3] = {QL_NOISE_FAMILIES(QL_BN_FORWARD_ROW)};

struct BackwardArgs {
  const void* x;
  Dtype xt;
  const void* gy;
  Dtype gyt;
  Matrix m;
  const float* scale;  // gamma invstd
  const float* shift;  // beta - mean gamma invstd
  const float* mean;
  const float* invstd;
  Stair stair;
  float mu, inv_sigma;
  // Pass 2: gx = ka gz - kb xhat - kc.
  void* gx;
  Dtype gxt;
  const float *ka, *kb, *kc;
};

// Pass 1 (gx == nullptr): the channel sums of gz and gz xhat. Pass 2: gx.
#define QL_BN_BACKWARD(NAME, CHUNK)                                                       \
  QL_CLONES void NAME(const BackwardArgs& f, int64_t r0, int64_t r1, Sums* s) {           \
    float vbuf[kChunk], z[kChunk], gbuf[kChunk], gz[kChunk], xbuf[kChunk];                \
    for_chunks(f.m, r0, r1, [&](int64_t b, int64_t n) QL_LAMBDA_INLINE {                  \
      const float* v = load(f.x, f.xt, b, n, vbuf);                                       \
      affine(f.m, b, n, v, f.scale, f.shift, z);                                          \
      const float* g = load(f.gy, f.gyt, b, n, gbuf);                                     \
      const Args a{z, gz, g, nullptr, f.stair, f.mu, f.inv_sigma};                        \
      CHUNK(a, 0, n);                                                                     \
      if (s != nullptr) {                                                                 \
        for_pieces(f.m, b, n, [&](int64_t k, int64_t c, int64_t len) QL_LAMBDA_INLINE {   \
          float* __restrict s1 = s->part1.data() + c;                                     \
          float* __restrict s2 = s->part2.data() + c;                                     \
          const float* __restrict mean = f.mean + c;                                      \
          const float* __restrict inv = f.invstd + c;                                     \
          for (int64_t j = 0; j < len; ++j) {                                             \
            s1[j] += gz[k + j];                                                           \
            s2[j] += gz[k + j] * ((v[k + j] - mean[j]) * inv[j]);                         \
          }                                                                               \
        });                                                                               \
        s->add_rows(rows_ended(f.m, b, n));                                               \
      } else {                                                                            \
        float* gx = output(f.gx, f.gxt, b, xbuf);                                         \
        for_pieces(f.m, b, n, [&](int64_t k, int64_t c, int64_t len) QL_LAMBDA_INLINE {   \
          const float* __restrict ka = f.ka + c;                                          \
          const float* __restrict kb = f.kb + c;                                          \
          const float* __restrict kc = f.kc + c;                                          \
          const float* __restrict mean = f.mean + c;                                      \
          const float* __restrict inv = f.invstd + c;                                     \
          float* __restrict out = gx + k;                                                 \
          for (int64_t j = 0; j < len; ++j)                                               \
            out[j] = ka[j] * gz[k + j] - kb[j] * ((v[k + j] - mean[j]) * inv[j]) - kc[j]; \
        });                                                                               \
        store(f.gx, f.gxt, b, n, xbuf);                                                   \
      }                                                                                   \
    });                                                                                   \
  }

using BackwardRange = void (*)(const BackwardArgs&, int64_t, int64_t, Sums*);
#define QL_BN_BACKWARD_FOR(FAM, SUFFIX) QL_BN_BACKWARD(bn_backward_##SUFFIX, backward_chunk<NoiseFamily::FAM>)
QL_NOISE_FAMILIES(QL_BN_BACKWARD_FOR)
#define QL_BN_BACKWARD_ENTRY(FAM, SUFFIX) bn_backward_##SUFFIX,
const BackwardRange kBnBackward[] = {QL_NOISE_FAMILIES(QL_BN_BACKWARD_ENTRY)};

}  // namespace

void bn_stats(const void* x, Dtype xt, Matrix m, float* mean, float* var, int num_threads) {
  std::vector<float> first(m.channels), buf(m.channels);
  const float* row0 = load(x, xt, 0, m.channels, buf.data());
  std::copy(row0, row0 + m.channels, first.begin());
  std::vector<double> t1, t2;
  parallel_sums(m, num_threads, t1, t2,
                [&](int64_t r0, int64_t r1, Sums& s) { sum_range(x, xt, m, first.data(), r0, r1, s); });
  const auto rows = static_cast<double>(m.rows);
  for (int64_t c = 0; c < m.channels; ++c) {
    const double d = t1[c] / rows;
    mean[c] = static_cast<float>(first[c] + d);
    var[c] = static_cast<float>(std::max(0.0, t2[c] / rows - d * d));
  }
}

void bn_ana_forward(const void* x, Dtype xt, void* y, Dtype yt, Matrix m, const float* scale, const float* shift,
                    const Stair& stair, NoiseFamily family, ForwardStrategy strategy, float mu, float sigma,
                    const float* uniform, int num_threads) {
  const ForwardArgs f{x, xt, y, yt, m, scale, shift, uniform, stair, mu, sigma > 0.0f ? 1.0f / sigma : 0.0f};
  const ForwardRange fn = sigma > 0.0f ? kBnForward[static_cast<int>(family)][static_cast<int>(strategy)] : bn_hard;
  parallel_rows(m, num_threads, [&](int64_t r0, int64_t r1) { fn(f, r0, r1); });
}

void bn_ana_backward(const void* x, Dtype xt, const void* gy, Dtype gyt, void* gx, Dtype gxt, Matrix m,
                     const float* mean, const float* invstd, const float* gamma, const float* beta, const Stair& stair,
                     NoiseFamily family, float mu, float sigma, float* grad_gamma, float* grad_beta, int num_threads) {
  const int64_t C = m.channels;
  std::vector<float> scale(C), shift(C), ka(C), kb(C), kc(C);
  for (int64_t c = 0; c < C; ++c) {
    scale[c] = gamma[c] * invstd[c];
    shift[c] = beta[c] - mean[c] * scale[c];
  }
  if (sigma <= 0.0f) {  // ANA' = 0: no gradient reaches x, gamma or beta
    std::fill(grad_gamma, grad_gamma + C, 0.0f);
    std::fill(grad_beta, grad_beta + C, 0.0f);
    const size_t n = static_cast<size_t>(m.rows * C);
    std::memset(gx, 0, n * (gxt == Dtype::kFloat32 ? sizeof(float) : sizeof(uint16_t)));  // +0 in both types
    return;
  }
  BackwardArgs f{x,     xt, gy,           gyt,     m,   scale.data(), shift.data(), mean,   invstd,
                 stair, mu, 1.0f / sigma, nullptr, gxt, nullptr,      nullptr,      nullptr};
  const BackwardRange fn = kBnBackward[static_cast<int>(family)];
  std::vector<double> s1, s2;
  parallel_sums(m, num_threads, s1, s2, [&](int64_t r0, int64_t r1, Sums& s) { fn(f, r0, r1, &s); });
  const auto rows = static_cast<double>(m.rows);
  for (int64_t c = 0; c < C; ++c) {
    grad_beta[c] = static_cast<float>(s1[c]);
    grad_gamma[c] = static_cast<float>(s2[c]);
    const double k = static_cast<double>(gamma[c]) * invstd[c];
    ka[c] = static_cast<float>(k);
    kb[c] = static_cast<float>(k * s2[c] / rows);
    kc[c] = static_cast<float>(k * s1[c] / rows);
  }
  f.gx = gx;
  f.ka = ka.data();
  f.kb = kb.data();
  f.kc = kc.data();
  parallel_rows(m, num_threads, [&](int64_t r0, int64_t r1) { fn(f, r0, r1, nullptr); });
}

}  // namespace quantlab::core::kernel
