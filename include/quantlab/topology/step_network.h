// A network built from its steps (topology/steps.h): the modules of every step under the step's
// name, and a forward pass that walks the steps in order. Every shipped topology is one.
#pragma once

#include <functional>
#include <map>
#include <string>

#include "quantlab/core/ana.h"
#include "quantlab/topology/network.h"
#include "quantlab/topology/steps.h"

namespace quantlab::topology {

class StepNetwork : public Network {
 public:
  // How float conv and linear layers start: libtorch's defaults, or MobileNetV2's (the
  // original's): conv N(0, sqrt(2 / (k*k*out))), linear N(0, 0.01), biases 0.
  enum class FloatInit { kTorch, kHe };

  // `cls` names the network in errors (indiv.net.class); `schemes` (none for a baseline) makes the
  // steps they name quantized; `params` (indiv.net.params) names the capacity in size errors.
  StepNetwork(std::string cls, Steps steps, std::map<std::string, core::AnaScheme> schemes,
              const config::JsonNode& params, FloatInit init = FloatInit::kTorch);

  torch::Tensor forward(const torch::Tensor& x) override;

  // The forward pass, calling `visit(step, input, output)` after each step (a residual step after
  // its branch and the addition). The export's parity check replays the network with it.
  using Visitor = std::function<void(const Step&, const torch::Tensor&, const torch::Tensor&)>;
  torch::Tensor forward(const torch::Tensor& x, const Visitor& visit);

  const Steps* steps() const override { return &steps_; }
  const std::string& class_name() const { return cls_; }

 private:
  struct Built {
    Layer run;  // empty: an identity (an activation without a scheme and without a float form)
    std::vector<Built> branch;
    Layer fused;  // a batch norm and the quantized activation after it, as one operator (LayerMaker::bn_act)
  };
  torch::Tensor run(const Steps& steps, const std::vector<Built>& built, torch::Tensor x, const torch::Tensor& input,
                    const Visitor* visit);

  std::string cls_;
  Steps steps_;
  std::vector<Built> built_;
};

// A topology's factory: the network of `steps`, quantized where indiv.net.params.quant_schemes
// (`params`) says, which must name every quantizable step (none for a baseline, whose params have
// no quant_schemes).
std::shared_ptr<Network> make_step_network(const std::string& cls, Steps steps, const config::JsonNode& params,
                                           bool baseline, StepNetwork::FloatInit init = StepNetwork::FloatInit::kTorch);

}  // namespace quantlab::topology
