// The layers' shapes and kinds of value traced through a model once, before it runs: a model
// whose layers do not fit together (a hand-made or damaged file that passed load_model's checks of
// each layer alone) is refused naming the first layer that does not fit.
#include <string>
#include <vector>

#include "quantlab/runtime/model.h"
#include "quantlab/util/error.h"

namespace quantlab::runtime {

void check_layer_shapes(const Model& m) {
  struct Shape {
    enum class K { kInt, kFloat, kLevels } kind;
    int64_t c, h, w;
  };
  Shape x{m.input.mean.empty() ? Shape::K::kLevels : Shape::K::kFloat, m.input.channels,
          m.input.height + 2 * m.input.pad, m.input.width + 2 * m.input.pad};
  using K = Shape::K;
  std::vector<Shape> kept;  // residual_begin's values
  auto fail = [&](const Layer& l, const std::string& why) {
    throw IoError("model " + m.net_class + ": layer " + l.name + " (" + layer_kind_name(l.kind) + "): " + why);
  };
  for (const Layer& l : m.layers) {
    switch (l.kind) {
      case LayerKind::kConv:
      case LayerKind::kLinear:
        if (x.kind != K::kLevels && x.kind != K::kFloat) fail(l, "expects levels or an image");
        if (l.float_input != (x.kind == K::kFloat)) fail(l, "float / integer input mismatch");
        if (!l.float_weights.empty() && !l.float_input) fail(l, "float weights on integer input");
        if (l.kind == LayerKind::kLinear && (x.h != 1 || x.w != 1))
          fail(l, "a linear layer after a spatial one needs a flatten");
        if (x.c != l.in) fail(l, "expects " + std::to_string(l.in) + " input channels, gets " + std::to_string(x.c));
        if (l.kind == LayerKind::kConv) {
          if (x.h + 2 * l.pad < l.kernel || x.w + 2 * l.pad < l.kernel)
            fail(l, "the image is too small for this layer");
          x.h = (x.h + 2 * l.pad - l.kernel) / l.stride + 1;
          x.w = (x.w + 2 * l.pad - l.kernel) / l.stride + 1;
          if (x.h < 1 || x.w < 1) fail(l, "the image is too small for this layer");
        }
        x.c = l.out;
        x.kind = l.float_input ? K::kFloat : K::kInt;
        break;
      case LayerKind::kMaxPool:
        if (x.kind != K::kInt && x.kind != K::kFloat) fail(l, "expects accumulators");
        if (x.h < l.pool_kernel || x.w < l.pool_kernel) fail(l, "the feature map is too small for this pooling");
        x.h = (x.h - l.pool_kernel) / l.pool_stride + 1, x.w = (x.w - l.pool_kernel) / l.pool_stride + 1;
        if (x.h < 1 || x.w < 1) fail(l, "the feature map is too small for this pooling");
        break;
      case LayerKind::kThreshold:
        if (x.kind != K::kInt && x.kind != K::kFloat) fail(l, "expects accumulators");
        if (l.float_input != (x.kind == K::kFloat)) fail(l, "float / integer input mismatch");
        if (l.channels != x.c) fail(l, "has " + std::to_string(l.channels) + " channels, gets " + std::to_string(x.c));
        x.kind = K::kLevels;
        break;
      case LayerKind::kFlatten:
        x.c = x.c * x.h * x.w, x.h = x.w = 1;
        break;
      case LayerKind::kAffine:
        if (x.kind == K::kLevels || l.channels != x.c) fail(l, "expects accumulators of its channels");
        x.kind = K::kFloat;
        break;
      case LayerKind::kClamp:
      case LayerKind::kGlobalAvgPool:
        if (x.kind != K::kFloat) fail(l, "expects float values");
        if (l.kind == LayerKind::kGlobalAvgPool) x.h = x.w = 1;
        break;
      case LayerKind::kResidualBegin:
        if (x.kind != K::kFloat) fail(l, "expects float values");
        kept.push_back(x);
        break;
      case LayerKind::kResidualAdd:
        if (kept.empty()) fail(l, "no residual_begin before it");
        if (x.kind != K::kFloat || kept.back().c != x.c || kept.back().h != x.h || kept.back().w != x.w)
          fail(l, "the branch's output does not match the block's input");
        kept.pop_back();
        break;
    }
  }
  if (!kept.empty()) throw IoError("model " + m.net_class + ": a residual_begin without its residual_add");
  if (x.kind != K::kFloat || x.c * x.h * x.w != m.num_classes || m.layers.back().kind != LayerKind::kAffine)
    throw IoError("model " + m.net_class + ": it does not end with the scores");
}

}  // namespace quantlab::runtime
