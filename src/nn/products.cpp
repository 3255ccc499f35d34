// The layers' products: convolutions of any dimension, bfloat16 products native or emulated (nn/products.h).
#include "quantlab/nn/products.h"

#include <atomic>
#include <cstdlib>
#include <cstring>

#include "quantlab/util/cpu_features.h"
#include "quantlab/util/error.h"

namespace quantlab::nn {
namespace {

Bf16Products mode_from_environment() {
  const char* v = std::getenv("QL_BF16_PRODUCTS");
  if (v == nullptr || *v == '\0' || std::strcmp(v, "auto") == 0) return Bf16Products::kAuto;
  if (std::strcmp(v, "native") == 0) return Bf16Products::kNative;
  if (std::strcmp(v, "emulated") == 0) return Bf16Products::kEmulated;
  throw ConfigError(std::string("QL_BF16_PRODUCTS=") + v + ": expected auto, native or emulated");
}

std::atomic<Bf16Products>& mode() {
  static std::atomic<Bf16Products> m{mode_from_environment()};
  return m;
}

// The float32 operand of an emulated product: the value rounded to bfloat16. Differentiable: the
// gradient reaching it comes back rounded to bfloat16, as a native product's operand gradient.
torch::Tensor rounded(const torch::Tensor& t) {
  if (!t.defined()) return t;
  return (t.scalar_type() == torch::kBFloat16 ? t : t.to(torch::kBFloat16)).to(torch::kFloat32);
}

}  // namespace

torch::Tensor bf16_operand(const torch::Tensor& t) { return t.defined() ? t.to(torch::kBFloat16) : t; }

void set_bf16_products(Bf16Products m) { mode() = m; }

Bf16Products bf16_products() { return mode().load(); }

bool bf16_products_emulated(const torch::Tensor& x) {
  if (!x.device().is_cpu()) return false;
  switch (mode().load()) {
    case Bf16Products::kNative:
      return false;
    case Bf16Products::kEmulated:
      return true;
    case Bf16Products::kAuto:
      break;
  }
  return !cpu_features().has_bf16_products();
}

// Emulated: the float32 product of the rounded operands, then its result rounded to bfloat16 (so
// the incoming gradient is rounded too on its way back through that conversion).
torch::Tensor bf16_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (bf16_products_emulated(x))
    return torch::nn::functional::linear(rounded(x), rounded(w), rounded(b)).to(torch::kBFloat16);
  return torch::nn::functional::linear(bf16_operand(x), bf16_operand(w), bf16_operand(b));
}

torch::Tensor conv_nd(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int dim,
                      torch::IntArrayRef stride, torch::IntArrayRef padding, torch::IntArrayRef dilation,
                      int64_t groups) {
  switch (dim) {
    case 1:
      return torch::conv1d(x, w, b, stride, padding, dilation, groups);
    case 2:
      return torch::conv2d(x, w, b, stride, padding, dilation, groups);
    default:
      return torch::conv3d(x, w, b, stride, padding, dilation, groups);
  }
}

torch::Tensor bf16_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int dim,
                        torch::IntArrayRef stride, torch::IntArrayRef padding, torch::IntArrayRef dilation,
                        int64_t groups) {
  if (bf16_products_emulated(x))
    return conv_nd(rounded(x), rounded(w), rounded(b), dim, stride, padding, dilation, groups).to(torch::kBFloat16);
  return conv_nd(bf16_operand(x), bf16_operand(w), bf16_operand(b), dim, stride, padding, dilation, groups);
}

}  // namespace quantlab::nn
