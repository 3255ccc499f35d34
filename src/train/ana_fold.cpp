// The weights' ANA backward folded into the optimizer's step (ana_fold.h).
#include "quantlab/train/ana_fold.h"

#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <unordered_set>

#include "quantlab/core/ana_kernel.h"
#include "quantlab/train/fused_adam.h"

namespace quantlab::train {

void AnaBackwardFold::take(torch::nn::Module& net, const std::vector<torch::Tensor>& params) {
  std::unordered_set<const c10::TensorImpl*> optimized;
  for (const auto& p : params) optimized.insert(p.unsafeGetTensorImpl());
  for (const auto& m : net.modules(true)) {
    auto layer = std::dynamic_pointer_cast<nn::AnaWeightLayer>(m);
    if (!layer || optimized.count(layer->weight.unsafeGetTensorImpl()) == 0) continue;
    layer->fold_backward(true);
    layers_[layer->weight.unsafeGetTensorImpl()] = layer;
  }
}

void AnaBackwardFold::release() {
  for (auto& kv : layers_) kv.second->fold_backward(false);
  layers_.clear();
}

nn::AnaWeightLayer* AnaBackwardFold::layer_of(const torch::Tensor& p) const {
  const auto it = layers_.find(p.unsafeGetTensorImpl());
  return it == layers_.end() ? nullptr : it->second.get();
}

namespace {
// The kernels' view of a layer's stair (its quantizer's vectors, which live as long as the layer).
core::kernel::Stair stair_of(const nn::AnaWeightLayer& layer) {
  const core::Quantizer& q = layer.scheme().quantizer;
  return {q.thresholds.data(), q.levels.data(), q.num_thresholds()};
}
}  // namespace

std::optional<kernel::AnaDerivative> AnaBackwardFold::pending(const torch::Tensor& p) const {
  const nn::AnaWeightLayer* layer = layer_of(p);
  if (layer == nullptr || !layer->gradient_folded()) return std::nullopt;
  return kernel::AnaDerivative{stair_of(*layer), layer->scheme().noise, layer->noise().mu,
                               layer->noise().sigma_backward};
}

void AnaBackwardFold::apply(torch::Tensor& p) const {
  if (!p.grad().defined()) return;
  const auto d = pending(p);
  if (!d) return;
  torch::NoGradGuard no_grad;
  const auto format = p.suggest_memory_format();
  const torch::Tensor x = p.contiguous(format);
  const torch::Tensor gy = p.grad().contiguous(format);  // float32, as p
  torch::Tensor gx = torch::empty_like(x);
  core::kernel::ana_backward(x.data_ptr<float>(), gy.data_ptr<float>(), gx.data_ptr<float>(), x.numel(), d->stair,
                             d->family, d->mu, d->sigma, at::get_num_threads());
  p.mutable_grad() = gx;
}

std::optional<kernel::AnaForward> AnaBackwardFold::ahead(const torch::Tensor& p) const {
  if (!compute_ahead || !ana_forward_ahead_enabled()) return std::nullopt;
  nn::AnaWeightLayer* layer = layer_of(p);
  torch::Tensor* y = layer != nullptr ? layer->quantized_ahead_buffer() : nullptr;
  if (y == nullptr) return std::nullopt;
  kernel::AnaForward f{};
  f.stair = stair_of(*layer);
  f.family = layer->scheme().noise;
  f.strategy = layer->scheme().strategy;
  f.mu = layer->noise().mu;
  f.sigma = layer->noise().sigma_forward;
  f.y = y->data_ptr();
  f.dtype = core::kernel_dtype(*y);
  return f;
}

void AnaBackwardFold::written(const torch::Tensor& p) const {
  if (nn::AnaWeightLayer* layer = layer_of(p)) layer->quantized_ahead_written();
}

bool ana_forward_ahead_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("QL_UNFOLDED_ANA_FORWARD");
    return v == nullptr || std::strcmp(v, "1") != 0;
  }();
  return enabled;
}

bool ana_backward_folding_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("QL_UNFOLDED_ANA_BACKWARD");
    return v == nullptr || std::strcmp(v, "1") != 0;
  }();
  return enabled;
}

bool fold_ana_backward(torch::nn::Module& net, torch::optim::Optimizer& opt) {
  if (!ana_backward_folding_enabled() || !fused_adam_enabled()) return false;
  AnaBackwardFold* fold = nullptr;
  if (auto* adam = dynamic_cast<FusedAdam*>(&opt)) fold = &adam->ana_fold;
  if (auto* adamw = dynamic_cast<FusedAdamW*>(&opt)) fold = &adamw->ana_fold;
  if (fold == nullptr) return false;
  std::vector<torch::Tensor> params;
  for (const auto& group : opt.param_groups())
    params.insert(params.end(), group.params().begin(), group.params().end());
  fold->take(net, params);
  return !fold->empty();
}

}  // namespace quantlab::train
