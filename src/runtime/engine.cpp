// The integer runtime's layers. Activations travel as uint8 with a zero point (pixels: 0; levels:
// level + 128), weights as int8; a layer's accumulator is the uint8 x int8 dot product minus the
// zero point times the weights' row sum.
#include "quantlab/runtime/engine.h"

#include <omp.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "quantlab/util/error.h"

namespace quantlab::runtime {
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

// Linear layers on AVX-512 VNNI: weights laid out so one instruction multiplies 4 inputs of one
// image by the 4 matching weights of 16 outputs ([out/16][in/4][16][4]), and 8 images share every
// weight load; outputs stay in the lanes, so nothing needs adding up across lanes at the end.
constexpr int64_t kLanes = 16, kImages = 8;

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void linear_vnni(const int8_t* blocked, int64_t in4,
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

bool have_vnni() {
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

const DotFn dot_u8 = pick_dot();
const Dot4Fn dot4_u8 = pick_dot4();
const bool kVnni = have_vnni();

constexpr int64_t kRowAlign = 64;  // linear layers' weight rows are padded to this many bytes
int64_t padded_row(int64_t n) { return (n + kRowAlign - 1) / kRowAlign * kRowAlign; }

constexpr int kLevelZero = 128;  // levels travel as uint8: level + 128

double dot_f(const double* a, const int8_t* b, int64_t n) {
  double acc = 0;
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

// What flows between layers: channels x height x width values of one kind.
struct Value {
  enum class Kind { kBytes, kAcc, kFloat } kind = Kind::kBytes;
  int64_t c = 0, h = 1, w = 1;
  std::vector<uint8_t> u8;  // pixels (zero 0) or levels (zero 128)
  int zero = 0;
  std::vector<int32_t> i32;  // accumulators
  std::vector<double> f;     // floats
  int64_t size() const { return c * h * w; }
};

// Patches of a C x H x W input for a k x k kernel: one row of C/g * k * k values per output
// position and group (rows `row_stride` apart, at least that long), `fill` for the padding, and
// `extra_rows` rows of `fill` at the end.
template <typename T>
void im2col(const T* x, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad, int64_t g, int64_t oh,
            int64_t ow, T fill, std::vector<T>& cols, int64_t row_stride = 0, int64_t extra_rows = 0) {
  const int64_t cg = c / g, row = row_stride > 0 ? row_stride : cg * k * k;
  cols.assign(static_cast<size_t>((g * oh * ow + extra_rows) * row), fill);
  for (int64_t gi = 0; gi < g; ++gi)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        T* dst = cols.data() + ((gi * oh + oy) * ow + ox) * row;
        const int64_t x0 = ox * stride - pad;
        const bool inside = x0 >= 0 && x0 + k <= w;  // no padding columns: copy k values as they are
        for (int64_t ci = 0; ci < cg; ++ci)
          for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t y = oy * stride - pad + ky;
            if (y < 0 || y >= h) continue;
            const T* line = x + ((gi * cg + ci) * h + y) * w;
            T* d = dst + (ci * k + ky) * k;
            if (inside) {
              for (int64_t kx = 0; kx < k; ++kx) d[kx] = line[x0 + kx];
            } else {
              for (int64_t kx = 0; kx < k; ++kx)
                if (x0 + kx >= 0 && x0 + kx < w) d[kx] = line[x0 + kx];
            }
          }
      }
}

// `blocked`: the weights in linear_vnni's layout, for an integer convolution of one group on a
// VNNI CPU (the output positions then take the place of linear_vnni's images); else empty.
void conv_or_linear(const Layer& l, const std::vector<int32_t>& row_sums, const std::vector<int8_t>& blocked,
                    const Value& in, Value& out) {
  const bool conv = l.kind == LayerKind::kConv;
  const int64_t oh = conv ? (in.h + 2 * l.pad - l.kernel) / l.stride + 1 : 1;
  const int64_t ow = conv ? (in.w + 2 * l.pad - l.kernel) / l.stride + 1 : 1;
  const int64_t g = l.groups, cg = l.in / g, og = l.out / g, row = cg * l.kernel * l.kernel;
  out.c = l.out, out.h = oh, out.w = ow;
  const int64_t positions = oh * ow;
  if (in.kind == Value::Kind::kFloat) {
    out.kind = Value::Kind::kFloat;
    out.f.assign(static_cast<size_t>(out.size()), 0.0);
    std::vector<double> cols;
    if (conv) im2col(in.f.data(), in.c, in.h, in.w, l.kernel, l.stride, l.pad, g, oh, ow, 0.0, cols);
    const double* patches = conv ? cols.data() : in.f.data();
    for (int64_t o = 0; o < l.out; ++o) {
      const int64_t gi = o / og;
      for (int64_t p = 0; p < positions; ++p)
        out.f[static_cast<size_t>(o * positions + p)] =
            l.weight_step * dot_f(patches + (gi * positions + p) * row, l.weights.data() + o * row, row);
    }
    return;
  }
  out.kind = Value::Kind::kAcc;
  out.i32.assign(static_cast<size_t>(out.size()), 0);
  std::vector<uint8_t> cols;  // padding with the zero point: a real 0
#if defined(__x86_64__) && defined(__GNUC__)
  if (conv && !blocked.empty()) {
    // Rows padded to whole groups of 4 (against zero weights) and positions to whole blocks.
    const int64_t in4 = (row + 3) / 4, out16 = (l.out + kLanes - 1) / kLanes, stride = in4 * 4;
    const int64_t blocks = (positions + kImages - 1) / kImages;
    im2col(in.u8.data(), in.c, in.h, in.w, l.kernel, l.stride, l.pad, g, oh, ow, static_cast<uint8_t>(in.zero), cols,
           stride, blocks * kImages - positions);
    const std::vector<uint8_t>& x = cols;
    std::vector<int32_t> acc(static_cast<size_t>(blocks * kImages * out16 * kLanes));
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t* xp[kImages];
      int32_t* yp[kImages];
      for (int64_t k = 0; k < kImages; ++k) {
        xp[k] = x.data() + (b * kImages + k) * stride;
        yp[k] = acc.data() + (b * kImages + k) * out16 * kLanes;
      }
      linear_vnni(blocked.data(), in4, out16, xp, yp);
    }
    for (int64_t o = 0; o < l.out; ++o) {
      const int32_t correction = in.zero * row_sums[static_cast<size_t>(o)];
      int32_t* y = out.i32.data() + o * positions;
      for (int64_t p = 0; p < positions; ++p) y[p] = acc[static_cast<size_t>(p * out16 * kLanes + o)] - correction;
    }
    return;
  }
#else
  (void)blocked;
#endif
  if (conv)
    im2col(in.u8.data(), in.c, in.h, in.w, l.kernel, l.stride, l.pad, g, oh, ow, static_cast<uint8_t>(in.zero), cols);
  const uint8_t* patches = conv ? cols.data() : in.u8.data();
  for (int64_t o = 0; o < l.out; ++o) {
    const int32_t correction = in.zero * row_sums[static_cast<size_t>(o)];
    const int8_t* w = l.weights.data() + o * row;
    const uint8_t* base = patches + (o / og) * positions * row;
    int32_t* y = out.i32.data() + o * positions;
    for (int64_t p = 0; p < positions; ++p) y[p] = dot_u8(base + p * row, w, row) - correction;
  }
}

template <typename T>
void max_pool(const std::vector<T>& x, int64_t c, int64_t h, int64_t w, int64_t k, int64_t s, std::vector<T>& y,
              int64_t& oh, int64_t& ow) {
  oh = (h - k) / s + 1, ow = (w - k) / s + 1;
  y.assign(static_cast<size_t>(c * oh * ow), T(0));
  for (int64_t ci = 0; ci < c; ++ci)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        T best = std::numeric_limits<T>::lowest();
        for (int64_t ky = 0; ky < k; ++ky)
          for (int64_t kx = 0; kx < k; ++kx)
            best = std::max(best, x[static_cast<size_t>((ci * h + oy * s + ky) * w + ox * s + kx)]);
        y[static_cast<size_t>((ci * oh + oy) * ow + ox)] = best;
      }
}

void threshold(const Layer& l, const Value& in, Value& out, Engine::Trace* trace) {
  out.kind = Value::Kind::kBytes;
  out.zero = kLevelZero;
  out.c = in.c, out.h = in.h, out.w = in.w;
  out.u8.resize(static_cast<size_t>(in.size()));
  const int64_t per = in.h * in.w, K = l.num_thresholds;
  for (int64_t c = 0; c < in.c; ++c) {
    const bool below = l.below[static_cast<size_t>(c)] != 0;
    for (int64_t p = 0; p < per; ++p) {
      const size_t i = static_cast<size_t>(c * per + p);
      int count = 0;
      if (in.kind == Value::Kind::kAcc) {
        const int32_t a = in.i32[i];
        const int32_t* t = l.int_thresholds.data() + c * K;
        for (int64_t k = 0; k < K; ++k) count += below ? a <= t[k] : a >= t[k];
      } else {
        const double a = in.f[i];
        const double* t = l.float_thresholds.data() + c * K;
        for (int64_t k = 0; k < K; ++k) count += below ? a <= t[k] : a >= t[k];
      }
      out.u8[i] = static_cast<uint8_t>(l.levels[static_cast<size_t>(count)] + kLevelZero);
    }
  }
  if (trace) {
    if (in.kind == Value::Kind::kAcc)
      trace->accumulators.push_back(in.i32);
    else
      trace->float_inputs.push_back(in.f);
    std::vector<int8_t> levels(out.u8.size());
    for (size_t i = 0; i < levels.size(); ++i) levels[i] = static_cast<int8_t>(out.u8[i] - kLevelZero);
    trace->levels.push_back(std::move(levels));
  }
}

}  // namespace

Engine::Engine(Model model) : model_(std::move(model)) {
  // Trace the shapes through the layers once.
  int64_t c = model_.input.channels, h = model_.input.height + 2 * model_.input.pad,
          w = model_.input.width + 2 * model_.input.pad;
  enum class K { kInt, kFloat, kLevels, kScores } kind = model_.input.mean.empty() ? K::kLevels : K::kFloat;
  auto fail = [&](const Layer& l, const std::string& why) {
    throw IoError("model " + model_.net_class + ": layer " + l.name + " (" + layer_kind_name(l.kind) + "): " + why);
  };
  for (const Layer& l : model_.layers) {
    switch (l.kind) {
      case LayerKind::kConv:
      case LayerKind::kLinear:
        if (kind != K::kLevels && kind != K::kFloat) fail(l, "expects levels or an image");
        if (l.float_input != (kind == K::kFloat)) fail(l, "float / integer input mismatch");
        if (l.kind == LayerKind::kLinear && (h != 1 || w != 1))
          fail(l, "a linear layer after a spatial one needs a flatten");
        if (c != l.in) fail(l, "expects " + std::to_string(l.in) + " input channels, gets " + std::to_string(c));
        if (l.kind == LayerKind::kConv) {
          h = (h + 2 * l.pad - l.kernel) / l.stride + 1;
          w = (w + 2 * l.pad - l.kernel) / l.stride + 1;
          if (h < 1 || w < 1) fail(l, "the image is too small for this layer");
        }
        c = l.out;
        kind = l.float_input ? K::kFloat : K::kInt;
        break;
      case LayerKind::kMaxPool:
        if (kind != K::kInt && kind != K::kFloat) fail(l, "expects accumulators");
        h = (h - l.pool_kernel) / l.pool_stride + 1, w = (w - l.pool_kernel) / l.pool_stride + 1;
        if (h < 1 || w < 1) fail(l, "the feature map is too small for this pooling");
        break;
      case LayerKind::kThreshold:
        if (kind != K::kInt && kind != K::kFloat) fail(l, "expects accumulators");
        if (l.float_input != (kind == K::kFloat)) fail(l, "float / integer input mismatch");
        if (l.channels != c) fail(l, "has " + std::to_string(l.channels) + " channels, gets " + std::to_string(c));
        kind = K::kLevels;
        break;
      case LayerKind::kFlatten:
        c = c * h * w, h = w = 1;
        break;
      case LayerKind::kAffine:
        if (kind != K::kInt || h != 1 || w != 1 || l.channels != c) fail(l, "expects the last layer's accumulators");
        kind = K::kScores;
        break;
    }
  }
  if (kind != K::kScores) throw IoError("model " + model_.net_class + ": it does not end with the scores");
  // Each weight row's sum, for the activations' zero point.
  for (const Layer& l : model_.layers) {
    std::vector<int32_t> sums;
    if (l.kind == LayerKind::kConv || l.kind == LayerKind::kLinear) {
      const int64_t row = l.in / l.groups * l.kernel * l.kernel;
      for (int64_t o = 0; o < l.out; ++o) {
        int32_t sum = 0;
        for (int64_t j = 0; j < row; ++j) sum += l.weights[static_cast<size_t>(o * row + j)];
        sums.push_back(sum);
      }
    }
    row_sums_.push_back(std::move(sums));
    std::vector<int8_t> padded;
    const bool vnni_conv = l.kind == LayerKind::kConv && l.groups == 1 && !l.float_input;
    if ((l.kind == LayerKind::kLinear || vnni_conv) && kVnni) {  // [out/16][row/4][16][4], zero-padded
      const int64_t row = l.in * (l.kind == LayerKind::kConv ? l.kernel * l.kernel : 1);
      const int64_t in4 = (row + 3) / 4, out16 = (l.out + kLanes - 1) / kLanes;
      padded.assign(static_cast<size_t>(out16 * in4 * 4 * kLanes), 0);
      for (int64_t o = 0; o < l.out; ++o)
        for (int64_t i = 0; i < row; ++i)
          padded[static_cast<size_t>((((o / kLanes) * in4 + i / 4) * kLanes + o % kLanes) * 4 + i % 4)] =
              l.weights[static_cast<size_t>(o * row + i)];
    } else if (l.kind == LayerKind::kLinear) {  // rows padded to 64 bytes
      const int64_t stride = padded_row(l.in);
      padded.assign(static_cast<size_t>(l.out * stride), 0);
      for (int64_t o = 0; o < l.out; ++o)
        std::copy(l.weights.begin() + o * l.in, l.weights.begin() + (o + 1) * l.in, padded.begin() + o * stride);
    }
    padded_weights_.push_back(std::move(padded));
  }
}

namespace {

// A linear layer on a batch of byte inputs: each weight row (padded with zero weights to a multiple
// of 64 bytes) is read once for the whole batch, four images at a time (matrix-vector products per
// image would be bound by reading the weights from memory).
void linear_batch(const Layer& l, const std::vector<int8_t>& padded_weights, const std::vector<int32_t>& row_sums,
                  std::vector<Value>& xs, std::vector<Value>& ys) {
#if defined(__x86_64__) && defined(__GNUC__)
  if (kVnni) {  // padded_weights holds the blocked layout
    const int64_t in4 = (l.in + 3) / 4, out16 = (l.out + kLanes - 1) / kLanes;
    const size_t n = xs.size(), groups = (n + kImages - 1) / kImages;
    std::vector<uint8_t> inputs(groups * kImages * static_cast<size_t>(in4 * 4), 0);
    std::vector<int32_t> outputs(groups * kImages * static_cast<size_t>(out16 * kLanes));
    for (size_t b = 0; b < n; ++b)
      std::copy(xs[b].u8.begin(), xs[b].u8.end(),
                inputs.begin() + static_cast<std::ptrdiff_t>(b * static_cast<size_t>(in4 * 4)));
    for (size_t g = 0; g < groups; ++g) {
      const uint8_t* x[kImages];
      int32_t* y[kImages];
      for (int64_t k = 0; k < kImages; ++k) {
        x[k] = inputs.data() + (g * kImages + static_cast<size_t>(k)) * static_cast<size_t>(in4 * 4);
        y[k] = outputs.data() + (g * kImages + static_cast<size_t>(k)) * static_cast<size_t>(out16 * kLanes);
      }
      linear_vnni(padded_weights.data(), in4, out16, x, y);
    }
    for (size_t b = 0; b < n; ++b) {
      Value& v = ys[b];
      v.kind = Value::Kind::kAcc;
      v.c = l.out, v.h = v.w = 1;
      v.i32.resize(static_cast<size_t>(l.out));
      const int32_t* acc = outputs.data() + b * static_cast<size_t>(out16 * kLanes);
      for (int64_t o = 0; o < l.out; ++o)
        v.i32[static_cast<size_t>(o)] = acc[o] - xs[b].zero * row_sums[static_cast<size_t>(o)];
    }
    return;
  }
#endif
  const int64_t stride = padded_row(l.in);
  const size_t n = xs.size(), groups = (n + 3) / 4;
  std::vector<uint8_t> inputs(groups * 4 * static_cast<size_t>(stride), 0);  // padded copies, 4 per group
  for (size_t b = 0; b < n; ++b)
    std::copy(xs[b].u8.begin(), xs[b].u8.end(), inputs.begin() + static_cast<std::ptrdiff_t>(b * stride));
  for (size_t b = 0; b < n; ++b) {
    ys[b].kind = Value::Kind::kAcc;
    ys[b].c = l.out, ys[b].h = ys[b].w = 1;
    ys[b].i32.resize(static_cast<size_t>(l.out));
  }
  for (int64_t o = 0; o < l.out; ++o) {
    const int8_t* w = padded_weights.data() + o * stride;
    for (size_t g = 0; g < groups; ++g) {
      const uint8_t* x[4];
      for (size_t k = 0; k < 4; ++k) x[k] = inputs.data() + (g * 4 + k) * static_cast<size_t>(stride);
      int32_t acc[4];
      dot4_u8(x, w, stride, acc);
      for (size_t k = 0; k < 4 && g * 4 + k < n; ++k) {
        Value& y = ys[g * 4 + k];
        y.i32[static_cast<size_t>(o)] = acc[k] - xs[g * 4 + k].zero * row_sums[static_cast<size_t>(o)];
      }
    }
  }
}

}  // namespace

const std::vector<int8_t> kNoWeights;

std::vector<std::vector<double>> Engine::scores_batch(const uint8_t* images, int64_t n, Trace* trace) const {
  const InputSpec& s = model_.input;
  std::vector<Value> xs(static_cast<size_t>(n)), ys(static_cast<size_t>(n));
  for (int64_t b = 0; b < n; ++b) {
    const uint8_t* image = images + b * image_size();
    Value& x = xs[static_cast<size_t>(b)];
    x.c = s.channels, x.h = s.height + 2 * s.pad, x.w = s.width + 2 * s.pad;
    // Zero pixels around the image (as the data pipeline pads before normalising).
    std::vector<uint8_t> padded(static_cast<size_t>(x.size()), 0);
    for (int64_t c = 0; c < s.channels; ++c)
      for (int64_t y = 0; y < s.height; ++y)
        std::copy(image + (c * s.height + y) * s.width, image + (c * s.height + y + 1) * s.width,
                  padded.begin() + (c * x.h + y + s.pad) * x.w + s.pad);
    if (s.mean.empty()) {
      x.kind = Value::Kind::kBytes;
      x.zero = 0;
      x.u8 = std::move(padded);
    } else {
      x.kind = Value::Kind::kFloat;
      x.f.resize(padded.size());
      const int64_t per = x.h * x.w;
      for (int64_t i = 0; i < x.size(); ++i) {
        const auto c = static_cast<size_t>(i / per);
        x.f[static_cast<size_t>(i)] = (padded[static_cast<size_t>(i)] / 255.0 - s.mean[c]) / s.std[c];
      }
    }
  }
  std::vector<std::vector<double>> out(static_cast<size_t>(n));
  for (size_t li = 0; li < model_.layers.size(); ++li) {
    const Layer& l = model_.layers[li];
    if (l.kind == LayerKind::kLinear && xs[0].kind == Value::Kind::kBytes) {
      linear_batch(l, padded_weights_[li], row_sums_[li], xs, ys);
      std::swap(xs, ys);
      continue;
    }
    for (size_t b = 0; b < xs.size(); ++b) {
      Value& x = xs[b];
      Value& y = ys[b];
      switch (l.kind) {
        case LayerKind::kConv:
        case LayerKind::kLinear:
          conv_or_linear(l, row_sums_[li], l.kind == LayerKind::kConv ? padded_weights_[li] : kNoWeights, x, y);
          std::swap(x, y);
          break;
        case LayerKind::kMaxPool: {
          int64_t oh = 0, ow = 0;
          if (x.kind == Value::Kind::kAcc)
            max_pool(x.i32, x.c, x.h, x.w, l.pool_kernel, l.pool_stride, y.i32, oh, ow);
          else
            max_pool(x.f, x.c, x.h, x.w, l.pool_kernel, l.pool_stride, y.f, oh, ow);
          y.kind = x.kind, y.c = x.c, y.h = oh, y.w = ow;
          std::swap(x, y);
          break;
        }
        case LayerKind::kThreshold:
          threshold(l, x, y, trace);
          std::swap(x, y);
          break;
        case LayerKind::kFlatten:
          x.c = x.size(), x.h = x.w = 1;
          break;
        case LayerKind::kAffine: {
          auto& o = out[b];
          o.resize(static_cast<size_t>(l.channels));
          for (int64_t c = 0; c < l.channels; ++c)
            o[static_cast<size_t>(c)] =
                l.scale[static_cast<size_t>(c)] * x.i32[static_cast<size_t>(c)] + l.shift[static_cast<size_t>(c)];
          break;
        }
      }
    }
  }
  return out;
}

std::vector<double> Engine::scores(const uint8_t* image, Trace* trace) const {
  return scores_batch(image, 1, trace).front();
}

int64_t Engine::predict(const uint8_t* image) const {
  const auto s = scores(image);
  return std::max_element(s.begin(), s.end()) - s.begin();
}

std::vector<int64_t> Engine::predict_all(const uint8_t* images, int64_t n, int threads) const {
  std::vector<int64_t> labels(static_cast<size_t>(n));
  constexpr int64_t kBatch = 64;  // images per weight pass of a linear layer
  const int64_t size = image_size(), chunks = (n + kBatch - 1) / kBatch;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t k = 0; k < chunks; ++k) {
    const int64_t first = k * kBatch, count = std::min(kBatch, n - first);
    const auto scores = scores_batch(images + first * size, count, nullptr);
    for (int64_t i = 0; i < count; ++i) {
      const auto& s = scores[static_cast<size_t>(i)];
      labels[static_cast<size_t>(first + i)] = std::max_element(s.begin(), s.end()) - s.begin();
    }
  }
  return labels;
}

Evaluation evaluate(const Engine& engine, const Images& images, int threads) {
  const InputSpec& in = engine.model().input;
  if (images.channels != in.channels || images.height != in.height || images.width != in.width)
    throw IoError("the model (" + engine.model().net_class + ", " + engine.model().problem + ") takes " +
                  std::to_string(in.channels) + "x" + std::to_string(in.height) + "x" + std::to_string(in.width) +
                  " images; these " + images.format + " images are " + std::to_string(images.channels) + "x" +
                  std::to_string(images.height) + "x" + std::to_string(images.width));
  Evaluation e;
  e.threads = threads > 0 ? threads : omp_get_max_threads();
  e.images = images.count;
  const auto t0 = std::chrono::steady_clock::now();
  e.labels = engine.predict_all(images.pixels.data(), images.count, e.threads);
  e.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (int64_t i = 0; i < images.count; ++i)
    e.correct += e.labels[static_cast<size_t>(i)] == images.labels[static_cast<size_t>(i)];
  return e;
}

}  // namespace quantlab::runtime
