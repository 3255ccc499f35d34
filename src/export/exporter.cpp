// Folding a trained network into integer layers.
#include "quantlab/export/exporter.h"

#include <cmath>
#include <limits>
#include <map>

#include "quantlab/data/tensor_dataset.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

using runtime::Layer;
using runtime::LayerKind;

// The integers of `values` on a grid of `step` (tried: `preferred`, then 1); false when they are
// not on one, or need more than 8 bits.
bool on_grid(const std::vector<double>& values, double preferred, double& step, std::vector<int8_t>& ints) {
  for (double s : {preferred, 1.0}) {
    if (!(s > 0)) continue;
    ints.clear();
    bool ok = true;
    for (double v : values) {
      const double q = v / s, r = std::round(q);
      if (std::abs(q - r) > 1e-5 || std::abs(r) > 127) {
        ok = false;
        break;
      }
      ints.push_back(static_cast<int8_t>(r));
    }
    if (ok) {
      step = s;
      return true;
    }
  }
  return false;
}

struct BatchNormValues {
  std::vector<double> gain, mean, shift;  // z = gain * (y - mean) + shift, gain = weight / sqrt(var + eps)
};

BatchNormValues batch_norm_of(torch::nn::Module& m, const std::string& name) {
  double eps = 1e-5;
  if (auto* b1 = dynamic_cast<torch::nn::BatchNorm1dImpl*>(&m)) eps = b1->options.eps();
  else if (auto* b2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(&m)) eps = b2->options.eps();
  else throw Error(name + " is not a batch norm");
  auto p = m.named_parameters(false);
  auto b = m.named_buffers(false);
  const auto w = p["weight"].detach().to(torch::kFloat64), bias = p["bias"].detach().to(torch::kFloat64);
  const auto mean = b["running_mean"].detach().to(torch::kFloat64), var = b["running_var"].detach().to(torch::kFloat64);
  const auto gain = w / torch::sqrt(var + eps);
  BatchNormValues v;
  for (int64_t c = 0; c < w.size(0); ++c) {
    v.gain.push_back(gain[c].item<double>());
    v.mean.push_back(mean[c].item<double>());
    v.shift.push_back(bias[c].item<double>());
  }
  return v;
}

// What flows between the steps, as the exporter tracks it.
struct Flow {
  enum class Kind { kPixels, kFloatImage, kLevels, kAcc, kFloatAcc } kind = Kind::kPixels;
  double step = 1.0 / 255.0;   // pixels and levels: real = step * integer; accumulators: real = scale * A
  double max_abs = 255;        // the largest integer magnitude (for the 32-bit bound)
  std::vector<double> offset;  // accumulators: per channel, added to scale * A (a layer's bias)
  int64_t channels = 0;
};

int32_t clamp_i32(double v) {
  if (v >= static_cast<double>(std::numeric_limits<int32_t>::max())) return std::numeric_limits<int32_t>::max();
  if (v <= static_cast<double>(std::numeric_limits<int32_t>::min())) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(v);
}

}  // namespace

runtime::InputSpec export_input(const Experiment& exp, const data::ProblemData& data) {
  const auto* set = dynamic_cast<const data::TensorDataset*>(data.test.get());
  if (!set)
    throw Error("the integer runtime reads IDX and CIFAR test files; the " + data.format +
                " data of this problem is not one of them (export the model; its inference needs those formats)");
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

bool has_quantized_layers(const Experiment& exp) {
  for (const auto& m : exp.net->modules(false))
    if (dynamic_cast<nn::AnaSite*>(m.get())) return true;
  return false;
}

runtime::Model export_model(const Experiment& exp, const runtime::InputSpec& input, const std::string& problem,
                            const std::string& source) {
  runtime::Model model;
  model.problem = problem;
  model.net_class = exp.net_spec.cls;
  model.source = source;
  model.input = input;
  std::map<std::string, std::shared_ptr<torch::nn::Module>> modules;
  for (const auto& item : exp.net->named_modules("", false)) modules[item.key()] = item.value();
  auto module = [&](const std::string& name) -> torch::nn::Module& {
    const auto it = modules.find(name);
    if (it == modules.end()) throw Error(exp.net_spec.cls + " has no module " + name);
    return *it->second;
  };
  torch::NoGradGuard no_grad;
  Flow flow;
  flow.kind = input.mean.empty() ? Flow::Kind::kPixels : Flow::Kind::kFloatImage;
  flow.step = 1.0 / 255.0;
  flow.channels = input.channels;
  const auto steps = exp.net->export_steps();
  for (size_t i = 0; i < steps.size(); ++i) {
    const ExportStep& st = steps[i];
    switch (st.kind) {
      case ExportStep::Kind::kFlatten: {
        Layer l;
        l.kind = LayerKind::kFlatten;
        l.name = "flatten";
        model.layers.push_back(l);
        flow.channels = -1;  // known to the next layer
        break;
      }
      case ExportStep::Kind::kLayer: {
        auto* layer = dynamic_cast<nn::AnaWeightLayer*>(&module(st.module));
        if (!layer)
          throw Error(st.module + " is a float layer: QuantLab exports networks whose conv and linear layers are all "
                      "quantized (with ANA)");
        if (flow.kind == Flow::Kind::kAcc || flow.kind == Flow::Kind::kFloatAcc)
          throw Error(st.module + " follows a layer without an activation between them");
        const AnaScheme& scheme = layer->scheme();
        const auto q = ana_tensor_ops_forward(layer->weight.detach(), scheme, layer->noise().mu, 0.0f)
                           .contiguous()
                           .to(torch::kFloat64);
        std::vector<double> values(q.data_ptr<double>(), q.data_ptr<double>() + q.numel());
        Layer l;
        l.name = st.module;
        if (!on_grid(values, scheme.quantizer.scale, l.weight_step, l.weights))
          throw Error(st.module + ": its quantized weights are not integer multiples of one step (non-uniform "
                      "levels); the integer export needs uniform ones");
        if (auto* conv = dynamic_cast<nn::AnaConvImpl*>(layer)) {
          const auto& o = conv->options();
          auto one = [&](const std::vector<int64_t>& v, const char* what) {
            for (int64_t x : v)
              if (x != v.front()) throw Error(st.module + ": only square " + std::string(what) + " are exported");
            return v.front();
          };
          if (o.dim != 2) throw Error(st.module + ": only 2-d convolutions are exported");
          if (one(o.dilation, "dilations") != 1) throw Error(st.module + ": dilated convolutions are not exported");
          l.kind = LayerKind::kConv;
          l.in = o.in_channels, l.out = o.out_channels, l.kernel = one(o.kernel_size, "kernels");
          l.stride = one(o.stride, "strides"), l.pad = one(o.padding, "paddings"), l.groups = o.groups;
        } else {
          l.kind = LayerKind::kLinear;
          l.in = layer->weight.size(1), l.out = layer->weight.size(0);
        }
        l.float_input = flow.kind == Flow::Kind::kFloatImage;
        // The 32-bit bound: every weight at its largest integer times the largest input.
        double worst = 0;
        const int64_t fan = l.in / l.groups * l.kernel * l.kernel;
        for (int64_t o = 0; o < l.out; ++o) {
          double sum = 0;
          for (int64_t j = 0; j < fan; ++j) sum += std::abs(l.weights[static_cast<size_t>(o * fan + j)]);
          worst = std::max(worst, sum);
        }
        if (!l.float_input && worst * flow.max_abs > 2147483647.0)
          throw Error(st.module + ": its accumulator could exceed 32 bits");
        Flow next;
        next.kind = l.float_input ? Flow::Kind::kFloatAcc : Flow::Kind::kAcc;
        next.step = l.float_input ? l.weight_step : l.weight_step * flow.step;
        next.max_abs = worst * flow.max_abs;
        next.channels = l.out;
        next.offset.assign(static_cast<size_t>(l.out), 0.0);
        if (layer->bias.defined())
          for (int64_t o = 0; o < l.out; ++o) next.offset[static_cast<size_t>(o)] = layer->bias[o].item<double>();
        model.layers.push_back(std::move(l));
        flow = next;
        break;
      }
      case ExportStep::Kind::kMaxPool: {
        Layer l;
        l.kind = LayerKind::kMaxPool;
        l.name = "maxpool after " + model.layers.back().name;
        l.pool_kernel = st.kernel, l.pool_stride = st.stride;
        // max commutes with s * A + offset (s > 0, the same offset in a channel).
        model.layers.push_back(l);
        break;
      }
      case ExportStep::Kind::kBatchNorm: {
        if (flow.kind != Flow::Kind::kAcc && flow.kind != Flow::Kind::kFloatAcc)
          throw Error(st.module + ": a batch norm that does not follow a conv or linear layer");
        const BatchNormValues bn = batch_norm_of(module(st.module), st.module);
        const size_t channels = bn.gain.size();
        const bool activation = i + 1 < steps.size() && steps[i + 1].kind == ExportStep::Kind::kActivation;
        if (!activation) {  // the scores
          if (flow.kind != Flow::Kind::kAcc) throw Error(st.module + ": the scores must come from integer layers");
          Layer l;
          l.kind = LayerKind::kAffine;
          l.name = st.module;
          l.channels = static_cast<int64_t>(channels);
          for (size_t c = 0; c < channels; ++c) {
            l.scale.push_back(bn.gain[c] * flow.step);
            l.shift.push_back(bn.gain[c] * (flow.offset[c] - bn.mean[c]) + bn.shift[c]);
          }
          model.num_classes = l.channels;
          model.layers.push_back(std::move(l));
          break;
        }
        const ExportStep& act = steps[++i];
        auto* site = dynamic_cast<nn::AnaSite*>(&module(act.module));
        if (!site) throw Error(act.module + " is a float activation: the integer export needs ANA activations");
        const Quantizer& quantizer = site->scheme().quantizer;
        const double mu = site->noise().mu;
        Layer l;
        l.kind = LayerKind::kThreshold;
        l.name = st.module + " + " + act.module;
        l.float_input = flow.kind == Flow::Kind::kFloatAcc;
        l.channels = static_cast<int64_t>(channels);
        l.num_thresholds = quantizer.num_thresholds();
        std::vector<double> levels(quantizer.levels.begin(), quantizer.levels.end());
        if (!on_grid(levels, quantizer.scale, l.level_step, l.levels))
          throw Error(act.module + ": its levels are not integer multiples of one step; the integer export needs "
                      "uniform levels");
        for (size_t c = 0; c < channels; ++c) {
          const double g = bn.gain[c];
          l.below.push_back(g < 0 ? 1 : 0);
          for (int k = 0; k < quantizer.num_thresholds(); ++k) {
            const double t = quantizer.thresholds[static_cast<size_t>(k)] + mu;
            // z = g * (scale * A + offset - mean) + shift >= t
            if (g == 0) {  // constant: always or never
              const bool on = bn.shift[c] >= t;
              if (l.float_input) l.float_thresholds.push_back(on ? -INFINITY : INFINITY);
              else l.int_thresholds.push_back(on ? std::numeric_limits<int32_t>::min() : std::numeric_limits<int32_t>::max());
              continue;
            }
            const double theta = (bn.mean[c] - flow.offset[c] + (t - bn.shift[c]) / g) / flow.step;
            if (l.float_input) l.float_thresholds.push_back(theta);
            else l.int_thresholds.push_back(clamp_i32(g > 0 ? std::ceil(theta) : std::floor(theta)));
          }
        }
        model.layers.push_back(std::move(l));
        flow.kind = Flow::Kind::kLevels;
        flow.step = model.layers.back().level_step;
        flow.max_abs = 0;
        for (int8_t v : model.layers.back().levels) flow.max_abs = std::max(flow.max_abs, std::abs(double(v)));
        flow.offset.clear();
        break;
      }
      case ExportStep::Kind::kActivation:
        throw Error(st.module + ": an activation without a batch norm before it is not exported");
    }
  }
  if (model.layers.empty() || model.layers.back().kind != LayerKind::kAffine)
    throw Error(exp.net_spec.cls + ": the network does not end with a batch norm of its scores");
  return model;
}

}  // namespace quantlab
