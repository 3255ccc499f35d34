// From a trained quantized network to an integer model (runtime/model.h), by replaying the
// network's forward steps (Network::export_steps) and folding them (docs/EXPORT.md):
//   - quantized weights become their integer levels (level / step, the quantizer's eps or 1);
//   - a conv or linear layer's output is an integer accumulator A, whose real value is
//     s * A with s = weight step x input step (the pixels' 1/255 on the first layer);
//   - each batch norm followed by an ANA activation becomes, per channel, one integer threshold per
//     step of the stair on A: z = g (s A - mean) + b >= mu + t_k  <=>  A >= ceil(theta_k) for g > 0,
//     A <= floor(theta_k) for g < 0 (constant for g = 0), theta_k = (mean + (mu + t_k - b) / g) / s;
//   - the last batch norm becomes the affine scores;
//   - a first layer on a normalised image (CIFAR, ImageNet) computes in floating point, with
//     thresholds on its float output (the file marks it so).
// Throws Error naming the module that cannot be exported (a float layer in a quantized network,
// non-uniform levels, an accumulator that could overflow 32 bits).
#pragma once

#include <string>

#include "quantlab/data/problem.h"
#include "quantlab/runtime/model.h"
#include "quantlab/train/experiment.h"

namespace quantlab::export_ {

// How the problem's test images reach the network (shape, padding, normalisation); throws Error
// for data the runtime cannot read (image folders).
runtime::InputSpec export_input(const train::Experiment& exp, const data::ProblemData& data);

// Whether the network has any quantized (ANA) layer: a float baseline has nothing to integerise.
bool has_quantized_layers(const train::Experiment& exp);

runtime::Model export_model(const train::Experiment& exp, const runtime::InputSpec& input, const std::string& problem,
                            const std::string& source);

}  // namespace quantlab::export_
