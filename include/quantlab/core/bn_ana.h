// Batch normalisation in training mode followed by the ANA operator, as one autograd operator on
// the CPU (core/bn_ana_kernel.h): the batch norm's output is not stored, and a bfloat16 input (a
// convolution's output under --amp) and a bfloat16 output (the next product's operand) are read
// and written as such, with float32 arithmetic inside. The same results, to float rounding, as the
// batch norm module followed by core::ana; the running statistics are updated as the module does.
#pragma once

#include <torch/torch.h>

#include <optional>

#include "quantlab/core/ana.h"

namespace quantlab::core {

// A batch norm module's parameters, buffers and options (torch::nn::BatchNorm1d / 2d).
struct BatchNormRefs {
  torch::Tensor weight, bias, running_mean, running_var, num_batches_tracked;
  std::optional<double> momentum;  // none: the cumulative average, as the module's
  double eps = 1e-5;
};

// Whether bn_ana takes x: on the CPU, float32 or bfloat16, a [N, C] matrix or a channels-last
// [N, C, H, W] map with more than one value per channel, and an affine batch norm with running
// statistics.
bool bn_ana_fusable(const torch::Tensor& x, const BatchNormRefs& bn);

// ANA(batch_norm(x)) in training mode (batch statistics; forward spread noise.sigma_forward),
// the result in out_dtype (float32 or bfloat16) and x's layout.
torch::Tensor bn_ana(const torch::Tensor& x, const BatchNormRefs& bn, const torch::Tensor& stair,
                     const AnaScheme& scheme, const NoiseState& noise, torch::ScalarType out_dtype);

}  // namespace quantlab::core
