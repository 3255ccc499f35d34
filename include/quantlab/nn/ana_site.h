// What every ANA module shares: its scheme (stair, noise family, strategy), the noise the
// thermostat sets each epoch, and the stair as a tensor on the input's device.
// The thermostat finds sites with dynamic_cast<AnaSite*> over the network's named modules.
#pragma once

#include <torch/torch.h>

#include "quantlab/core/ana.h"
#include "quantlab/core/bn_ana.h"

namespace quantlab::nn {

class AnaSite {
 public:
  explicit AnaSite(core::AnaScheme scheme);
  virtual ~AnaSite() = default;

  const core::AnaScheme& scheme() const { return scheme_; }
  const core::NoiseState& noise() const { return noise_; }
  // Noise in quantizer units (multiplied by the quantizer's eps here).
  void set_noise(const core::NoiseState& noise);

 protected:
  // backward_folded: see core::ana (the optimizer applies the operator's derivative).
  torch::Tensor quantize(const torch::Tensor& x, bool training, bool bf16_out = false, bool backward_folded = false);
  // ANA(batch_norm(x)) in training mode, in one operator (core/bn_ana.h).
  torch::Tensor quantize_after_bn(const torch::Tensor& x, const core::BatchNormRefs& bn, torch::ScalarType out);

 private:
  core::AnaScheme scheme_;
  core::NoiseState noise_;
  torch::Tensor stair_;
};

}  // namespace quantlab::nn
