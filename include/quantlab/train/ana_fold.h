// The quantized weights' ANA backward taken into the optimizer's step. Unfolded, a training step
// runs the operator's backward over each weight (read the weight and the quantized weight's
// gradient, write the weight's gradient) and the optimizer then reads that gradient and the
// weight again. Folded, the layer hands its weight the quantized weight's gradient unchanged and
// the fused Adam step multiplies it by the operator's derivative inside its own pass over the
// weight (adam_kernel.h): three passes over the weight's buffers fewer a step, the same float32
// arithmetic. Anything between the backward and the step that combines gradients linearly still
// works on the quantized weights' gradients (the data-parallel mean: every rank holds the same
// weight, so the mean of the products is the product of the mean); a step that does not take the
// derivative (libtorch's own, for buffers the kernel does not handle) applies it first.
// The same pass also writes the next training forward's quantized weight, ANA(updated weight),
// while the weight is in cache, so that the forward pass does not read the weight again: the layer
// uses it while the weight (its storage and version, which the step bumps) and the noise are the
// ones it was written for, and recomputes it otherwise (the thermostat's new noise each epoch, a
// checkpoint loaded, libtorch's step); not for the random strategy, which samples anew.
// On by default for Adam and AdamW with the fused step; QL_UNFOLDED_ANA_BACKWARD=1 turns both off,
// QL_UNFOLDED_ANA_FORWARD=1 the forward alone.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <optional>
#include <unordered_map>

#include "quantlab/nn/ana_layers.h"
#include "quantlab/train/adam_kernel.h"

namespace quantlab::train {

// One per network: the optimizer that holds it takes the backward until it is destroyed or
// release()d. Its step runs once per backward pass (a second step on the same gradient would take
// the derivative again, at the updated weight).
class AnaBackwardFold {
 public:
  AnaBackwardFold() = default;
  AnaBackwardFold(const AnaBackwardFold&) = delete;
  AnaBackwardFold& operator=(const AnaBackwardFold&) = delete;
  ~AnaBackwardFold() { release(); }

  // Takes the backward of the quantized weights of `net` (its AnaWeightLayers' weights) that are
  // among `params`, the optimizer's.
  void take(torch::nn::Module& net, const std::vector<torch::Tensor>& params);
  // Gives every layer its own backward back.
  void release();
  bool empty() const { return layers_.empty(); }

  // The derivative p's gradient still lacks, when it does (p's layer folded the forward pass that
  // made it, and folds now); it reads the layer's stair and current noise, which the thermostat
  // changes only between epochs.
  std::optional<kernel::AnaDerivative> pending(const torch::Tensor& p) const;
  // Multiplies p's gradient by the derivative it lacks, if any: for a step that does not take it.
  void apply(torch::Tensor& p) const;

  // Where and how the step that takes p's derivative writes the next forward's quantized weight
  // (none: the layer takes none, or computing ahead is off); the step then calls written(p) once
  // it has bumped p's version.
  std::optional<kernel::AnaForward> ahead(const torch::Tensor& p) const;
  void written(const torch::Tensor& p) const;
  bool compute_ahead = true;  // tests turn it off; QL_UNFOLDED_ANA_FORWARD=1 too

 private:
  nn::AnaWeightLayer* layer_of(const torch::Tensor& p) const;  // p's layer, or nullptr
  std::unordered_map<const c10::TensorImpl*, std::shared_ptr<nn::AnaWeightLayer>> layers_;
};

// False when QL_UNFOLDED_ANA_BACKWARD=1.
bool ana_backward_folding_enabled();
// False when QL_UNFOLDED_ANA_FORWARD=1.
bool ana_forward_ahead_enabled();

// Folds the weights' ANA backward of `net` into `opt` where `opt` takes it (Adam and AdamW with
// their fused step, the folding enabled); returns whether it did.
bool fold_ana_backward(torch::nn::Module& net, torch::optim::Optimizer& opt);

}  // namespace quantlab::train
