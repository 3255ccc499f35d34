// What the exporter reads off a trained network's values: the integers of a set of levels on one
// grid, and a batch norm's per-channel affine map.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace quantlab::export_ {

// The integers of `values` on a grid of `step` (tried: `preferred`, 1, the smallest magnitude, the
// smallest gap between the values, then the smallest magnitude's whole fractions down to 1/127);
// "" when found, else why not: not on one grid, or more than 8 bits.
std::string on_grid(const std::vector<double>& values, double preferred, double& step, std::vector<int8_t>& ints);

struct BatchNormValues {
  std::vector<double> gain, mean, shift;  // z = gain * (y - mean) + shift, gain = weight / sqrt(var + eps)
};

// The evaluation-mode map of the batch norm `m` (BatchNorm1d or 2d; `name` for the error otherwise).
BatchNormValues batch_norm_of(torch::nn::Module& m, const std::string& name);

}  // namespace quantlab::export_
