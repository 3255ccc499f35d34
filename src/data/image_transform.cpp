// Crop planning, anti-aliased bilinear resampling, colour jitter, lighting and normalisation.
#include "quantlab/data/image_transform.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace quantlab::data {
namespace {

constexpr int64_t kResize = 256;  // validation (and "torchvision2"): shorter side before the crop
constexpr float kMean[3] = {0.485f, 0.456f, 0.406f}, kStd[3] = {0.229f, 0.224f, 0.225f};
constexpr float kEigval[3] = {0.2175f, 0.0188f, 0.0045f};
constexpr float kEigvec[3][3] = {
    {-0.5675f, 0.7192f, 0.4009f}, {-0.5808f, -0.0045f, -0.8140f}, {-0.5836f, -0.6948f, 0.4203f}};
constexpr double kJitter = 0.4, kLighting = 0.1;

// Own distributions: the same draws on every standard library.
double uniform(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1.0p-53; }
double uniform(std::mt19937_64& rng, double a, double b) { return a + (b - a) * uniform(rng); }
int64_t randint(std::mt19937_64& rng, int64_t lo, int64_t hi) {  // inclusive
  return lo + static_cast<int64_t>(rng() % static_cast<uint64_t>(hi - lo + 1));
}
double normal(std::mt19937_64& rng) {
  const double u1 = 1.0 - uniform(rng), u2 = uniform(rng);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
}

// The shorter side to kResize, as torchvision's Resize(int).
void resized_size(ImageSize s, int64_t& ow, int64_t& oh) {
  if (s.width <= s.height) {
    ow = kResize;
    oh = static_cast<int64_t>(static_cast<double>(kResize) * s.height / s.width);
  } else {
    oh = kResize;
    ow = static_cast<int64_t>(static_cast<double>(kResize) * s.width / s.height);
  }
}

// One output axis: for each output pixel, the first source pixel and its weights.
struct Taps {
  std::vector<int> first, count;
  std::vector<float> weights;  // out * max_taps
  int max_taps = 0;
};

// PIL's precompute_coeffs with the bilinear (triangle) filter, over [lo, hi) of the source axis.
Taps bilinear_taps(double in0, double in_len, int64_t out, int lo, int hi, bool flip) {
  Taps t;
  const double scale = in_len / static_cast<double>(out);
  const double filterscale = std::max(scale, 1.0), support = filterscale;
  t.max_taps = static_cast<int>(std::ceil(support)) * 2 + 1;
  t.first.resize(out);
  t.count.resize(out);
  t.weights.assign(static_cast<size_t>(out) * t.max_taps, 0.0f);
  for (int64_t i = 0; i < out; ++i) {
    const int64_t slot = flip ? out - 1 - i : i;
    const double center = in0 + (static_cast<double>(i) + 0.5) * scale;
    int xmin = std::max(static_cast<int>(std::floor(center - support + 0.5)), lo);
    int xmax = std::min(static_cast<int>(std::floor(center + support + 0.5)), hi);
    if (xmax <= xmin) {  // degenerate region: nearest pixel
      xmin = std::clamp(static_cast<int>(center), lo, hi - 1);
      xmax = xmin + 1;
    }
    const int n = std::min(xmax - xmin, t.max_taps);
    double sum = 0.0;
    float* w = &t.weights[slot * t.max_taps];
    for (int k = 0; k < n; ++k) {
      const double d = std::abs((xmin + k - center + 0.5) / filterscale);
      w[k] = static_cast<float>(d < 1.0 ? 1.0 - d : 0.0);
      sum += w[k];
    }
    if (sum <= 0.0) {
      w[0] = 1.0f;
      sum = 1.0;
    }
    for (int k = 0; k < n; ++k) w[k] = static_cast<float>(w[k] / sum);
    t.first[slot] = xmin;
    t.count[slot] = n;
  }
  return t;
}

// out[j] = sum_k w[k] * rows[k * stride + j], j < n: the vertical filter over whole rows, compiled
// for AVX-512, AVX2 and baseline x86-64 (picked at load time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void weighted_rows(const uint8_t* rows, size_t stride, const float* w, int taps, int64_t n, float* out) {
  for (int64_t j = 0; j < n; ++j) out[j] = 0.f;
  for (int k = 0; k < taps; ++k) {
    const uint8_t* r = rows + k * stride;
    const float wk = w[k];
    for (int64_t j = 0; j < n; ++j) out[j] += wk * static_cast<float>(r[j]);
  }
}

void jitter(float* x, int64_t plane, std::mt19937_64& rng) {
  float* r = x;
  float* g = x + plane;
  float* b = x + 2 * plane;
  int order[3] = {0, 1, 2};
  for (int i = 2; i > 0; --i) std::swap(order[i], order[rng() % static_cast<uint64_t>(i + 1)]);
  for (int op : order) {
    const auto a = static_cast<float>(kJitter * uniform(rng));
    if (op == 0) {  // brightness: towards black
      for (int64_t p = 0; p < 3 * plane; ++p) x[p] *= 1.0f - a;
    } else if (op == 1) {  // contrast: towards the mean grey
      double sum = 0.0;
      for (int64_t p = 0; p < plane; ++p) sum += 0.299f * r[p] + 0.587f * g[p] + 0.114f * b[p];
      const auto m = static_cast<float>(sum / static_cast<double>(plane));
      for (int64_t p = 0; p < 3 * plane; ++p) x[p] += a * (m - x[p]);
    } else {  // saturation: towards the grey image
      for (int64_t p = 0; p < plane; ++p) {
        const float gray = 0.299f * r[p] + 0.587f * g[p] + 0.114f * b[p];
        r[p] += a * (gray - r[p]);
        g[p] += a * (gray - g[p]);
        b[p] += a * (gray - b[p]);
      }
    }
  }
}

}  // namespace

CropPlan plan_crop(ImageSize size, int64_t out, ImageAugment kind, std::mt19937_64& rng) {
  const double W = size.width, H = size.height;
  CropPlan p;
  p.cx1 = W;
  p.cy1 = H;
  if (kind == ImageAugment::kNone || kind == ImageAugment::kTorchvision2) {
    int64_t ow, oh;
    resized_size(size, ow, oh);
    const double sx = W / static_cast<double>(ow), sy = H / static_cast<double>(oh);
    int64_t top, left;
    if (kind == ImageAugment::kNone) {
      top = static_cast<int64_t>(std::nearbyint(static_cast<double>(oh - out) / 2.0));
      left = static_cast<int64_t>(std::nearbyint(static_cast<double>(ow - out) / 2.0));
    } else {
      top = randint(rng, 0, std::max<int64_t>(oh - out, 0));
      left = randint(rng, 0, std::max<int64_t>(ow - out, 0));
      p.flip = uniform(rng) < 0.5;
    }
    p.x0 = static_cast<double>(left) * sx;
    p.y0 = static_cast<double>(top) * sy;
    p.w = static_cast<double>(out) * sx;
    p.h = static_cast<double>(out) * sy;
    return p;
  }
  // RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)), as torchvision draws it.
  const double area = W * H, log_lo = std::log(3.0 / 4.0), log_hi = std::log(4.0 / 3.0);
  bool found = false;
  int64_t w = 0, h = 0, i = 0, j = 0;
  for (int attempt = 0; attempt < 10 && !found; ++attempt) {
    const double target = area * uniform(rng, 0.08, 1.0);
    const double aspect = std::exp(uniform(rng, log_lo, log_hi));
    w = static_cast<int64_t>(std::nearbyint(std::sqrt(target * aspect)));
    h = static_cast<int64_t>(std::nearbyint(std::sqrt(target / aspect)));
    if (w > 0 && h > 0 && w <= size.width && h <= size.height) {
      i = randint(rng, 0, size.height - h);
      j = randint(rng, 0, size.width - w);
      found = true;
    }
  }
  if (!found) {  // centre crop at the nearest allowed aspect ratio
    const double ratio = W / H;
    if (ratio < 3.0 / 4.0) {
      w = size.width;
      h = static_cast<int64_t>(std::nearbyint(W / (3.0 / 4.0)));
    } else if (ratio > 4.0 / 3.0) {
      h = size.height;
      w = static_cast<int64_t>(std::nearbyint(H * (4.0 / 3.0)));
    } else {
      w = size.width;
      h = size.height;
    }
    i = (size.height - h) / 2;
    j = (size.width - w) / 2;
  }
  p.x0 = p.cx0 = static_cast<double>(j);
  p.y0 = p.cy0 = static_cast<double>(i);
  p.w = static_cast<double>(w);
  p.h = static_cast<double>(h);
  p.cx1 = p.x0 + p.w;
  p.cy1 = p.y0 + p.h;
  p.flip = uniform(rng) < 0.5;
  return p;
}

double min_decode_scale(const CropPlan& plan, int64_t out) {
  return std::min(1.0, static_cast<double>(out) / std::min(plan.w, plan.h));
}

void render_crop(const RgbImage& img, const CropPlan& plan, int64_t out, ImageAugment kind, std::mt19937_64& rng,
                 float* dst) {
  const double s = img.scale;
  const int lo_x = std::clamp(static_cast<int>(std::floor(plan.cx0 * s)), 0, img.width - 1);
  const int hi_x = std::clamp(static_cast<int>(std::ceil(plan.cx1 * s)), lo_x + 1, img.width);
  const int lo_y = std::clamp(static_cast<int>(std::floor(plan.cy0 * s)), 0, img.height - 1);
  const int hi_y = std::clamp(static_cast<int>(std::ceil(plan.cy1 * s)), lo_y + 1, img.height);
  const Taps tx = bilinear_taps(plan.x0 * s, plan.w * s, out, lo_x, hi_x, plan.flip);
  const Taps ty = bilinear_taps(plan.y0 * s, plan.h * s, out, lo_y, hi_y, false);
  int col0 = img.width, col1 = 0;
  for (int64_t x = 0; x < out; ++x) {
    col0 = std::min(col0, tx.first[x]);
    col1 = std::max(col1, tx.first[x] + tx.count[x]);
  }
  // Vertical pass first: each output row is a weighted sum of whole source rows over the columns
  // the horizontal taps read, a contiguous loop the compiler vectorises. tmp [out, span * 3].
  const int64_t span = static_cast<int64_t>(col1 - col0) * 3;
  thread_local std::vector<float> tmp;
  if (tmp.size() < static_cast<size_t>(out * span)) tmp.resize(static_cast<size_t>(out * span));
  for (int64_t y = 0; y < out; ++y) {
    const uint8_t* base = img.pixels() + static_cast<size_t>(col0) * 3;
    const size_t stride = static_cast<size_t>(img.width) * 3;
    weighted_rows(base + static_cast<size_t>(ty.first[y]) * stride, stride, &ty.weights[y * ty.max_taps], ty.count[y],
                  span, tmp.data() + y * span);
  }
  // Horizontal pass into the channel planes, scaled to [0, 1].
  const int64_t plane = out * out;
  for (int64_t y = 0; y < out; ++y) {
    const float* t = tmp.data() + y * span;
    float* d0 = dst + y * out;
    float* d1 = d0 + plane;
    float* d2 = d1 + plane;
    for (int64_t x = 0; x < out; ++x) {
      const float* w = &tx.weights[x * tx.max_taps];
      const float* p = t + static_cast<int64_t>(tx.first[x] - col0) * 3;
      float a = 0.f, b = 0.f, c = 0.f;
      for (int k = 0; k < tx.count[x]; ++k) {
        a += w[k] * p[3 * k];
        b += w[k] * p[3 * k + 1];
        c += w[k] * p[3 * k + 2];
      }
      d0[x] = a * (1.0f / 255.0f);
      d1[x] = b * (1.0f / 255.0f);
      d2[x] = c * (1.0f / 255.0f);
    }
  }
  if (kind == ImageAugment::kOriginal) {
    jitter(dst, plane, rng);
    double alpha[3];
    for (double& a : alpha) a = kLighting * normal(rng);
    for (int c = 0; c < 3; ++c) {
      float noise = 0.f;
      for (int j = 0; j < 3; ++j) noise += kEigvec[c][j] * static_cast<float>(alpha[j]) * kEigval[j];
      for (int64_t p = 0; p < plane; ++p) dst[c * plane + p] += noise;
    }
  }
  for (int c = 0; c < 3; ++c) {
    const float m = kMean[c], inv = 1.0f / kStd[c];
    for (int64_t p = 0; p < plane; ++p) dst[c * plane + p] = (dst[c * plane + p] - m) * inv;
  }
}

}  // namespace quantlab::data
