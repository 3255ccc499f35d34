// Optimizers from `treat.optimizer` ({class, params}), by PyTorch's names with its parameter names
// and defaults:
//   SGD(lr, momentum=0, dampening=0, weight_decay=0, nesterov=false)            lr is required
//   Adam(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=0, amsgrad=false)
//   AdamW(same, weight_decay=1e-2)
//   Adagrad(lr=1e-2, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)
//   RMSprop(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=false)
// PyTorch's implementation switches (foreach, fused, capturable, differentiable) are accepted and
// change nothing; maximize=true is refused. Adam and AdamW are fused_adam.h's: libtorch's, with a
// one-pass step on the CPU (QL_UNFUSED_ADAM=1: libtorch's step).
// To add one: a factory in optimizer.cpp and one `add()` line.
#pragma once

#include <torch/torch.h>

#include <memory>

#include "quantlab/config/json_node.h"

namespace quantlab::train {

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::JsonNode& spec,
                                                        std::vector<torch::Tensor> parameters);

// Learning rate of the first param group / of all param groups.
double get_lr(const torch::optim::Optimizer& opt);
void set_lr(torch::optim::Optimizer& opt, double lr);

// Before a training step: every parameter's gradient undefined, so that the backward pass hands
// each gradient over instead of adding it to a zeroed one. What libtorch 2.x's zero_grad() does by
// default; 1.13's zeroes every gradient in place and autograd then adds the new one to it, two more
// passes over all the gradients (0.03 s of AlexNet's step, docs/PERFORMANCE.md). The same values
// for a parameter that gets a gradient at every step, or at none (skipped either way). One that
// gets a gradient only at some steps is now skipped at the others, as on 2.x; 1.13 stepped it with
// the zeros its last gradient left. Data-parallel runs give every parameter a gradient (zeros
// where none arrived: dist/gradient_sync.h), so there every parameter steps at every step.
void clear_gradients(torch::optim::Optimizer& opt);

// Sets the momentum a cycling schedule drives: SGD's and RMSprop's momentum, Adam's and AdamW's
// beta1. Throws Error for an optimizer that has none.
void set_momentum(torch::optim::Optimizer& opt, double momentum);

}  // namespace quantlab::train
