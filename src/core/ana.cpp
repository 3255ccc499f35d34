// The ANA autograd function: dispatches to the fused CPU kernel, the fused CUDA kernel (when
// built with CUDA) or the tensor-op formulation.
#include "quantlab/core/ana.h"

#include <ATen/record_function.h>

#include <cmath>

#include "quantlab/core/ana_kernel.h"
#ifdef QL_WITH_CUDA
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "quantlab/core/ana_cuda.h"
#endif

namespace quantlab::core {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

bool use_kernel(const torch::Tensor& x) { return x.device().is_cpu() && x.scalar_type() == torch::kFloat32; }

bool use_cuda_kernel(const torch::Tensor& x) {
#ifdef QL_WITH_CUDA
  return x.device().is_cuda() && x.scalar_type() == torch::kFloat32;
#else
  (void)x;
  return false;
#endif
}

kernel::Stair stair_view(const torch::Tensor& stair, int num_thresholds) {
  const float* p = stair.data_ptr<float>();
  return {p, p + num_thresholds, num_thresholds};
}

class AnaFunction : public torch::autograd::Function<AnaFunction> {
 public:
  // Non-tensor arguments travel in saved_data, as libtorch's custom functions do.
  // bf16_out: y in bfloat16 (the operand of a bfloat16 product); its gradient then arrives in bfloat16.
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& stair,
                               const AnaScheme* scheme, double mu, double sigma_forward, double sigma_backward,
                               bool bf16_out, bool backward_folded) {
    RECORD_USER_SCOPE("quantlab::ana");  // named for profilers (bench/op_times.h)
    ctx->save_for_backward({x, stair});
    // What backward needs of the scheme, by value: the noise family and the stair (the stair
    // tensor is on the device; these few numbers stay on the host, so no copy per call).
    ctx->saved_data["noise"] = static_cast<int64_t>(scheme->noise);
    ctx->saved_data["thresholds"] =
        std::vector<double>(scheme->quantizer.thresholds.begin(), scheme->quantizer.thresholds.end());
    ctx->saved_data["levels"] = std::vector<double>(scheme->quantizer.levels.begin(), scheme->quantizer.levels.end());
    ctx->saved_data["mu"] = mu;
    ctx->saved_data["sigma_backward"] = sigma_backward;
    ctx->saved_data["folded"] = backward_folded;
    const auto strategy = scheme->strategy;
    torch::Tensor uniform;
    if (strategy == ForwardStrategy::kRandom && sigma_forward > 0.0) uniform = torch::rand(x.sizes(), x.options());
#ifdef QL_WITH_CUDA
    if (use_cuda_kernel(x)) {
      const c10::cuda::CUDAGuard guard(x.device());
      const torch::Tensor xc = x.contiguous(x.suggest_memory_format());
      torch::Tensor y = torch::empty_like(xc);
      kernel::ana_forward_cuda(
          xc.data_ptr<float>(), y.data_ptr<float>(), xc.numel(), stair_view(stair, scheme->quantizer.num_thresholds()),
          scheme->noise, strategy, static_cast<float>(mu), static_cast<float>(sigma_forward),
          uniform.defined() ? uniform.data_ptr<float>() : nullptr, at::cuda::getCurrentCUDAStream().stream());
      return bf16_out ? y.to(torch::kBFloat16) : y;
    }
#endif
    if (!use_kernel(x)) {
      auto y = ana_tensor_ops_forward(x, *scheme, static_cast<float>(mu), static_cast<float>(sigma_forward), uniform);
      return bf16_out ? y.to(torch::kBFloat16) : y;
    }
    // Elementwise: any dense layout works as it is (channels-last activations stay channels-last).
    const torch::Tensor xc = x.contiguous(x.suggest_memory_format());
    torch::Tensor y = torch::empty_like(xc, bf16_out ? torch::kBFloat16 : torch::kFloat32);
    kernel::ana_forward(xc.data_ptr<float>(), y.data_ptr(), kernel_dtype(y), xc.numel(),
                        stair_view(stair, scheme->quantizer.num_thresholds()), scheme->noise, strategy,
                        static_cast<float>(mu), static_cast<float>(sigma_forward),
                        uniform.defined() ? uniform.data_ptr<float>() : nullptr, at::get_num_threads());
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    RECORD_USER_SCOPE("quantlab::ana_backward");
    const auto saved = ctx->get_saved_variables();
    const torch::Tensor& x = saved[0];
    // Folded into the optimizer's step (train/ana_fold.h): x's gradient is y's, as float32 in x's layout.
    if (ctx->saved_data["folded"].toBool())
      return {grads[0].to(torch::kFloat32).contiguous(x.suggest_memory_format()), {}, {}, {}, {}, {}, {}, {}};
    const torch::Tensor& stair = saved[1];
    AnaScheme scheme;
    scheme.noise = static_cast<NoiseFamily>(ctx->saved_data["noise"].toInt());
    for (double t : ctx->saved_data["thresholds"].toDoubleVector())
      scheme.quantizer.thresholds.push_back(static_cast<float>(t));
    for (double q : ctx->saved_data["levels"].toDoubleVector())
      scheme.quantizer.levels.push_back(static_cast<float>(q));
    const auto mu = static_cast<float>(ctx->saved_data["mu"].toDouble());
    const auto sigma_b = static_cast<float>(ctx->saved_data["sigma_backward"].toDouble());
    torch::Tensor gx;
#ifdef QL_WITH_CUDA
    if (use_cuda_kernel(x)) {
      const c10::cuda::CUDAGuard guard(x.device());
      const auto format = x.suggest_memory_format();
      const torch::Tensor xc = x.contiguous(format);
      const torch::Tensor gy = grads[0].to(torch::kFloat32).contiguous(format);
      gx = torch::empty_like(xc);
      kernel::ana_backward_cuda(xc.data_ptr<float>(), gy.data_ptr<float>(), gx.data_ptr<float>(), xc.numel(),
                                stair_view(stair, scheme.quantizer.num_thresholds()), scheme.noise, mu, sigma_b,
                                at::cuda::getCurrentCUDAStream().stream());
      return {gx, {}, {}, {}, {}, {}, {}, {}};
    }
#endif
    if (!use_kernel(x)) {
      gx = ana_tensor_ops_backward(x, grads[0].to(torch::kFloat32), scheme, mu, sigma_b);
    } else {
      const auto format = x.suggest_memory_format();
      const torch::Tensor xc = x.contiguous(format);
      torch::Tensor gy = grads[0].contiguous(format);  // element i of gy matches element i of xc
      if (gy.scalar_type() != torch::kBFloat16) gy = gy.to(torch::kFloat32);
      gx = torch::empty_like(xc);
      kernel::ana_backward(xc.data_ptr<float>(), gy.data_ptr(), kernel_dtype(gy), gx.data_ptr<float>(), xc.numel(),
                           stair_view(stair, scheme.quantizer.num_thresholds()), scheme.noise, mu, sigma_b,
                           at::get_num_threads());
    }
    return {gx, {}, {}, {}, {}, {}, {}, {}};
  }
};

// The folded operator whose output the optimizer computed ahead: the forward hands that output
// on, the backward is AnaFunction's folded one.
class AnaAheadFunction : public torch::autograd::Function<AnaAheadFunction> {
 public:
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor* y) {
    RECORD_USER_SCOPE("quantlab::ana");
    ctx->saved_data["format"] = static_cast<int64_t>(x.suggest_memory_format());
    // A new tensor over y's storage (not a view in autograd's sense): the graph's history goes on
    // it, not on the caller's buffer.
    return y->detach();
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto format = static_cast<c10::MemoryFormat>(ctx->saved_data["format"].toInt());
    return {grads[0].to(torch::kFloat32).contiguous(format), {}};
  }
};

// Standardised CDF of each family, as tensor ops.
torch::Tensor cdf(const torch::Tensor& u, NoiseFamily f) {
  switch (f) {
    case NoiseFamily::kUniform:
      return torch::clamp(0.5 * u + 0.5, 0.0, 1.0);
    case NoiseFamily::kTriangular: {
      const auto a = torch::clamp_max(torch::abs(u), 1.0);
      return 0.5 + 0.5 * torch::sign(u) * a * (2.0 - a);
    }
    case NoiseFamily::kNormal:
      return 0.5 * torch::erfc(-u * M_SQRT1_2);
    case NoiseFamily::kLogistic:
      return torch::sigmoid(u);
  }
  throw std::logic_error("unhandled noise family");
}

// Density of spread sigma at z, as tensor ops.
torch::Tensor density(const torch::Tensor& z, float sigma, NoiseFamily f) {
  const auto u = z / sigma;
  switch (f) {
    case NoiseFamily::kUniform:
      return (torch::abs(u) <= 1.0).to(z.scalar_type()) * (0.5 / sigma);
    case NoiseFamily::kTriangular:
      return torch::clamp_min(1.0 - torch::abs(u), 0.0) / sigma;
    case NoiseFamily::kNormal:
      return torch::exp(-0.5 * u * u) / (sigma * std::sqrt(2.0 * M_PI));
    case NoiseFamily::kLogistic: {
      const auto e = torch::exp(-torch::abs(u));
      return e / (sigma * (1.0 + e) * (1.0 + e));
    }
  }
  throw std::logic_error("unhandled noise family");
}

}  // namespace

torch::Tensor stair_tensor(const Quantizer& q, const torch::Device& device) {
  std::vector<float> packed(q.thresholds);
  packed.insert(packed.end(), q.levels.begin(), q.levels.end());
  return torch::tensor(packed, torch::TensorOptions().dtype(torch::kFloat32)).to(device);
}

torch::Tensor ana(const torch::Tensor& x, const torch::Tensor& stair, const AnaScheme& scheme, const NoiseState& noise,
                  bool training, bool bf16_out, bool backward_folded) {
  const double sigma_f = training ? noise.sigma_forward : 0.0;
  return AnaFunction::apply(x, stair, &scheme, noise.mu, sigma_f, noise.sigma_backward, bf16_out, backward_folded);
}

torch::Tensor ana_computed_ahead(const torch::Tensor& x, const torch::Tensor& y) {
  return AnaAheadFunction::apply(x, &y);
}

torch::Tensor ana_tensor_ops_forward(const torch::Tensor& x, const AnaScheme& scheme, float mu, float sigma,
                                     const torch::Tensor& uniform) {
  const auto& q = scheme.quantizer;
  const int T = q.num_thresholds();
  const auto xm = x - mu;
  if (sigma <= 0.0f) {
    auto y = torch::full_like(x, q.levels[0]);
    for (int i = 0; i < T; ++i)
      y = y + (q.levels[i + 1] - q.levels[i]) * (xm - q.thresholds[i] >= 0).to(x.scalar_type());
    return y;
  }
  switch (scheme.strategy) {
    case ForwardStrategy::kExpectation: {
      auto y = torch::full_like(x, q.levels[0]);
      for (int i = 0; i < T; ++i)
        y = y + (q.levels[i + 1] - q.levels[i]) * cdf((xm - q.thresholds[i]) / sigma, scheme.noise);
      return y;
    }
    case ForwardStrategy::kRandom: {
      auto y = torch::full_like(x, q.levels[0]);
      for (int i = 0; i < T; ++i) {
        const auto f = cdf((xm - q.thresholds[i]) / sigma, scheme.noise);
        y = y + (q.levels[i + 1] - q.levels[i]) * (uniform < f).to(x.scalar_type());
      }
      return y;
    }
    case ForwardStrategy::kMode: {
      auto prev = torch::ones_like(x);
      auto best_p = torch::full_like(x, -1.0);
      auto y = torch::full_like(x, q.levels[0]);
      for (int k = 0; k <= T; ++k) {
        const auto f = k < T ? cdf((xm - q.thresholds[k]) / sigma, scheme.noise) : torch::zeros_like(x);
        const auto p = prev - f;
        const auto better = p > best_p;
        best_p = torch::where(better, p, best_p);
        y = torch::where(better, torch::full_like(x, q.levels[k]), y);
        prev = f;
      }
      return y;
    }
  }
  throw std::logic_error("unhandled forward strategy");
}

torch::Tensor ana_tensor_ops_backward(const torch::Tensor& x, const torch::Tensor& grad, const AnaScheme& scheme,
                                      float mu, float sigma) {
  if (sigma <= 0.0f) return torch::zeros_like(x);
  const auto& q = scheme.quantizer;
  const auto xm = x - mu;
  auto jac = torch::zeros_like(x);
  for (int i = 0; i < q.num_thresholds(); ++i)
    jac = jac + (q.levels[i + 1] - q.levels[i]) * density(xm - q.thresholds[i], sigma, scheme.noise);
  return grad * jac;
}

}  // namespace quantlab::core
