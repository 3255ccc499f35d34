// VGG and VGGBaseline.
#include "quantlab/topology/vgg.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/topology/layer_maker.h"

namespace quantlab {
namespace {

struct VggOptions {
  double capacity = 1.0;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
};

VggOptions parse_vgg_options(const JsonNode& params) {
  VggOptions o;
  o.capacity = parse_capacity(params);
  o.in_channels = params.integer("in_channels", 3);
  if (o.in_channels < 1) params.at("in_channels").fail("expected a positive number of channels");
  o.num_classes = parse_num_classes(params, 10);
  return o;
}

constexpr int kConvs = 6, kDense = 3;
constexpr int64_t kHidden = 1024;

// Channels of conv layer k (0-based) and whether a max-pooling follows it.
std::vector<int64_t> conv_channels(const VggOptions& o) {
  const auto c1 = static_cast<int64_t>(128 * o.capacity), c2 = static_cast<int64_t>(256 * o.capacity),
             c3 = static_cast<int64_t>(512 * o.capacity);
  return {o.in_channels, c1, c1, c2, c2, c3, c3};
}
bool pools_after(int k) { return k % 2 == 1; }

std::string layer_name(int k, const char* what) { return "phi" + std::to_string(k + 1) + "_" + what; }

// Both variants: a layer is quantized when its name has a scheme (none for the baseline, whose
// activations are ReLU6 and whose last layer has a bias and no batch norm, as the original's).
class Vgg : public Network {
 public:
  Vgg(const VggOptions& o, std::map<std::string, AnaScheme> schemes, const JsonNode& params) {
    const bool baseline = schemes.empty();
    LayerMaker make(*this, std::move(schemes), params);
    const auto ch = conv_channels(o);
    for (int k = 0; k < kConvs; ++k) {
      convs_.push_back(make.conv(layer_name(k, "conv"), ch[k], ch[k + 1], 3, 1, 1));
      bns_.push_back(make.bn2d(layer_name(k, "bn"), ch[k + 1]));
      acts_.push_back(make.act(layer_name(k, "act")));
    }
    const int64_t dims[] = {ch[kConvs] * 4 * 4, kHidden, kHidden, o.num_classes};
    for (int k = 0; k < kDense; ++k) {
      const int idx = kConvs + k;
      const bool last = k + 1 == kDense;
      fcs_.push_back(make.fc(layer_name(idx, "fc"), dims[k], dims[k + 1], last && baseline));
      bns_.push_back(last && baseline ? Layer() : make.bn1d(layer_name(idx, "bn"), dims[k + 1]));
      acts_.push_back(last ? Layer() : make.act(layer_name(idx, "act")));
    }
  }

  std::vector<ExportStep> export_steps() const override {
    std::vector<ExportStep> steps;
    for (int k = 0; k < kConvs; ++k) {
      steps.push_back({ExportStep::Kind::kLayer, layer_name(k, "conv")});
      if (pools_after(k)) steps.push_back({ExportStep::Kind::kMaxPool, "", 2, 2});
      steps.push_back({ExportStep::Kind::kBatchNorm, layer_name(k, "bn")});
      steps.push_back({ExportStep::Kind::kActivation, layer_name(k, "act")});
    }
    steps.push_back({ExportStep::Kind::kFlatten});
    for (int k = 0; k < kDense; ++k) {
      steps.push_back({ExportStep::Kind::kLayer, layer_name(kConvs + k, "fc")});
      if (bns_[kConvs + k]) steps.push_back({ExportStep::Kind::kBatchNorm, layer_name(kConvs + k, "bn")});
      if (acts_[kConvs + k]) steps.push_back({ExportStep::Kind::kActivation, layer_name(kConvs + k, "act")});
    }
    return steps;
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = conv_layout(input);
    for (int k = 0; k < kConvs; ++k) {
      x = convs_[k](x);
      if (pools_after(k)) x = torch::max_pool2d(x, 2, 2);
      x = acts_[k](bns_[k](x));
    }
    x = x.reshape({x.size(0), -1});
    for (int k = 0; k < kDense; ++k) {
      x = fcs_[k](x);
      if (bns_[kConvs + k]) x = bns_[kConvs + k](x);
      if (acts_[kConvs + k]) x = acts_[kConvs + k](x);
    }
    return x;
  }

 private:
  std::vector<Layer> convs_, bns_, fcs_, acts_;
};

}  // namespace

std::vector<std::string> vgg_quantized_modules() {
  std::vector<std::string> out;
  for (int k = 0; k < kConvs + kDense; ++k) {
    out.push_back(layer_name(k, k < kConvs ? "conv" : "fc"));
    if (k + 1 < kConvs + kDense) out.push_back(layer_name(k, "act"));
  }
  return out;
}

std::shared_ptr<Network> make_vgg(const JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes", "quant_schemes"});
  const VggOptions o = parse_vgg_options(params);
  return std::make_shared<Vgg>(o, parse_quant_schemes(params.at("quant_schemes"), vgg_quantized_modules()), params);
}

std::shared_ptr<Network> make_vgg_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes"});
  return std::make_shared<Vgg>(parse_vgg_options(params), std::map<std::string, AnaScheme>{}, params);
}

QL_REGISTER_TOPOLOGY(VGG, "VGG", make_vgg);
QL_REGISTER_TOPOLOGY(VGGBaseline, "VGG", make_vgg_baseline);

}  // namespace quantlab
