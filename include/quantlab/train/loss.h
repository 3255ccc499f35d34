// Loss functions from `indiv.loss_function` ({class, params}):
//   CrossEntropyLoss()                            scores [N, C], labels [N] -> scalar
//   HingeLoss(num_classes, margin=1.0, p=2.0)     mean over N x C of max(0, margin - s * y)^p with
//                                                 y = +1 for the label and -1 elsewhere (original's)
#pragma once

#include <torch/torch.h>

#include <functional>

#include "quantlab/config/json_node.h"

namespace quantlab {

using LossFn = std::function<torch::Tensor(const torch::Tensor& scores, const torch::Tensor& labels)>;

LossFn make_loss(const JsonNode& spec);

torch::Tensor hinge_loss(const torch::Tensor& scores, const torch::Tensor& labels, double margin, double p);

}  // namespace quantlab
