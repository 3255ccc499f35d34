// Loss functions from `indiv.loss_function` ({class, params}), by PyTorch's names with its
// parameter names, defaults and semantics (scores [N, C], labels [N] -> a scalar):
//   CrossEntropyLoss(weight=null, ignore_index=-100, reduction="mean", label_smoothing=0)
//   NLLLoss(weight=null, ignore_index=-100, reduction="mean")        the scores are log-probabilities
//   MultiMarginLoss(p=1, margin=1, weight=null, reduction="mean")
//   MSELoss(reduction="mean")        against the one-hot encoding of the labels (PyTorch's MSELoss
//                                    takes a target of the scores' shape; labels are class indices)
//   HingeLoss(num_classes=10, margin=1, p=2)   the original's: mean of max(0, margin - s y)^p with
//                                    y = +1 for the label and -1 elsewhere
// reduction is "mean" or "sum" (training needs one number). weight: one number per class.
// To add one: a factory in loss.cpp and one `add()` line.
#pragma once

#include <torch/torch.h>

#include <functional>

#include "quantlab/config/json_node.h"

namespace quantlab::train {

using LossFn = std::function<torch::Tensor(const torch::Tensor& scores, const torch::Tensor& labels)>;

// A loss and how it reduces over the batch (data-parallel training weighs the ranks' parts by it).
struct Loss {
  LossFn fn;
  bool sums = false;  // reduction "sum"; otherwise a mean over the batch
  torch::Tensor operator()(const torch::Tensor& scores, const torch::Tensor& labels) const {
    return fn(scores, labels);
  }
};

Loss make_loss(const config::JsonNode& spec);

torch::Tensor hinge_loss(const torch::Tensor& scores, const torch::Tensor& labels, double margin, double p);

}  // namespace quantlab::train
