// Building a network's modules from its steps, and its forward pass.
#include "quantlab/topology/step_network.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/layout.h"
#include "quantlab/util/error.h"

namespace quantlab::topology {
namespace {

Layer build_one(const Step& s, LayerMaker& make, bool keep_bf16) {
  switch (s.kind) {
    case Step::Kind::kConv:
      return make.conv(s.name, s.in, s.out, s.kernel, s.stride, s.padding, s.groups, s.bias, keep_bf16);
    case Step::Kind::kLinear:
      return make.fc(s.name, s.in, s.out, s.bias, keep_bf16);
    case Step::Kind::kBatchNorm:
      return s.spatial ? make.bn2d(s.name, s.out) : make.bn1d(s.name, s.out);
    case Step::Kind::kActivation:
      if (s.float_identity && !make.quantized(s.name)) return {};
      return make.act(s.name);
    case Step::Kind::kMaxPool:
      return [k = s.kernel, st = s.stride](const torch::Tensor& x) { return torch::max_pool2d(x, k, st); };
    case Step::Kind::kGlobalAvgPool:
      return [](const torch::Tensor& x) { return torch::adaptive_avg_pool2d(x, {1, 1}); };
    case Step::Kind::kFlatten:
      return [](const torch::Tensor& x) { return x.reshape({x.size(0), -1}); };
    case Step::Kind::kResidual:
      break;
  }
  return {};
}

// Whether list[i] is a batch norm followed by a quantized activation (fused in training).
bool fuses_with_act(const Steps& list, size_t i, const LayerMaker& make) {
  return i + 1 < list.size() && list[i].kind == Step::Kind::kBatchNorm && list[i + 1].kind == Step::Kind::kActivation &&
         list[i + 1].quantizable && make.quantized(list[i + 1].name);
}

// The first step from list[i] on that is not a max pool (nor, with flatten_too, a flatten).
const Step* next_real(const Steps& list, size_t i, bool flatten_too) {
  for (; i < list.size(); ++i) {
    const Step::Kind k = list[i].kind;
    if (k != Step::Kind::kMaxPool && !(flatten_too && k == Step::Kind::kFlatten)) return &list[i];
  }
  return nullptr;
}

}  // namespace

StepNetwork::StepNetwork(std::string cls, Steps steps, std::map<std::string, core::AnaScheme> schemes,
                         const config::JsonNode& params, FloatInit init)
    : cls_(std::move(cls)), steps_(std::move(steps)) {
  LayerMaker make(*this, std::move(schemes), params);
  std::function<std::vector<Built>(const Steps&)> build = [&](const Steps& list) {
    // Under --amp a product passes its bfloat16 result to a fused batch norm (through a max pool),
    // and the fused activation gives bfloat16 to the next product (through a max pool, a flatten).
    std::vector<Built> out;
    for (size_t i = 0; i < list.size(); ++i) {
      const Step& s = list[i];
      Built b;
      if (s.kind == Step::Kind::kResidual) {
        b.branch = build(s.branch);
      } else {
        bool keep_bf16 = false;
        if (s.kind == Step::Kind::kConv || s.kind == Step::Kind::kLinear) {
          const Step* next = next_real(list, i + 1, false);
          keep_bf16 = next != nullptr && fuses_with_act(list, static_cast<size_t>(next - list.data()), make);
        }
        b.run = build_one(s, make, keep_bf16);
      }
      out.push_back(std::move(b));
    }
    for (size_t i = 0; i < list.size(); ++i) {
      if (!fuses_with_act(list, i, make)) continue;
      const Step* next = next_real(list, i + 2, true);
      const bool bf16_out = next != nullptr && (next->kind == Step::Kind::kConv || next->kind == Step::Kind::kLinear);
      out[i].fused = make.bn_act(list[i].name, list[i + 1].name, bf16_out);
    }
    return out;
  };
  built_ = build(steps_);
  if (init == FloatInit::kHe) make.init_float_layers_he();
}

torch::Tensor StepNetwork::forward(const torch::Tensor& x) {
  // Convolutional networks compute in the layout conv_layout chooses.
  const bool image = !steps_.empty() && steps_.front().kind == Step::Kind::kConv;
  return run(steps_, built_, image ? conv_layout(x) : x, x, nullptr);
}

torch::Tensor StepNetwork::forward(const torch::Tensor& x, const Visitor& visit) {
  const bool image = !steps_.empty() && steps_.front().kind == Step::Kind::kConv;
  return run(steps_, built_, image ? conv_layout(x) : x, x, &visit);
}

torch::Tensor StepNetwork::run(const Steps& steps, const std::vector<Built>& built, torch::Tensor x,
                               const torch::Tensor& input, const Visitor* visit) {
  for (size_t i = 0; i < steps.size(); ++i) {
    const Step& s = steps[i];
    torch::Tensor y;
    if (s.kind == Step::Kind::kResidual) {
      y = x + run(s.branch, built[i].branch, x, input, visit);
    } else {
      if (s.kind == Step::Kind::kFlatten && s.expect_map > 0 && x.dim() == 4 &&
          (x.size(2) != s.expect_map || x.size(3) != s.expect_map)) {
        const std::string next = i + 1 < steps.size() ? steps[i + 1].name : "the end";
        const std::string side = std::to_string(s.expect_map);
        throw Error(cls_ + ": inputs of " + std::to_string(input.size(2)) + "x" + std::to_string(input.size(3)) +
                    " pixels give a " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                    " feature map before " + next + ", which expects " + side + "x" + side +
                    (s.hint.empty() ? "" : ": " + s.hint));
      }
      if (built[i].fused && visit == nullptr) {  // the batch norm and its activation in one
        x = built[i].fused(x);
        ++i;
        continue;
      }
      y = built[i].run ? built[i].run(x) : x;
    }
    if (visit) (*visit)(s, x, y);
    x = std::move(y);
  }
  return x;
}

std::shared_ptr<Network> make_step_network(const std::string& cls, Steps steps, const config::JsonNode& params,
                                           bool baseline, StepNetwork::FloatInit init) {
  auto schemes = baseline ? std::map<std::string, core::AnaScheme>{}
                          : config::parse_quant_schemes(params.at("quant_schemes"), quantizable_names(steps));
  return std::make_shared<StepNetwork>(cls, std::move(steps), std::move(schemes), params, init);
}

}  // namespace quantlab::topology
