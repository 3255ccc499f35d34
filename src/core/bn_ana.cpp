// The batch norm + ANA autograd operator over the fused CPU kernels (core/bn_ana_kernel.h).
#include "quantlab/core/bn_ana.h"

#include <ATen/record_function.h>

#include <cmath>

#include "quantlab/core/bn_ana_kernel.h"

namespace quantlab::core {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

kernel::Matrix matrix_of(const torch::Tensor& x) { return {x.numel() / x.size(1), x.size(1)}; }

kernel::Stair bn_stair_view(const torch::Tensor& stair, int num_thresholds) {
  const float* p = stair.data_ptr<float>();
  return {p, p + num_thresholds, num_thresholds};
}

class BnAnaFunction : public torch::autograd::Function<BnAnaFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& weight,
                               const torch::Tensor& bias, const torch::Tensor& stair, const BatchNormRefs* bn,
                               const AnaScheme* scheme, const NoiseState* noise, torch::ScalarType out_dtype) {
    RECORD_USER_SCOPE("quantlab::bn_ana");  // named for profilers (bench/op_times.h)
    const auto format = x.dim() == 4 ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
    const kernel::Matrix m = matrix_of(x);
    const int threads = at::get_num_threads();
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat32);
    torch::Tensor mean = torch::empty({m.channels}, f32), var = torch::empty({m.channels}, f32);
    kernel::bn_stats(x.data_ptr(), kernel_dtype(x), m, mean.data_ptr<float>(), var.data_ptr<float>(), threads);
    const torch::Tensor invstd = torch::rsqrt(var + bn->eps);

    // The running statistics, as torch::nn::BatchNorm's forward updates them.
    bn->num_batches_tracked.add_(1);
    const double factor = bn->momentum.has_value() ? *bn->momentum : 1.0 / bn->num_batches_tracked.item<double>();
    const double rows = static_cast<double>(m.rows);
    bn->running_mean.mul_(1.0 - factor).add_(mean, factor);
    bn->running_var.mul_(1.0 - factor).add_(var, factor * rows / (rows - 1.0));

    const torch::Tensor w = weight.contiguous(), b = bias.contiguous();
    const torch::Tensor scale = w * invstd, shift = b - mean * scale;
    torch::Tensor y = torch::empty(x.sizes(), x.options().dtype(out_dtype).memory_format(format));
    torch::Tensor uniform;
    const float sigma_f = noise->sigma_forward;
    if (scheme->strategy == ForwardStrategy::kRandom && sigma_f > 0.0f) uniform = torch::rand(x.sizes(), f32);
    kernel::bn_ana_forward(x.data_ptr(), kernel_dtype(x), y.data_ptr(), kernel_dtype(y), m, scale.data_ptr<float>(),
                           shift.data_ptr<float>(), bn_stair_view(stair, scheme->quantizer.num_thresholds()),
                           scheme->noise, scheme->strategy, noise->mu, sigma_f,
                           uniform.defined() ? uniform.data_ptr<float>() : nullptr, threads);

    ctx->save_for_backward({x, w, b, stair, mean, invstd});
    ctx->saved_data["noise"] = static_cast<int64_t>(scheme->noise);
    ctx->saved_data["thresholds"] = static_cast<int64_t>(scheme->quantizer.num_thresholds());
    ctx->saved_data["mu"] = static_cast<double>(noise->mu);
    ctx->saved_data["sigma_backward"] = static_cast<double>(noise->sigma_backward);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    RECORD_USER_SCOPE("quantlab::bn_ana_backward");
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &b = saved[2], &stair = saved[3], &mean = saved[4],
                        &invstd = saved[5];
    const auto format = x.dim() == 4 ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
    const torch::Tensor gy = grads[0].contiguous(format);
    torch::Tensor gx = torch::empty(x.sizes(), x.options().memory_format(format));
    torch::Tensor g_weight = torch::empty_like(w), g_bias = torch::empty_like(b);
    const auto T = static_cast<int>(ctx->saved_data["thresholds"].toInt());
    kernel::bn_ana_backward(x.data_ptr(), kernel_dtype(x), gy.data_ptr(), kernel_dtype(gy), gx.data_ptr(),
                            kernel_dtype(gx), matrix_of(x), mean.data_ptr<float>(), invstd.data_ptr<float>(),
                            w.data_ptr<float>(), b.data_ptr<float>(), bn_stair_view(stair, T),
                            static_cast<NoiseFamily>(ctx->saved_data["noise"].toInt()),
                            static_cast<float>(ctx->saved_data["mu"].toDouble()),
                            static_cast<float>(ctx->saved_data["sigma_backward"].toDouble()),
                            g_weight.data_ptr<float>(), g_bias.data_ptr<float>(), at::get_num_threads());
    return {gx, g_weight, g_bias, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

bool bn_ana_fusable(const torch::Tensor& x, const BatchNormRefs& bn) {
  if (!x.device().is_cpu() || (x.scalar_type() != torch::kFloat32 && x.scalar_type() != torch::kBFloat16)) return false;
  const bool dense =
      (x.dim() == 2 && x.is_contiguous()) || (x.dim() == 4 && x.is_contiguous(c10::MemoryFormat::ChannelsLast));
  if (!dense || x.numel() / std::max<int64_t>(x.size(1), 1) < 2) return false;
  for (const torch::Tensor* t : {&bn.weight, &bn.bias, &bn.running_mean, &bn.running_var})
    if (!t->defined() || !t->device().is_cpu() || t->scalar_type() != torch::kFloat32 || t->numel() != x.size(1))
      return false;
  return bn.num_batches_tracked.defined();
}

torch::Tensor bn_ana(const torch::Tensor& x, const BatchNormRefs& bn, const torch::Tensor& stair,
                     const AnaScheme& scheme, const NoiseState& noise, torch::ScalarType out_dtype) {
  return BnAnaFunction::apply(x, bn.weight, bn.bias, stair, &bn, &scheme, &noise, out_dtype);
}

}  // namespace quantlab::core
