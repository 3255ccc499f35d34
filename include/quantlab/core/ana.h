// The ANA operator as a libtorch autograd function (docs/ANA.md §2).
//   y = ana(x, scheme, noise, training)      x: any shape, float32 (other dtypes: tensor-op path)
// Training with sigma_forward > 0: the smoothed stair by the scheme's strategy; evaluation or
// sigma_forward == 0: the hard stair Q(x - mu). The gradient is sum_k d_k f(x - mu - t_k;
// sigma_backward) times the incoming one: sigma_forward == 0 < sigma_backward is the STE with a
// window, equal spreads give the exact derivative of the expectation, sigma_backward == 0 gives 0.
// On CPU the fused kernel (ana_kernel.h) runs; elsewhere ana_tensor_ops(), whose memory does not
// grow with the number of levels either.
#pragma once

#include <torch/torch.h>

#include "quantlab/core/ana_kernel.h"
#include "quantlab/core/noise.h"
#include "quantlab/core/quantizer.h"

namespace quantlab::core {

// What a quantized site is: its stair, its noise family and forward strategy (from the config).
struct AnaScheme {
  Quantizer quantizer;
  NoiseFamily noise = NoiseFamily::kUniform;
  ForwardStrategy strategy = ForwardStrategy::kExpectation;
};

// The noise a site has now, set by the thermostat every epoch; in the units of the input x.
struct NoiseState {
  float mu = 0.0f;
  float sigma_forward = 0.0f;
  float sigma_backward = 0.0f;
};

// The fused operator. `stair` is the quantizer as a [2T+1] float tensor (thresholds then levels)
// on x's device: see stair_tensor(). bf16_out: y in bfloat16, written by the CPU kernel without a
// float32 copy (a quantized weight that a bfloat16 product reads under --amp); the gradient of x
// stays float32. backward_folded: x's gradient is y's unchanged (as float32): an optimizer that
// takes the operator's backward into its own step multiplies it by the derivative (train/ana_fold.h).
torch::Tensor ana(const torch::Tensor& x, const torch::Tensor& stair, const AnaScheme& scheme, const NoiseState& noise,
                  bool training, bool bf16_out = false, bool backward_folded = false);

// The folded operator's output computed ahead: y = ANA(x), written by the folding optimizer's step
// with the updated x (train/ana_fold.h), returned as it is (an alias of y), with the folded
// backward. The caller checks that y is still ANA(x) at x's current value and noise.
torch::Tensor ana_computed_ahead(const torch::Tensor& x, const torch::Tensor& y);

torch::Tensor stair_tensor(const Quantizer& q, const torch::Device& device);

// The CPU kernels' name for t's dtype (they read and write float32 and bfloat16).
inline kernel::Dtype kernel_dtype(const torch::Tensor& t) {
  return t.scalar_type() == torch::kBFloat16 ? kernel::Dtype::kBFloat16 : kernel::Dtype::kFloat32;
}

// The same operator written with plain tensor ops, one threshold at a time (no autograd function:
// forward and backward are separate calls). Used off-CPU, and by tests and benchmarks as the
// independent formulation. `uniform` is read only by the random strategy.
torch::Tensor ana_tensor_ops_forward(const torch::Tensor& x, const AnaScheme& scheme, float mu, float sigma,
                                     const torch::Tensor& uniform = {});
torch::Tensor ana_tensor_ops_backward(const torch::Tensor& x, const torch::Tensor& grad, const AnaScheme& scheme,
                                      float mu, float sigma);

}  // namespace quantlab::core
