// Adam and AdamW whose step runs one fused pass per parameter (adam_kernel.h) instead of
// libtorch's chain of tensor operations: the same options, the same per-parameter state
// (AdamParamState / AdamWParamState, so checkpoints, optimizer_state.h and every dynamic_cast to
// torch::optim::Adam / AdamW keep working), the same formula in float32. Parameters on the CPU in
// float32 with dense buffers of one layout take the fused pass; for any other (a GPU's, a sparse
// gradient) the whole step is libtorch's own. The step can also take the quantized weights' ANA
// backward (ana_fold.h); libtorch's step gets their gradients with it applied.
#pragma once

#include <torch/torch.h>

#include "quantlab/train/ana_fold.h"

namespace quantlab::train {

class FusedAdam : public torch::optim::Adam {
 public:
  using torch::optim::Adam::Adam;
  torch::Tensor step(LossClosure closure = nullptr) override;
  AnaBackwardFold ana_fold;  // the quantized weights whose ANA backward this step takes (ana_fold.h)
};

class FusedAdamW : public torch::optim::AdamW {
 public:
  using torch::optim::AdamW::AdamW;
  torch::Tensor step(LossClosure closure = nullptr) override;
  AnaBackwardFold ana_fold;
};

// False when QL_UNFUSED_ADAM=1 (libtorch's step, for comparisons).
bool fused_adam_enabled();

}  // namespace quantlab::train
