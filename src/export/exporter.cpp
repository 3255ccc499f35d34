// Folding a trained network into integer layers.
#include "quantlab/export/exporter.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

#include "fold_values.h"
#include "quantlab/data/tensor_dataset.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/util/error.h"

namespace quantlab::export_ {
namespace {

using runtime::Layer;
using runtime::LayerKind;

// What flows between the steps, as the exporter tracks it.
struct Flow {
  enum class Kind {
    kPixels,    // the image's bytes, real = step * pixel
    kLevels,    // an ANA activation's levels, real = step * integer
    kAcc,       // an integer layer's accumulator, real = step * A + offset[c]
    kFloatAcc,  // a float layer's output, real = step * v + offset[c]
    kFloat      // real values (the normalised image, after a float batch norm, a clamp, a residual addition)
  } kind = Kind::kPixels;
  double step = 1.0 / 255.0;
  double max_abs = 255;        // integers: the largest magnitude (for the 32-bit bound)
  std::vector<double> offset;  // accumulators: per channel (a layer's bias)
  int64_t channels = 0;
  bool accumulator() const { return kind == Kind::kAcc || kind == Kind::kFloatAcc; }
};

int32_t clamp_i32(double v) {
  if (v >= static_cast<double>(std::numeric_limits<int32_t>::max())) return std::numeric_limits<int32_t>::max();
  if (v <= static_cast<double>(std::numeric_limits<int32_t>::min())) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(v);
}

// Walks a network's steps and appends the runtime's layers, one function per kind of step.
class Folder {
 public:
  Folder(const train::Experiment& exp, runtime::Model& model) : exp_(exp), model_(model) {
    for (const auto& item : exp.net->named_modules("", false)) modules_[item.key()] = item.value();
    flow_.kind = model.input.mean.empty() ? Flow::Kind::kPixels : Flow::Kind::kFloat;
    flow_.step = model.input.mean.empty() ? 1.0 / 255.0 : 1.0;
    flow_.channels = model.input.channels;
  }

  void fold(const topology::Steps& steps) {
    for (size_t i = 0; i < steps.size(); ++i) {
      const topology::Step& st = steps[i];
      const topology::Step* next = i + 1 < steps.size() ? &steps[i + 1] : nullptr;
      switch (st.kind) {
        case topology::Step::Kind::kConv:
        case topology::Step::Kind::kLinear:
          layer(st);
          break;
        case topology::Step::Kind::kBatchNorm:
          if (next && next->kind == topology::Step::Kind::kActivation && ana(*next)) {
            batch_norm_and_ana(st, *next);
            ++i;
          } else {
            batch_norm(st);
          }
          break;
        case topology::Step::Kind::kActivation:
          activation(st);
          break;
        case topology::Step::Kind::kMaxPool:
          max_pool(st);
          break;
        case topology::Step::Kind::kGlobalAvgPool:
          global_avg_pool();
          break;
        case topology::Step::Kind::kFlatten:
          flatten();
          break;
        case topology::Step::Kind::kResidual:
          residual(st);
          break;
      }
    }
  }

  // The scores: the last value, through an affine layer.
  void finish() {
    to_real("the scores");
    if (model_.layers.empty() || model_.layers.back().kind != LayerKind::kAffine) {
      Layer l;
      l.kind = LayerKind::kAffine;
      l.name = "scores";
      l.channels = flow_.channels;
      l.scale.assign(static_cast<size_t>(l.channels), 1.0);
      l.shift.assign(static_cast<size_t>(l.channels), 0.0);
      model_.layers.push_back(std::move(l));
    }
    model_.num_classes = model_.layers.back().channels;
  }

 private:
  torch::nn::Module& module(const std::string& name) const {
    const auto it = modules_.find(name);
    if (it == modules_.end()) throw Error(exp_.net_spec.cls + " has no module " + name);
    return *it->second;
  }
  bool has(const std::string& name) const { return modules_.count(name) > 0; }
  // An activation step with an ANA module (not ReLU6, not an identity).
  bool ana(const topology::Step& st) const { return has(st.name) && dynamic_cast<nn::AnaSite*>(&module(st.name)); }
  bool real() const { return flow_.kind == Flow::Kind::kFloat; }
  Layer& push(Layer l) {
    model_.layers.push_back(std::move(l));
    return model_.layers.back();
  }

  // An accumulator becomes real values through an affine layer (step, offset).
  void to_real(const std::string& what) {
    if (real()) return;
    if (!flow_.accumulator()) throw Error(what + " follows an ANA activation directly; the export needs a layer first");
    Layer l;
    l.kind = LayerKind::kAffine;
    l.name = "offset before " + what;
    l.channels = flow_.channels;
    for (int64_t c = 0; c < l.channels; ++c) {
      l.scale.push_back(flow_.step);
      l.shift.push_back(flow_.offset.empty() ? 0.0 : flow_.offset[static_cast<size_t>(c)]);
    }
    push(std::move(l));
    set_real();
  }
  void set_real() {
    flow_.kind = Flow::Kind::kFloat;
    flow_.step = 1.0;
    flow_.offset.clear();
  }

  void layer(const topology::Step& st) {
    if (flow_.accumulator()) throw Error(st.name + " follows a layer without an activation between them");
    Layer l;
    l.name = st.name;
    l.kind = st.kind == topology::Step::Kind::kConv ? LayerKind::kConv : LayerKind::kLinear;
    torch::nn::Module& m = module(st.name);
    torch::Tensor bias;
    if (auto* q = dynamic_cast<nn::AnaWeightLayer*>(&m)) {
      quantized_weights(st, *q, l);
      bias = q->bias;
    } else {
      bias = float_weights(st, m, l);
    }
    l.in = st.in, l.out = st.out, l.groups = st.groups;
    if (l.kind == LayerKind::kConv) l.kernel = st.kernel, l.stride = st.stride, l.pad = st.padding;
    l.float_input = real();
    Flow next;
    next.channels = l.out;
    next.offset.assign(static_cast<size_t>(l.out), 0.0);
    if (bias.defined())
      for (int64_t o = 0; o < l.out; ++o) next.offset[static_cast<size_t>(o)] = bias[o].item<double>();
    if (l.float_input) {
      // Real values: the runtime multiplies the products by the weights' step itself (and the
      // ONNX graph's weights are levels x step), so no step is left to fold into what follows.
      next.kind = Flow::Kind::kFloatAcc;
      next.step = 1.0;
    } else {
      // The 32-bit bound: every weight at its largest integer times the largest input.
      double worst = 0;
      const int64_t fan = l.in / l.groups * l.kernel * l.kernel;
      for (int64_t o = 0; o < l.out; ++o) {
        double sum = 0;
        for (int64_t j = 0; j < fan; ++j) sum += std::abs(l.weights[static_cast<size_t>(o * fan + j)]);
        worst = std::max(worst, sum);
      }
      // The runtime's kernels take the input as bytes (a level plus its zero point 128, or a
      // pixel) and subtract the zero point's share afterwards: that product too stays in 32 bits.
      if (worst * flow_.max_abs > 2147483647.0 || worst * 255.0 > 2147483647.0)
        throw Error(st.name + ": its accumulator could exceed 32 bits");
      next.kind = Flow::Kind::kAcc;
      next.step = l.weight_step * flow_.step;
      next.max_abs = worst * flow_.max_abs;
    }
    push(std::move(l));
    flow_ = next;
  }

  void quantized_weights(const topology::Step& st, nn::AnaWeightLayer& layer, Layer& l) {
    if (auto* conv = dynamic_cast<nn::AnaConvImpl*>(&layer)) {
      const auto& o = conv->options();
      if (o.dim != 2) throw Error(st.name + ": only 2-d convolutions are exported");
      for (int64_t d : o.dilation)
        if (d != 1) throw Error(st.name + ": dilated convolutions are not exported");
    }
    const core::AnaScheme& scheme = layer.scheme();
    const auto q = core::ana_tensor_ops_forward(layer.weight.detach(), scheme, layer.noise().mu, 0.0f)
                       .contiguous()
                       .to(torch::kFloat64);
    std::vector<double> values(q.data_ptr<double>(), q.data_ptr<double>() + q.numel());
    const std::string why = on_grid(values, scheme.quantizer.scale, l.weight_step, l.weights);
    if (!why.empty()) throw Error(st.name + ": its quantized weights cannot be integers: " + why);
  }

  // A float layer's weights (MobileNetV2's stem, expanding blocks and classifier); its bias.
  torch::Tensor float_weights(const topology::Step& st, torch::nn::Module& m, Layer& l) {
    if (!real())
      throw Error(st.name + " is a float layer on integer input (" +
                  (flow_.kind == Flow::Kind::kLevels ? "an ANA activation's levels" : "the image's pixels") +
                  "): the export runs float layers on float values only");
    torch::Tensor w, bias;
    if (auto* c = dynamic_cast<torch::nn::Conv2dImpl*>(&m))
      w = c->weight, bias = c->bias;
    else if (auto* f = dynamic_cast<torch::nn::LinearImpl*>(&m))
      w = f->weight, bias = f->bias;
    else
      throw Error(st.name + " is neither a conv nor a linear layer");
    const auto t = w.detach().to(torch::kFloat32).contiguous();
    l.float_weights.assign(t.data_ptr<float>(), t.data_ptr<float>() + t.numel());
    return bias.defined() ? bias.detach() : bias;
  }

  void max_pool(const topology::Step& st) {
    if (flow_.kind == Flow::Kind::kLevels || flow_.kind == Flow::Kind::kPixels)
      throw Error("a max pooling on levels or pixels is not exported (after " + model_.layers.back().name + ")");
    Layer l;
    l.kind = LayerKind::kMaxPool;
    l.name = "maxpool after " + model_.layers.back().name;
    l.pool_kernel = st.kernel, l.pool_stride = st.stride;
    // max commutes with s * A + offset (s > 0, the same offset in a channel).
    push(std::move(l));
  }

  // A batch norm followed by an ANA activation: one threshold per step of the stair.
  void batch_norm_and_ana(const topology::Step& st, const topology::Step& act) {
    if (!flow_.accumulator() && !real())
      throw Error(st.name + ": a batch norm that does not follow a conv or linear layer");
    const BatchNormValues bn = batch_norm_of(module(st.name), st.name);
    threshold(st.name + " + " + act.name, &bn, dynamic_cast<nn::AnaSite&>(module(act.name)));
  }

  // The thresholds of an ANA activation on z = g * (step * A + offset - mean) + shift (bn), or on
  // the real value itself (bn null).
  void threshold(const std::string& name, const BatchNormValues* bn, const nn::AnaSite& site) {
    const core::Quantizer& quantizer = site.scheme().quantizer;
    const double mu = site.noise().mu;
    Layer l;
    l.kind = LayerKind::kThreshold;
    l.name = name;
    l.float_input = flow_.kind != Flow::Kind::kAcc;
    if (flow_.channels <= 0)  // after a flatten of real values: their count is not tracked
      throw Error(name + ": an activation right after a flatten is not exported (put a conv or linear layer first)");
    if (bn && bn->gain.size() != static_cast<size_t>(flow_.channels))
      throw Error(name + ": its batch norm has " + std::to_string(bn->gain.size()) + " channels, its input " +
                  std::to_string(flow_.channels));
    l.channels = flow_.channels;
    l.num_thresholds = quantizer.num_thresholds();
    std::vector<double> levels(quantizer.levels.begin(), quantizer.levels.end());
    const std::string why = on_grid(levels, quantizer.scale, l.level_step, l.levels);
    if (!why.empty()) throw Error(name + ": its levels cannot be integers: " + why);
    for (size_t c = 0; c < static_cast<size_t>(l.channels); ++c) {
      const double g = bn ? bn->gain[c] : 1.0, mean = bn ? bn->mean[c] : 0.0, shift = bn ? bn->shift[c] : 0.0;
      const double offset = flow_.offset.empty() ? 0.0 : flow_.offset[c];
      l.below.push_back(g < 0 ? 1 : 0);
      for (int k = 0; k < quantizer.num_thresholds(); ++k) {
        const double t = quantizer.thresholds[static_cast<size_t>(k)] + mu;
        // z = g * (step * A + offset - mean) + shift >= t
        if (g == 0) {  // constant: always or never
          const bool on = shift >= t;
          if (l.float_input)
            l.float_thresholds.push_back(on ? -INFINITY : INFINITY);
          else
            l.int_thresholds.push_back(on ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max());
          continue;
        }
        const double theta = (mean - offset + (t - shift) / g) / flow_.step;
        if (l.float_input)
          l.float_thresholds.push_back(theta);
        else
          l.int_thresholds.push_back(clamp_i32(g > 0 ? std::ceil(theta) : std::floor(theta)));
      }
    }
    const Layer& out = push(std::move(l));
    flow_.kind = Flow::Kind::kLevels;
    flow_.step = out.level_step;
    flow_.max_abs = 0;
    for (int8_t v : out.levels) flow_.max_abs = std::max(flow_.max_abs, std::abs(double(v)));
    flow_.offset.clear();
  }

  // A batch norm without an ANA activation after it: an affine layer to real values (the scores,
  // or a float part of the network).
  void batch_norm(const topology::Step& st) {
    if (!flow_.accumulator() && !real())
      throw Error(st.name + ": a batch norm that does not follow a conv or linear layer");
    const BatchNormValues bn = batch_norm_of(module(st.name), st.name);
    Layer l;
    l.kind = LayerKind::kAffine;
    l.name = st.name;
    l.channels = static_cast<int64_t>(bn.gain.size());
    for (size_t c = 0; c < bn.gain.size(); ++c) {
      const double offset = flow_.offset.empty() ? 0.0 : flow_.offset[c];
      l.scale.push_back(bn.gain[c] * flow_.step);
      l.shift.push_back(bn.gain[c] * (offset - bn.mean[c]) + bn.shift[c]);
    }
    push(std::move(l));
    set_real();
  }

  // An activation without a batch norm before it: ANA on real values (a residual branch's input),
  // ReLU6 (a clamp), or nothing (an identity).
  void activation(const topology::Step& st) {
    if (st.float_identity && !has(st.name)) return;
    if (!real())
      throw Error(st.name + ": an activation on " +
                  (flow_.accumulator() ? "an accumulator without a batch norm before it" : "levels") +
                  " is not exported");
    if (ana(st)) {
      threshold(st.name, nullptr, dynamic_cast<nn::AnaSite&>(module(st.name)));
      return;
    }
    Layer l;
    l.kind = LayerKind::kClamp;
    l.name = st.name;
    l.lo = 0.0, l.hi = 6.0;  // ReLU6 (topology/layer_maker.h)
    push(std::move(l));
  }

  void global_avg_pool() {
    to_real("the average pooling");
    Layer l;
    l.kind = LayerKind::kGlobalAvgPool;
    l.name = "avgpool after " + model_.layers.back().name;
    push(std::move(l));
  }

  void flatten() {
    if (flow_.accumulator()) throw Error("a flatten of accumulators is not exported");
    Layer l;
    l.kind = LayerKind::kFlatten;
    l.name = "flatten";
    push(std::move(l));
    flow_.channels = -1;  // known to the next layer
  }

  // x + branch(x), on real values.
  void residual(const topology::Step& st) {
    const std::string first = st.branch.empty() ? "an empty branch" : st.branch.front().name;
    to_real("the residual block of " + first);
    Layer begin;
    begin.kind = LayerKind::kResidualBegin;
    begin.name = "residual of " + first;
    const Flow saved = flow_;
    push(begin);
    fold(st.branch);
    to_real("the residual addition");
    Layer add;
    add.kind = LayerKind::kResidualAdd;
    add.name = "residual of " + first;
    push(add);
    flow_ = saved;
  }

  const train::Experiment& exp_;
  runtime::Model& model_;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules_;
  Flow flow_;
};

}  // namespace

runtime::InputSpec export_input(const train::Experiment& exp, const data::ProblemData& data) {
  const auto* set = dynamic_cast<const data::TensorDataset*>(data.test.get());
  if (!set)
    throw Error("the integer runtime and the parity check read IDX and CIFAR test sets; the " + data.format +
                " data of this problem is not one of them, so it cannot be exported yet (nothing was written)");
  runtime::InputSpec in;
  const auto& images = set->images().images;  // [N, H, W] or [N, C, H, W]
  in.channels = images.dim() == 4 ? images.size(1) : 1;
  in.height = images.size(images.dim() - 2);
  in.width = images.size(images.dim() - 1);
  in.pad = set->preprocess().pad;
  for (float m : set->preprocess().mean) in.mean.push_back(m);
  for (float s : set->preprocess().std) in.std.push_back(s);
  (void)exp;
  return in;
}

bool has_quantized_layers(const train::Experiment& exp) {
  for (const auto& m : exp.net->modules(false))
    if (dynamic_cast<nn::AnaSite*>(m.get())) return true;
  return false;
}

runtime::Model export_model(const train::Experiment& exp, const runtime::InputSpec& input, const std::string& problem,
                            const std::string& source) {
  const topology::Steps* steps = exp.net->steps();
  if (!steps) throw Error(exp.net_spec.cls + " cannot be exported: it does not describe its network as steps");
  runtime::Model model;
  model.problem = problem;
  model.net_class = exp.net_spec.cls;
  model.source = source;
  model.input = input;
  torch::NoGradGuard no_grad;
  Folder folder(exp, model);
  folder.fold(*steps);
  folder.finish();
  return model;
}

}  // namespace quantlab::export_
