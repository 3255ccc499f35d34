// MLP and MLPBaseline.
#include "quantlab/topology/mlp.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/topology/layer_maker.h"

namespace quantlab {
namespace {

struct MlpOptions {
  double capacity = 1.0;      // hidden width = int(2048 * capacity)
  int64_t in_features = 784;  // 28 * 28
  int64_t num_classes = 10;
};

MlpOptions parse_options(const JsonNode& params) {
  MlpOptions o;
  o.capacity = parse_capacity(params);
  o.num_classes = parse_num_classes(params, 10);
  return o;
}

// Both variants: a layer is quantized when its name has a scheme (none for the baseline, whose
// activations are ReLU6 and whose last layer has a bias and no batch norm, as the original's).
class Mlp : public Network {
 public:
  Mlp(const MlpOptions& o, std::map<std::string, AnaScheme> schemes, const JsonNode& params) {
    const bool baseline = schemes.empty();
    LayerMaker make(*this, std::move(schemes), params);
    const auto nh = static_cast<int64_t>(2048 * o.capacity);
    const int64_t in[] = {o.in_features, nh, nh, nh};
    const int64_t out[] = {nh, nh, nh, o.num_classes};
    for (int k = 0; k < 4; ++k) {
      const std::string p = "phi" + std::to_string(k + 1);
      const bool last = k == 3;
      fc_.push_back(make.fc(p + "_fc", in[k], out[k], last && baseline));
      bn_.push_back(last && baseline ? Layer() : make.bn1d(p + "_bn", out[k]));
      act_.push_back(last ? Layer() : make.act(p + "_act"));
    }
  }

  std::vector<ExportStep> export_steps() const override {
    std::vector<ExportStep> steps{{ExportStep::Kind::kFlatten}};
    for (size_t k = 0; k < fc_.size(); ++k) {
      const std::string p = "phi" + std::to_string(k + 1);
      steps.push_back({ExportStep::Kind::kLayer, p + "_fc"});
      if (bn_[k]) steps.push_back({ExportStep::Kind::kBatchNorm, p + "_bn"});
      if (act_[k]) steps.push_back({ExportStep::Kind::kActivation, p + "_act"});
    }
    return steps;
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = input.reshape({input.size(0), -1});
    for (size_t k = 0; k < fc_.size(); ++k) {
      x = fc_[k](x);
      if (bn_[k]) x = bn_[k](x);
      if (act_[k]) x = act_[k](x);
    }
    return x;
  }

 private:
  std::vector<Layer> fc_, bn_, act_;
};

}  // namespace

std::vector<std::string> mlp_quantized_modules() {
  return {"phi1_fc", "phi1_act", "phi2_fc", "phi2_act", "phi3_fc", "phi3_act", "phi4_fc"};
}

std::shared_ptr<Network> make_mlp(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes", "quant_schemes"});
  const MlpOptions o = parse_options(params);
  return std::make_shared<Mlp>(o, parse_quant_schemes(params.at("quant_schemes"), mlp_quantized_modules()), params);
}

std::shared_ptr<Network> make_mlp_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes"});
  return std::make_shared<Mlp>(parse_options(params), std::map<std::string, AnaScheme>{}, params);
}

QL_REGISTER_TOPOLOGY(MLP, "MLP", make_mlp);
QL_REGISTER_TOPOLOGY(MLPBaseline, "MLP", make_mlp_baseline);

}  // namespace quantlab
