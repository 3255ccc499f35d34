// AlexNet and AlexNetBaseline.
#include "quantlab/topology/alexnet.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/topology/layer_maker.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

struct AlexNetOptions {
  double capacity = 1.0;
  int64_t num_classes = 1000;
};

AlexNetOptions parse_alexnet_options(const JsonNode& params) {
  AlexNetOptions o;
  o.capacity = parse_capacity(params);
  o.num_classes = parse_num_classes(params, 1000);
  return o;
}

std::string alexnet_name(int k, const char* what) { return "phi" + std::to_string(k) + "_" + what; }

constexpr int64_t kAlexHidden = 4096, kAlexC5 = 256, kAlexMap = 6;

class AlexNet : public Network {
 public:
  AlexNet(const AlexNetOptions& o, std::map<std::string, AnaScheme> schemes, bool baseline, const JsonNode& params) {
    LayerMaker make(*this, std::move(schemes), params);
    const auto cap = [&](int64_t c) { return static_cast<int64_t>(static_cast<double>(c) * o.capacity); };
    const int64_t ch[] = {3, cap(64), cap(64 * 3), cap(64 * 6), cap(64 * 4), kAlexC5};
    const int64_t kernel[] = {11, 5, 3, 3, 3}, stride[] = {4, 1, 1, 1, 1}, pad[] = {2, 2, 1, 1, 1};
    for (int k = 1; k <= 5; ++k) {
      convs_.push_back(make.conv(alexnet_name(k, "conv"), ch[k - 1], ch[k], kernel[k - 1], stride[k - 1], pad[k - 1]));
      bns_.push_back(make.bn2d(alexnet_name(k, "bn"), ch[k]));
      acts_.push_back(make.act(alexnet_name(k, "act")));
    }
    const int64_t dims[] = {kAlexC5 * kAlexMap * kAlexMap, kAlexHidden, kAlexHidden, o.num_classes};
    for (int k = 6; k <= 8; ++k) {
      const bool last = k == 8;
      fcs_.push_back(make.fc(alexnet_name(k, "fc"), dims[k - 6], dims[k - 5], last && baseline));
      if (!(last && baseline)) bns_.push_back(make.bn1d(alexnet_name(k, "bn"), dims[k - 5]));
      if (!last) acts_.push_back(make.act(alexnet_name(k, "act")));
    }
  }

  std::vector<ExportStep> export_steps() const override {
    std::vector<ExportStep> steps;
    for (size_t k = 0; k < convs_.size(); ++k) {
      const int n = static_cast<int>(k) + 1;
      steps.push_back({ExportStep::Kind::kLayer, alexnet_name(n, "conv")});
      if (k == 0 || k == 1 || k == 4) steps.push_back({ExportStep::Kind::kMaxPool, "", 3, 2});
      steps.push_back({ExportStep::Kind::kBatchNorm, alexnet_name(n, "bn")});
      steps.push_back({ExportStep::Kind::kActivation, alexnet_name(n, "act")});
    }
    steps.push_back({ExportStep::Kind::kFlatten});
    for (size_t k = 0; k < fcs_.size(); ++k) {
      const int n = static_cast<int>(convs_.size() + k) + 1;
      steps.push_back({ExportStep::Kind::kLayer, alexnet_name(n, "fc")});
      if (convs_.size() + k < bns_.size()) steps.push_back({ExportStep::Kind::kBatchNorm, alexnet_name(n, "bn")});
      if (convs_.size() + k < acts_.size()) steps.push_back({ExportStep::Kind::kActivation, alexnet_name(n, "act")});
    }
    return steps;
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = conv_layout(input);
    for (size_t k = 0; k < convs_.size(); ++k) {
      x = convs_[k](x);
      if (k == 0 || k == 1 || k == 4) x = torch::max_pool2d(x, 3, 2);
      x = acts_[k](bns_[k](x));
    }
    if (x.size(2) != kAlexMap || x.size(3) != kAlexMap)
      throw Error("AlexNet: inputs of " + std::to_string(input.size(2)) + "x" + std::to_string(input.size(3)) +
                  " pixels give a " + std::to_string(x.size(2)) + "x" + std::to_string(x.size(3)) +
                  " feature map before phi6_fc, which expects 6x6: use crops of 224 to 227 pixels");
    x = x.reshape({x.size(0), -1});
    for (size_t k = 0; k < fcs_.size(); ++k) {
      x = fcs_[k](x);
      if (convs_.size() + k < bns_.size()) x = bns_[convs_.size() + k](x);
      if (convs_.size() + k < acts_.size()) x = acts_[convs_.size() + k](x);
    }
    return x;
  }

 private:
  std::vector<Layer> convs_, fcs_, bns_, acts_;
};

}  // namespace

std::vector<std::string> alexnet_quantized_modules() {
  std::vector<std::string> out;
  for (int k = 1; k <= 8; ++k) {
    out.push_back(alexnet_name(k, k <= 5 ? "conv" : "fc"));
    if (k < 8) out.push_back(alexnet_name(k, "act"));
  }
  return out;
}

std::shared_ptr<Network> make_alexnet(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes", "quant_schemes"});
  const AlexNetOptions o = parse_alexnet_options(params);
  return std::make_shared<AlexNet>(o, parse_quant_schemes(params.at("quant_schemes"), alexnet_quantized_modules()),
                                   false, params);
}

std::shared_ptr<Network> make_alexnet_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes"});
  return std::make_shared<AlexNet>(parse_alexnet_options(params), std::map<std::string, AnaScheme>{}, true, params);
}

QL_REGISTER_TOPOLOGY(AlexNet, "AlexNet", make_alexnet);
QL_REGISTER_TOPOLOGY(AlexNetBaseline, "AlexNet", make_alexnet_baseline);

}  // namespace quantlab
