// Builds and registers a topology's named layers, quantized or not by the name alone: a layer
// whose name has a quantization scheme goes through ANA (AnaConv, AnaLinear, AnaActivation), any
// other is the float layer. So one description of a network gives both its quantized variant and
// its baseline, with the original's parameter names.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "quantlab/core/ana.h"
#include "quantlab/core/bn_ana.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/topology/network.h"
#include "quantlab/topology/steps.h"

namespace quantlab::topology {

class LayerMaker {
 public:
  // `schemes` may be empty (a baseline). `params` (indiv.net.params) names the capacity in the
  // errors of layers that come out empty or too large for this machine's memory.
  LayerMaker(Network& net, std::map<std::string, core::AnaScheme> schemes, const config::JsonNode& params)
      : net_(net), schemes_(std::move(schemes)), params_(params) {}

  // keep_bf16: under --amp, the product's bfloat16 result is passed on as it is (to a batch norm
  // fused with its ANA activation, which reads it).
  Layer conv(const std::string& name, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
             int64_t groups = 1, bool bias = false, bool keep_bf16 = false);
  Layer fc(const std::string& name, int64_t in, int64_t out, bool bias = false, bool keep_bf16 = false);
  Layer bn2d(const std::string& name, int64_t channels);
  Layer bn1d(const std::string& name, int64_t features);
  // ANA when `name` has a scheme, else `float_act` (default ReLU6, a clamp to [0, 6]).
  Layer act(const std::string& name, Layer float_act = {});
  // The batch norm `bn` (made by bn2d / bn1d) and the quantized activation `act` (made by act) as
  // one operator in training mode on the CPU (core/bn_ana.h), the two layers one after the other
  // otherwise. bf16_out: under --amp, the activation's output in bfloat16 (the next product's
  // operand type). Its input may be bfloat16 (a product's result kept with keep_bf16).
  Layer bn_act(const std::string& bn, const std::string& act, bool bf16_out);

  // Initialises the float layers as the original's MobileNetV2: conv N(0, sqrt(2 / (k*k*out))),
  // linear N(0, 0.01), biases 0. (Batch norms start at 1 and 0 already; ANA layers keep theirs.)
  void init_float_layers_he();

  bool quantized(const std::string& name) const { return schemes_.count(name) > 0; }

 private:
  // Throws ConfigError naming the capacity when a layer has no units, or when the parameters so
  // far (with their gradients and two optimizer moments) would not fit in this machine's memory.
  void check_size(const std::string& name, int64_t in, int64_t out, double weights);
  Network& net_;
  std::map<std::string, core::AnaScheme> schemes_;
  config::JsonNode params_;
  double total_weights_ = 0;
  std::vector<torch::nn::Conv2d> convs_;
  std::vector<torch::nn::Linear> linears_;
  struct BatchNormHandle {
    std::shared_ptr<torch::nn::Module> module;
    std::function<core::BatchNormRefs()> refs;
    Layer run;
  };
  std::map<std::string, BatchNormHandle> bns_;
  std::map<std::string, std::pair<nn::AnaActivation, Layer>> acts_;
};

// The params every topology shares: `capacity` (a positive width factor) and `num_classes` (>= 2).
double parse_capacity(const config::JsonNode& params);
int64_t parse_num_classes(const config::JsonNode& params, int64_t fallback);

}  // namespace quantlab::topology
