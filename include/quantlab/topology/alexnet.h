// AlexNet as the original's (the paper's ImageNet experiments), names phi1_conv .. phi8_bn:
//   [N, 3, 224, 224] (or 227) -> conv 11x11/4 64c, MP 3/2 -> conv 5x5 192c, MP -> conv 3x3 384c ->
//   conv 3x3 256c -> conv 3x3 256c, MP -> FC 4096 -> FC 4096 -> FC num_classes; no biases, batch
//   norm after every layer (after the max-pooling where there is one). Widths of phi1..phi4 scale
//   with capacity (64, 192, 384, 256 x capacity); phi5 has 256 channels, the FCs 4096.
// AlexNet: ternary weights and activations through ANA (quant_schemes for the 15 modules);
// AlexNetBaseline: float weights, ReLU6, and a last FC with bias and no batch norm.
// Params: capacity (1), num_classes (1000), quant_schemes (AlexNet).
#pragma once

#include "quantlab/topology/network.h"

namespace quantlab::topology {

std::shared_ptr<Network> make_alexnet(const config::JsonNode& params);
std::shared_ptr<Network> make_alexnet_baseline(const config::JsonNode& params);

// Names of AlexNet's quantized modules, in forward order.
std::vector<std::string> alexnet_quantized_modules();

}  // namespace quantlab::topology
