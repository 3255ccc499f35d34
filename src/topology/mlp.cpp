// MLP and MLPBaseline.
#include "quantlab/topology/mlp.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/topology/layer_maker.h"

namespace quantlab {
namespace {

MlpOptions parse_options(const JsonNode& params) {
  MlpOptions o;
  o.capacity = parse_capacity(params);
  o.num_classes = params.integer("num_classes", 10);
  return o;
}

int64_t hidden(const MlpOptions& o) { return static_cast<int64_t>(2048 * o.capacity); }

class Mlp : public Network {
 public:
  Mlp(const MlpOptions& o, const std::map<std::string, AnaScheme>& q) {
    const int64_t nh = hidden(o);
    const int64_t in[] = {o.in_features, nh, nh, nh};
    const int64_t out[] = {nh, nh, nh, o.num_classes};
    for (int k = 0; k < 4; ++k) {
      const std::string p = "phi" + std::to_string(k + 1);
      fc_.push_back(register_module(p + "_fc", nn::AnaLinear(q.at(p + "_fc"), in[k], out[k])));
      bn_.push_back(register_module(p + "_bn", torch::nn::BatchNorm1d(out[k])));
      if (k < 3) act_.push_back(register_module(p + "_act", nn::AnaActivation(q.at(p + "_act"))));
    }
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = input.reshape({input.size(0), -1});
    for (size_t k = 0; k < fc_.size(); ++k) {
      x = bn_[k]->forward(fc_[k]->forward(x));
      if (k < act_.size()) x = act_[k]->forward(x);
    }
    return x;
  }

 private:
  std::vector<nn::AnaLinear> fc_;
  std::vector<torch::nn::BatchNorm1d> bn_;
  std::vector<nn::AnaActivation> act_;
};

class MlpBaseline : public Network {
 public:
  explicit MlpBaseline(const MlpOptions& o) {
    const int64_t nh = hidden(o);
    const int64_t in[] = {o.in_features, nh, nh, nh};
    const int64_t out[] = {nh, nh, nh, o.num_classes};
    for (int k = 0; k < 4; ++k) {
      const std::string p = "phi" + std::to_string(k + 1);
      fc_.push_back(register_module(
          p + "_fc", torch::nn::Linear(torch::nn::LinearOptions(in[k], out[k]).bias(false))));
      bn_.push_back(register_module(p + "_bn", torch::nn::BatchNorm1d(out[k])));
    }
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = input.reshape({input.size(0), -1});
    for (size_t k = 0; k < fc_.size(); ++k) {
      x = bn_[k]->forward(fc_[k]->forward(x));
      if (k + 1 < fc_.size()) x = torch::relu(x);
    }
    return x;
  }

 private:
  std::vector<torch::nn::Linear> fc_;
  std::vector<torch::nn::BatchNorm1d> bn_;
};

}  // namespace

std::vector<std::string> mlp_quantized_modules() {
  return {"phi1_fc", "phi1_act", "phi2_fc", "phi2_act", "phi3_fc", "phi3_act", "phi4_fc"};
}

std::shared_ptr<Network> make_mlp(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes", "quant_schemes"});
  const MlpOptions o = parse_options(params);
  const auto schemes = parse_quant_schemes(params.at("quant_schemes"), mlp_quantized_modules());
  return std::make_shared<Mlp>(o, schemes);
}

std::shared_ptr<Network> make_mlp_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "num_classes"});
  return std::make_shared<MlpBaseline>(parse_options(params));
}

}  // namespace quantlab
