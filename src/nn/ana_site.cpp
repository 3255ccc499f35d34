// AnaSite: the ANA operator bound to a module.
#include "quantlab/nn/ana_site.h"

namespace quantlab::nn {

AnaSite::AnaSite(core::AnaScheme scheme)
    : scheme_(std::move(scheme)), stair_(core::stair_tensor(scheme_.quantizer, torch::kCPU)) {}

void AnaSite::set_noise(const core::NoiseState& noise) {
  const float s = scheme_.quantizer.scale;
  noise_ = {noise.mu * s, noise.sigma_forward * s, noise.sigma_backward * s};
}

torch::Tensor AnaSite::quantize(const torch::Tensor& x, bool training, bool bf16_out, bool backward_folded) {
  if (stair_.device() != x.device()) stair_ = stair_.to(x.device());
  return core::ana(x, stair_, scheme_, noise_, training, bf16_out, backward_folded);
}

torch::Tensor AnaSite::quantize_after_bn(const torch::Tensor& x, const core::BatchNormRefs& bn, torch::ScalarType out) {
  if (stair_.device() != x.device()) stair_ = stair_.to(x.device());
  return core::bn_ana(x, bn, stair_, scheme_, noise_, out);
}

}  // namespace quantlab::nn
