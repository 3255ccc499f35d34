// MobileNetV2 as the original's (layers phi01 .. phi53, inverted residual blocks):
//   stem conv 3x3/2 (32c) + depthwise + projection to 16c; then six stages of an expanding block
//   (1x1 expand by `expansion`, 3x3 depthwise with the stage's stride, 1x1 projection) followed by
//   residual blocks of the same shape (24c x1 residual, 32c x2, 64c x3, 96c x2, 160c x2, 320c x0;
//   strides 2, 2, 2, 1, 2, 1); 1x1 conv to 1280c, global average pooling, FC num_classes (bias).
//   Channel widths scale with capacity (the 1280 never below 1280). Batch norm after every conv,
//   ReLU6 after every non-projection conv.
// MobileNetv2Residuals: the layers inside the residual blocks go through ANA, and each residual
//   branch starts with an ANA activation of the block input (phi06_act, phi12_act, ...), as in
//   the original's config; stem, expanding blocks and classifier stay in floating point. Depthwise
//   convolutions are ANA convolutions with groups = channels.
// MobileNetv2Baseline: all float.
// Params: capacity (1), expansion (6), num_classes (1000), quant_schemes (Residuals: 60 modules).
#pragma once

#include "quantlab/topology/network.h"

namespace quantlab::topology {

std::shared_ptr<Network> make_mobilenetv2_residuals(const config::JsonNode& params);
std::shared_ptr<Network> make_mobilenetv2_baseline(const config::JsonNode& params);

// Names of MobileNetv2Residuals' quantized modules, in forward order.
std::vector<std::string> mobilenetv2_quantized_modules();

}  // namespace quantlab::topology
