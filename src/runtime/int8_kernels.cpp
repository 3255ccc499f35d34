// The integer runtime's dot-product kernels, picked once from what the CPU supports.
#include "quantlab/runtime/int8_kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <cstring>

namespace quantlab::runtime::kernels {
namespace {

// Dot products of uint8 activations and int8 weights, summed in int32: AVX-512 VNNI (64 products
// per instruction), AVX2 (16 per instruction through 16-bit multiply-adds, without saturation), or
// plain loops; picked once from what the CPU supports.
using DotFn = int32_t (*)(const uint8_t*, const int8_t*, int64_t);

int32_t dot_plain(const uint8_t* a, const int8_t* b, int64_t n) {
  int32_t acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += static_cast<int32_t>(a[i]) * static_cast<int32_t>(b[i]);
  return acc;
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) int32_t dot_avx2(const uint8_t* a, const int8_t* b, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i x = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i)));
    const __m256i w = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + i)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, w));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  int32_t sum = 0;
  for (int32_t v : lanes) sum += v;
  return sum + dot_plain(a + i, b + i, n - i);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) int32_t dot_vnni(const uint8_t* a, const int8_t* b, int64_t n) {
  __m512i acc = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 64 <= n; i += 64) acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i));
  return _mm512_reduce_add_epi32(acc) + dot_plain(a + i, b + i, n - i);
}
#endif

// Four dot products with one weight row, n a multiple of 64 (rows are padded with zero weights):
// the weights are loaded once for four inputs.
using Dot4Fn = void (*)(const uint8_t* const* x, const int8_t* w, int64_t n, int32_t* out);

void dot4_plain(const uint8_t* const* x, const int8_t* w, int64_t n, int32_t* out) {
  for (int k = 0; k < 4; ++k) out[k] = dot_plain(x[k], w, n);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx2"))) void dot4_avx2(const uint8_t* const* x, const int8_t* w, int64_t n, int32_t* out) {
  for (int k = 0; k < 4; ++k) out[k] = dot_avx2(x[k], w, n);
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) void dot4_vnni(const uint8_t* const* x, const int8_t* w,
                                                                      int64_t n, int32_t* out) {
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
  for (int64_t i = 0; i < n; i += 64) {
    const __m512i wv = _mm512_loadu_si512(w + i);
    a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(x[0] + i), wv);
    a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(x[1] + i), wv);
    a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(x[2] + i), wv);
    a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(x[3] + i), wv);
  }
  out[0] = _mm512_reduce_add_epi32(a0), out[1] = _mm512_reduce_add_epi32(a1);
  out[2] = _mm512_reduce_add_epi32(a2), out[3] = _mm512_reduce_add_epi32(a3);
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void blocked_vnni(const int8_t* blocked, int64_t in4,
                                                                         int64_t out16, const uint8_t* const* x,
                                                                         int32_t* const* y) {
  for (int64_t ob = 0; ob < out16; ++ob) {
    __m512i acc[kImages];
    for (auto& a : acc) a = _mm512_setzero_si512();
    const int8_t* w = blocked + ob * in4 * 4 * kLanes;
    for (int64_t i = 0; i < in4; ++i) {
      const __m512i wv = _mm512_loadu_si512(w + i * 4 * kLanes);
      for (int64_t b = 0; b < kImages; ++b) {
        int32_t four;
        std::memcpy(&four, x[b] + i * 4, 4);
        acc[b] = _mm512_dpbusd_epi32(acc[b], _mm512_set1_epi32(four), wv);
      }
    }
    for (int64_t b = 0; b < kImages; ++b) _mm512_storeu_si512(y[b] + ob * kLanes, acc[b]);
  }
}
#endif

}  // namespace

void blocked_products_reference(const int8_t* blocked, int64_t in4, int64_t out16, const uint8_t* const* x,
                                int32_t* const* y) {
  for (int64_t ob = 0; ob < out16; ++ob)
    for (int64_t b = 0; b < kImages; ++b)
      for (int64_t lane = 0; lane < kLanes; ++lane) {
        int32_t acc = 0;
        for (int64_t i = 0; i < in4 * 4; ++i)
          acc += static_cast<int32_t>(x[b][i]) * blocked[((ob * in4 + i / 4) * kLanes + lane) * 4 + i % 4];
        y[b][ob * kLanes + lane] = acc;
      }
}

namespace {

bool cpu_has_vnni() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

Dot4Fn pick_dot4() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return dot4_vnni;
  if (__builtin_cpu_supports("avx2")) return dot4_avx2;
#endif
  return dot4_plain;
}

DotFn pick_dot() {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return dot_vnni;
  if (__builtin_cpu_supports("avx2")) return dot_avx2;
#endif
  return dot_plain;
}

const DotFn picked_dot = pick_dot();
const Dot4Fn picked_dot4 = pick_dot4();

const bool vnni = cpu_has_vnni();

}  // namespace

int32_t dot_u8(const uint8_t* a, const int8_t* b, int64_t n) { return picked_dot(a, b, n); }

void dot4_u8(const uint8_t* const* x, const int8_t* w, int64_t n, int32_t* out) { picked_dot4(x, w, n, out); }

namespace {
template <typename W>
double dot_double(const double* a, const W* b, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}
}  // namespace

double dot_f(const double* a, const int8_t* b, int64_t n) { return dot_double(a, b, n); }

double dot_f(const double* a, const float* b, int64_t n) { return dot_double(a, b, n); }

bool have_vnni() { return vnni; }

void blocked_products(const int8_t* blocked, int64_t in4, int64_t out16, const uint8_t* const* x, int32_t* const* y) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (vnni) {
    blocked_vnni(blocked, in4, out16, x, y);
    return;
  }
#endif
  blocked_products_reference(blocked, in4, out16, x, y);
}

std::vector<int8_t> block_weights(const int8_t* w, int64_t out, int64_t row) {
  const int64_t in4 = (row + 3) / 4, out16 = (out + kLanes - 1) / kLanes;
  std::vector<int8_t> blocked(static_cast<size_t>(out16 * in4 * 4 * kLanes), 0);
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < row; ++i)
      blocked[static_cast<size_t>((((o / kLanes) * in4 + i / 4) * kLanes + o % kLanes) * 4 + i % 4)] = w[o * row + i];
  return blocked;
}

int64_t padded_row(int64_t n) { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }

}  // namespace quantlab::runtime::kernels
