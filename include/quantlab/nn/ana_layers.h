// Quantized modules of the ANA algorithm (docs/ANA.md §3):
//   AnaLinear      [N, in] -> [N, out]          weights through ANA
//   AnaConv        [N, C, *spatial] (1d/2d/3d)  weights through ANA; groups, stride, padding, dilation
//   AnaActivation  any shape -> same shape      the input through ANA
// Weights start at a random threshold plus U(-1/sqrt(fan_in), +1/sqrt(fan_in)), as the original.
// In evaluation mode without autograd the quantized weight is computed once and reused until the
// weight or the noise changes. An optimizer can take the weight's ANA backward into its step
// (train/ana_fold.h): the weight's gradient is then the quantized weight's, and the optimizer's
// step can write the next training forward's quantized weight, which the layer uses while the
// weight and the noise are the ones it was written for.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "quantlab/nn/ana_site.h"

namespace quantlab::nn {

// Shared by the layers whose weights are quantized.
class AnaWeightLayer : public torch::nn::Module, public AnaSite {
 public:
  torch::Tensor weight;
  torch::Tensor bias;  // undefined when the layer has none

  // Set by the optimizer that takes the weight's ANA backward (train/ana_fold.h).
  void fold_backward(bool on);
  // Whether the layer folds its training forward passes now: float32 weights on the CPU, where
  // the folding optimizer's kernel runs.
  bool backward_folded() const {
    return fold_backward_ && weight.device().is_cpu() && weight.scalar_type() == torch::kFloat32;
  }
  // Whether the weight's gradient from the last forward pass that recorded one is the quantized
  // weight's, which the optimizer must still multiply by the operator's derivative.
  bool gradient_folded() const { return gradient_folded_ && backward_folded(); }

  // The quantized weight computed ahead by the folding optimizer's step, with the updated weight:
  // the buffer to write it to (the dtype of the last training forward pass), or nullptr where the
  // layer takes none (its last forward did not fold; the random strategy, which samples anew).
  torch::Tensor* quantized_ahead_buffer();
  // The step has written it with the weight as it is now (bumped version) and the current noise.
  // The weight counts as the same while its data pointer and version are: writes through another
  // tensor over its storage are not seen (as for the evaluation cache); the project makes none.
  void quantized_ahead_written();
  // Whether the last training forward pass used it.
  bool used_quantized_ahead() const { return used_ahead_; }

 protected:
  AnaWeightLayer(core::AnaScheme scheme, std::vector<int64_t> weight_shape, int64_t fan_in, int64_t bias_size);
  // bf16: the weight as a bfloat16 product's operand (in training written so by the ANA kernel).
  torch::Tensor quantized_weight(bool bf16 = false);

 private:
  bool fold_backward_ = false;
  bool gradient_folded_ = false;
  bool last_bf16_ = false;  // the dtype the last training forward asked for
  bool used_ahead_ = false;
  // The quantized weight computed ahead and what it was computed from.
  struct Ahead {
    torch::Tensor q;
    bool valid = false;
    const void* data = nullptr;
    int64_t version = -1;
    float mu = 0.0f, sigma_forward = 0.0f;
  } ahead_;
  bool ahead_matches(bool bf16) const;
  torch::Tensor cached_;
  int64_t cached_version_ = -1;
  core::NoiseState cached_noise_;
};

class AnaLinearImpl : public AnaWeightLayer {
 public:
  AnaLinearImpl(core::AnaScheme scheme, int64_t in_features, int64_t out_features, bool bias = false);
  // bf16: the product in bfloat16, its result float32 (bfloat16 with keep_bf16).
  torch::Tensor forward(const torch::Tensor& x, bool bf16 = false, bool keep_bf16 = false);
};
TORCH_MODULE(AnaLinear);

struct AnaConvOptions {
  int dim = 2;  // 1, 2 or 3
  int64_t in_channels = 0, out_channels = 0;
  std::vector<int64_t> kernel_size, stride{1}, padding{0}, dilation{1};  // one value or `dim`
  int64_t groups = 1;
  bool bias = false;
};

class AnaConvImpl : public AnaWeightLayer {
 public:
  AnaConvImpl(core::AnaScheme scheme, AnaConvOptions options);
  torch::Tensor forward(const torch::Tensor& x, bool bf16 = false, bool keep_bf16 = false);
  const AnaConvOptions& options() const { return o_; }

 private:
  AnaConvOptions o_;
};
TORCH_MODULE(AnaConv);

class AnaActivationImpl : public torch::nn::Module, public AnaSite {
 public:
  explicit AnaActivationImpl(core::AnaScheme scheme) : AnaSite(std::move(scheme)) {}
  torch::Tensor forward(const torch::Tensor& x) { return quantize(x, is_training()); }
  // The batch norm before it and this activation as one operator, in training mode.
  torch::Tensor forward_after_bn(const torch::Tensor& x, const core::BatchNormRefs& bn, torch::ScalarType out) {
    return quantize_after_bn(x, bn, out);
  }
};
TORCH_MODULE(AnaActivation);

}  // namespace quantlab::nn
