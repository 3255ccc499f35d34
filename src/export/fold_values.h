// What the exporter reads off a trained network's values: the integers of a set of levels on one
// grid, and a batch norm's per-channel affine map.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "quantlab/core/integer_grid.h"

namespace quantlab::export_ {

using core::on_grid;  // the levels' integers (core/integer_grid.h)

struct BatchNormValues {
  std::vector<double> gain, mean, shift;  // z = gain * (y - mean) + shift, gain = weight / sqrt(var + eps)
};

// The evaluation-mode map of the batch norm `m` (BatchNorm1d or 2d; `name` for the error otherwise).
BatchNormValues batch_norm_of(torch::nn::Module& m, const std::string& name);

}  // namespace quantlab::export_
