// The multi-layer perceptron of the original's MNIST problem:
//   [N, 1, 28, 28] -> 784 -> 2048c -> 2048c -> 2048c -> 10, each linear layer without bias and
// followed by BatchNorm1d; MLP: ternary weights (phiK_fc) and activations (phiK_act) through ANA;
// MLPBaseline: float weights and ReLU. Parameter names as the original: phi1_fc, phi1_bn, ...
#pragma once

#include "quantlab/core/ana.h"
#include "quantlab/topology/network.h"

namespace quantlab {

struct MlpOptions {
  double capacity = 1.0;      // hidden width = int(2048 * capacity)
  int64_t in_features = 784;  // 28 * 28
  int64_t num_classes = 10;
};

std::shared_ptr<Network> make_mlp(const JsonNode& params);
std::shared_ptr<Network> make_mlp_baseline(const JsonNode& params);

// Names of the MLP's quantized modules, in forward order.
std::vector<std::string> mlp_quantized_modules();

}  // namespace quantlab
