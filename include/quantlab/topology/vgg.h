// The VGG-like network of the paper's CIFAR-10 experiments (the original's names):
//   [N, C, 32, 32] -> 2x128c conv3 (MP) -> 2x256c conv3 (MP) -> 2x512c conv3 (MP) -> FC 1024 ->
//   FC 1024 -> FC num_classes; BatchNorm after every layer (after the max-pooling where there is
//   one), layers phi1_conv .. phi6_conv, phi7_fc .. phi9_fc, phiK_bn, phiK_act.
// VGG: ternary weights and activations through ANA; VGGBaseline: float weights, ReLU6, and a
// last layer phi9_fc with bias and no batch norm, as the original's.
// Params: capacity (default 1), in_channels (3; 1 for Fashion-MNIST padded to 32x32),
// num_classes (10), and for VGG quant_schemes of the 17 quantized modules.
#pragma once

#include "quantlab/topology/network.h"

namespace quantlab::topology {

std::shared_ptr<Network> make_vgg(const config::JsonNode& params);
std::shared_ptr<Network> make_vgg_baseline(const config::JsonNode& params);

// Names of the VGG's quantized modules, in forward order.
std::vector<std::string> vgg_quantized_modules();

}  // namespace quantlab::topology
