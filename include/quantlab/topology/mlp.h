// The multi-layer perceptron of the original's MNIST problem:
//   [N, 1, 28, 28] -> 784 -> 2048c -> 2048c -> 2048c -> num_classes (10), c = capacity.
// MLP: ternary weights (phiK_fc, no bias) and activations (phiK_act) through ANA, BatchNorm1d
//   after every linear layer (phi4_bn included).
// MLPBaseline: float weights, ReLU6, and a last layer phi4_fc with bias and no batch norm.
// Parameter names as the original: phi1_fc, phi1_bn, ... Params: capacity (1), num_classes (10),
// quant_schemes (MLP).
#pragma once

#include "quantlab/topology/network.h"

namespace quantlab::topology {

std::shared_ptr<Network> make_mlp(const config::JsonNode& params);
std::shared_ptr<Network> make_mlp_baseline(const config::JsonNode& params);

// Names of the MLP's quantized modules, in forward order.
std::vector<std::string> mlp_quantized_modules();

}  // namespace quantlab::topology
