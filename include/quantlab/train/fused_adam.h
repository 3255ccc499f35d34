// Adam and AdamW whose step runs one fused pass per parameter (adam_kernel.h) instead of
// libtorch's chain of tensor operations: the same options, the same per-parameter state
// (AdamParamState / AdamWParamState, so checkpoints, optimizer_state.h and every dynamic_cast to
// torch::optim::Adam / AdamW keep working), the same formula in float32. Parameters on the CPU in
// float32 with dense buffers of one layout take the fused pass; for any other (a GPU's, a sparse
// gradient) the whole step is libtorch's own.
#pragma once

#include <torch/torch.h>

namespace quantlab::train {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
};

// False when QL_UNFUSED_ADAM=1 (libtorch's step, for comparisons).
bool fused_adam_enabled();

}  // namespace quantlab::train
