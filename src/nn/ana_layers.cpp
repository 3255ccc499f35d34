// Quantized linear, convolutional and activation modules.
#include "quantlab/nn/ana_layers.h"

#include <cmath>

#include "quantlab/nn/products.h"
#include "quantlab/util/error.h"

namespace quantlab::nn {
namespace {

std::vector<int64_t> expand(const std::vector<int64_t>& v, int dim, const char* what) {
  if (static_cast<int>(v.size()) == dim) return v;
  if (v.size() == 1) return std::vector<int64_t>(dim, v[0]);
  throw ConfigError(std::string("AnaConv: ") + what + " needs 1 or " + std::to_string(dim) + " values");
}

}  // namespace

AnaWeightLayer::AnaWeightLayer(core::AnaScheme scheme, std::vector<int64_t> weight_shape, int64_t fan_in,
                               int64_t bias_size)
    : AnaSite(std::move(scheme)) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
  const auto& t = this->scheme().quantizer.thresholds;
  torch::NoGradGuard no_grad;
  auto pick = torch::randint(static_cast<int64_t>(t.size()), weight_shape, torch::kLong);
  auto w = torch::tensor(t).index({pick}).reshape(weight_shape);
  w += torch::empty(weight_shape).uniform_(-bound, bound);
  weight = register_parameter("weight", w);
  if (bias_size > 0) bias = register_parameter("bias", torch::empty({bias_size}).uniform_(-bound, bound));
}

void AnaWeightLayer::fold_backward(bool on) {
  fold_backward_ = on;
  if (!on) ahead_ = {};
}

torch::Tensor* AnaWeightLayer::quantized_ahead_buffer() {
  ahead_.valid = false;
  if (!gradient_folded() || scheme().strategy == core::ForwardStrategy::kRandom) return nullptr;
  const auto dtype = last_bf16_ ? torch::kBFloat16 : torch::kFloat32;
  if (!ahead_.q.defined() || ahead_.q.scalar_type() != dtype || ahead_.q.sizes() != weight.sizes() ||
      ahead_.q.strides() != weight.strides())
    ahead_.q = torch::empty_like(weight, weight.options().dtype(dtype), torch::MemoryFormat::Preserve);
  return &ahead_.q;
}

void AnaWeightLayer::quantized_ahead_written() {
  // Written through a pointer: a new version, so that a graph that saved the last forward's alias
  // of the buffer and runs its backward after this step fails as after any in-place change.
  ahead_.q.unsafeGetTensorImpl()->bump_version();
  ahead_.valid = true;
  ahead_.data = weight.data_ptr();
  ahead_.version = weight._version();
  ahead_.mu = noise().mu;
  ahead_.sigma_forward = noise().sigma_forward;
}

bool AnaWeightLayer::ahead_matches(bool bf16) const {
  return ahead_.valid && ahead_.q.scalar_type() == (bf16 ? torch::kBFloat16 : torch::kFloat32) &&
         ahead_.data == weight.data_ptr() && ahead_.version == weight._version() &&
         ahead_.q.sizes() == weight.sizes() && ahead_.q.strides() == weight.strides() && ahead_.mu == noise().mu &&
         ahead_.sigma_forward == noise().sigma_forward;
}

torch::Tensor AnaWeightLayer::quantized_weight(bool bf16) {
  if (is_training() || torch::GradMode::is_enabled()) {
    cached_ = torch::Tensor();
    gradient_folded_ = is_training() && backward_folded();
    last_bf16_ = bf16;
    used_ahead_ = gradient_folded_ && ahead_matches(bf16);
    if (used_ahead_) return core::ana_computed_ahead(weight, ahead_.q);
    return quantize(weight, is_training(), bf16, gradient_folded_);
  }
  const core::NoiseState& n = noise();
  if (!cached_.defined() || cached_version_ != weight._version() || cached_noise_.mu != n.mu ||
      cached_.device() != weight.device()) {
    cached_ = quantize(weight, false);
    cached_version_ = weight._version();
    cached_noise_ = n;
  }
  return bf16 ? cached_.to(torch::kBFloat16) : cached_;
}

AnaLinearImpl::AnaLinearImpl(core::AnaScheme scheme, int64_t in_features, int64_t out_features, bool bias)
    : AnaWeightLayer(std::move(scheme), {out_features, in_features}, in_features, bias ? out_features : 0) {}

torch::Tensor AnaLinearImpl::forward(const torch::Tensor& x, bool bf16, bool keep_bf16) {
  if (bf16) {
    auto y = bf16_linear(x, quantized_weight(true), bias);
    return keep_bf16 ? y : y.to(torch::kFloat32);
  }
  return torch::nn::functional::linear(x, quantized_weight(), bias);
}

static std::vector<int64_t> conv_weight_shape(const AnaConvOptions& o) {
  if (o.dim < 1 || o.dim > 3) throw ConfigError("AnaConv: dim must be 1, 2 or 3");
  if (o.groups < 1 || o.in_channels % o.groups || o.out_channels % o.groups)
    throw ConfigError("AnaConv: in_channels and out_channels must be divisible by groups");
  std::vector<int64_t> shape{o.out_channels, o.in_channels / o.groups};
  for (int64_t k : expand(o.kernel_size, o.dim, "kernel_size")) shape.push_back(k);
  return shape;
}

static int64_t conv_fan_in(const AnaConvOptions& o) {
  int64_t n = o.in_channels;  // as the original: not divided by groups
  for (int64_t k : expand(o.kernel_size, o.dim, "kernel_size")) n *= k;
  return n;
}

AnaConvImpl::AnaConvImpl(core::AnaScheme scheme, AnaConvOptions options)
    : AnaWeightLayer(std::move(scheme), conv_weight_shape(options), conv_fan_in(options),
                     options.bias ? options.out_channels : 0),
      o_(std::move(options)) {
  o_.stride = expand(o_.stride, o_.dim, "stride");
  o_.padding = expand(o_.padding, o_.dim, "padding");
  o_.dilation = expand(o_.dilation, o_.dim, "dilation");
}

torch::Tensor AnaConvImpl::forward(const torch::Tensor& x, bool bf16, bool keep_bf16) {
  const torch::Tensor w = quantized_weight(bf16);
  if (bf16) {
    auto y = bf16_conv(x, w, bias, o_.dim, o_.stride, o_.padding, o_.dilation, o_.groups);
    return keep_bf16 ? y : y.to(torch::kFloat32);
  }
  return conv_nd(x, w, bias, o_.dim, o_.stride, o_.padding, o_.dilation, o_.groups);
}

}  // namespace quantlab::nn
