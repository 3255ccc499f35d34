// Optimizers from `treat.optimizer` ({class, params}), PyTorch's names and defaults:
//   Adam(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0, amsgrad=false)
//   AdamW(same, weight_decay=1e-2)
//   SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=false)
// To add one: a factory in optimizer.cpp and one `add()` line.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "quantlab/config/json_node.h"

namespace quantlab {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const JsonNode& spec, std::vector<torch::Tensor> parameters);

// Learning rate of the first param group / of all param groups.
double get_lr(const torch::optim::Optimizer& opt);
void set_lr(torch::optim::Optimizer& opt, double lr);

}  // namespace quantlab
