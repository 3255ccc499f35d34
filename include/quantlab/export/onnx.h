// An exported integer model (runtime/model.h) as a standard ONNX model (IR version 8, opset 13):
//   input  "image"  uint8 [N, C, H, W]: the stored pixels
//   output "scores" float [N, classes], "label" int64 [N]
// Integer layers are ConvInteger / MatMulInteger on uint8 activations with zero points (levels are
// stored as level + 128, pixels as they are; padding with the zero point, so real 0); batch norm
// and activation are per-channel GreaterOrEqual comparisons against the folded thresholds (on the
// accumulator cast to float, exact below 2^24), counted and mapped to the next levels with Gather.
// A float layer (a first layer on a normalised image) is Conv / MatMul in float; the scores are the
// last layer's accumulator times its scale plus its shift, in float.
#pragma once

#include <string>

#include "quantlab/runtime/model.h"

namespace quantlab::export_ {

// Throws Error naming the first layer the writer does not write (a float step: MobileNetV2's);
// cheap, so the export calls it before its parity check.
void check_onnx_layers(const runtime::Model& model);

// Throws Error when a layer cannot be written (check_onnx_layers, or an accumulator that float
// cannot hold exactly).
void write_onnx(const runtime::Model& model, const std::string& file);

}  // namespace quantlab::export_
