// The integer runtime's layers. Activations travel as uint8 with a zero point (pixels: 0; levels:
// level + 128), weights as int8; a layer's accumulator is the uint8 x int8 dot product minus the
// zero point times the weights' row sum.
#include "quantlab/runtime/engine.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <limits>
#include <mutex>
#include <string>

#include "quantlab/runtime/int8_kernels.h"
#include "quantlab/util/error.h"

namespace quantlab::runtime {
namespace {

using namespace kernels;

constexpr int kLevelZero = 128;  // levels travel as uint8: level + 128

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

// `blocked`: the weights in block_weights' layout, for an integer convolution of one group on a
// VNNI CPU (the output positions then take the place of blocked_products' inputs); else empty.
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
    const bool float_weights = !l.float_weights.empty();
    for (int64_t o = 0; o < l.out; ++o) {
      const int64_t gi = o / og;
      for (int64_t p = 0; p < positions; ++p) {
        const double* x = patches + (gi * positions + p) * row;
        out.f[static_cast<size_t>(o * positions + p)] = float_weights
                                                            ? dot_f(x, l.float_weights.data() + o * row, row)
                                                            : l.weight_step * dot_f(x, l.weights.data() + o * row, row);
      }
    }
    return;
  }
  out.kind = Value::Kind::kAcc;
  out.i32.assign(static_cast<size_t>(out.size()), 0);
  std::vector<uint8_t> cols;  // padding with the zero point: a real 0
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
      blocked_products(blocked.data(), in4, out16, xp, yp);
    }
    for (int64_t o = 0; o < l.out; ++o) {
      const int32_t correction = in.zero * row_sums[static_cast<size_t>(o)];
      int32_t* y = out.i32.data() + o * positions;
      for (int64_t p = 0; p < positions; ++p) y[p] = acc[static_cast<size_t>(p * out16 * kLanes + o)] - correction;
    }
    return;
  }
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

// A batch norm without an ANA activation: per channel, scale * input + shift, in double.
void affine(const Layer& l, const Value& in, Value& out) {
  out.kind = Value::Kind::kFloat;
  out.c = in.c, out.h = in.h, out.w = in.w;
  out.f.resize(static_cast<size_t>(in.size()));
  const int64_t per = in.h * in.w;
  for (int64_t c = 0; c < in.c; ++c) {
    const double scale = l.scale[static_cast<size_t>(c)], shift = l.shift[static_cast<size_t>(c)];
    for (int64_t p = 0; p < per; ++p) {
      const auto i = static_cast<size_t>(c * per + p);
      out.f[i] = scale * (in.kind == Value::Kind::kAcc ? static_cast<double>(in.i32[i]) : in.f[i]) + shift;
    }
  }
}

void global_avg_pool(const Value& in, Value& out) {
  out.kind = Value::Kind::kFloat;
  out.c = in.c, out.h = out.w = 1;
  out.f.assign(static_cast<size_t>(in.c), 0.0);
  const int64_t per = in.h * in.w;
  for (int64_t c = 0; c < in.c; ++c) {
    double sum = 0;
    for (int64_t p = 0; p < per; ++p) sum += in.f[static_cast<size_t>(c * per + p)];
    out.f[static_cast<size_t>(c)] = sum / static_cast<double>(per);
  }
}

}  // namespace

Engine::Engine(Model model) : model_(std::move(model)) {
  check_layer_shapes(model_);
  // Each weight row's sum, for the activations' zero point.
  for (const Layer& l : model_.layers) {
    std::vector<int32_t> sums;
    const bool integer = (l.kind == LayerKind::kConv || l.kind == LayerKind::kLinear) && l.float_weights.empty();
    if (integer) {
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
    if (integer && (l.kind == LayerKind::kLinear || vnni_conv) && have_vnni()) {  // block_weights' layout
      const int64_t row = l.in * (l.kind == LayerKind::kConv ? l.kernel * l.kernel : 1);
      padded = block_weights(l.weights.data(), l.out, row);
    } else if (integer && l.kind == LayerKind::kLinear) {  // rows padded to 64 bytes
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
  if (have_vnni()) {  // padded_weights holds the blocked layout
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
      blocked_products(padded_weights.data(), in4, out16, x, y);
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
  std::vector<std::vector<Value>> kept(static_cast<size_t>(n));  // residual_begin's values, per image
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
        case LayerKind::kAffine:
          affine(l, x, y);
          std::swap(x, y);
          break;
        case LayerKind::kClamp:
          for (double& v : x.f) v = std::min(std::max(v, l.lo), l.hi);
          break;
        case LayerKind::kGlobalAvgPool:
          global_avg_pool(x, y);
          std::swap(x, y);
          break;
        case LayerKind::kResidualBegin:
          kept[b].push_back(x);
          break;
        case LayerKind::kResidualAdd: {
          const Value& r = kept[b].back();
          for (size_t i = 0; i < x.f.size(); ++i) x.f[i] += r.f[i];
          kept[b].pop_back();
          break;
        }
      }
    }
  }
  std::vector<std::vector<double>> out(static_cast<size_t>(n));
  for (size_t b = 0; b < xs.size(); ++b) out[b] = std::move(xs[b].f);
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
  // An exception may not leave an OpenMP region (std::terminate): the first is kept and rethrown.
  std::exception_ptr failed;
  std::mutex failed_mutex;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads > 0 ? threads : omp_get_max_threads())
  for (int64_t k = 0; k < chunks; ++k) {
    try {
      const int64_t first = k * kBatch, count = std::min(kBatch, n - first);
      const auto scores = scores_batch(images + first * size, count, nullptr);
      for (int64_t i = 0; i < count; ++i) {
        const auto& s = scores[static_cast<size_t>(i)];
        labels[static_cast<size_t>(first + i)] = std::max_element(s.begin(), s.end()) - s.begin();
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failed_mutex);
      if (!failed) failed = std::current_exception();
    }
  }
  if (failed) std::rethrow_exception(failed);
  return labels;
}

Evaluation evaluate(const Engine& engine, const Images& images, int threads) {
  // Checked here, not by each command, so that `quantlab infer` and quantlab-infer refuse the same
  // sets: an accuracy of no images, or of labels the model cannot give, would mean nothing.
  const std::string where = images.dir.empty() ? std::string("the test set") : images.dir;
  if (images.count == 0) throw IoError(where + ": the test set has no images; there is nothing to measure");
  const InputSpec& in = engine.model().input;
  if (images.channels != in.channels || images.height != in.height || images.width != in.width)
    throw IoError("the model (" + engine.model().net_class + ", " + engine.model().problem + ") takes " +
                  std::to_string(in.channels) + "x" + std::to_string(in.height) + "x" + std::to_string(in.width) +
                  " images; these " + images.format + " images are " + std::to_string(images.channels) + "x" +
                  std::to_string(images.height) + "x" + std::to_string(images.width));
  const int64_t classes = engine.model().num_classes;
  for (size_t i = 0; i < images.labels.size(); ++i)
    if (images.labels[i] < 0 || images.labels[i] >= classes)
      throw IoError(where + ": label " + std::to_string(images.labels[i]) + " of test image " + std::to_string(i) +
                    " is not a class of this model (0.." + std::to_string(classes - 1) +
                    "); the wrong test set, or a corrupt label file");
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
