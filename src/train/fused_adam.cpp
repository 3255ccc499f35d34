// The fused Adam / AdamW step (fused_adam.h): libtorch's step (torch/csrc/api/src/optim/adam.cpp,
// adamw.cpp) with the per-parameter tensor operations replaced by one kernel call.
#include "quantlab/train/fused_adam.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "quantlab/train/adam_kernel.h"
#include "quantlab/train/optimizer_state.h"

namespace quantlab::train {
namespace {

// Whether `a` holds its elements in memory in the order `p` does: dense, the same sizes and the same
// strides wherever a size is above 1 (a size-1 dimension's stride moves nothing: the first conv's
// weight gradient of a one-channel input comes channels-last, [32, 1, 3, 3] with strides
// [9, 1, 3, 1] beside the weight's [9, 9, 3, 1]).
bool same_dense_layout(const torch::Tensor& a, const torch::Tensor& p) {
  if (!a.defined() || a.is_sparse() || a.device() != p.device() || a.scalar_type() != p.scalar_type() ||
      a.sizes() != p.sizes() || !a.is_non_overlapping_and_dense())
    return false;
  for (int64_t d = 0; d < a.dim(); ++d)
    if (a.size(d) > 1 && a.stride(d) != p.stride(d)) return false;
  return true;
}

// Whether every parameter with a gradient, and its state where it has one, can take the kernel.
template <typename State>
bool fusable(const torch::optim::Optimizer& opt, bool amsgrad_any) {
  for (const auto& group : opt.param_groups()) {
    for (const auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (!p.device().is_cpu() || p.scalar_type() != torch::kFloat || !p.is_non_overlapping_and_dense() ||
          !same_dense_layout(p.grad(), p))
        return false;
      auto it = opt.state().find(optimizer_state_key(opt, p));
      if (it == opt.state().end()) continue;
      const auto& s = static_cast<const State&>(*it->second);
      if (!same_dense_layout(s.exp_avg(), p) || !same_dense_layout(s.exp_avg_sq(), p)) return false;
      if (amsgrad_any && s.max_exp_avg_sq().defined() && !same_dense_layout(s.max_exp_avg_sq(), p)) return false;
    }
  }
  return true;
}

template <typename Options>
bool any_amsgrad(const torch::optim::Optimizer& opt) {
  for (const auto& group : opt.param_groups())
    if (static_cast<const Options&>(group.options()).amsgrad()) return true;
  return false;
}

// libtorch's step, fused; `decoupled` for AdamW (p *= 1 - lr * weight_decay) else Adam's L2 term.
template <typename State, typename Options>
void fused_step(torch::optim::Optimizer& opt, const AnaBackwardFold& fold, bool decoupled) {
  RECORD_USER_SCOPE("quantlab::adam");  // named for profilers (bench/op_times.h)
  torch::NoGradGuard no_grad;
  const int threads = at::get_num_threads();
  for (auto& group : opt.param_groups()) {
    const auto& o = static_cast<const Options&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      const auto key = optimizer_state_key(opt, p);
      auto& slot = opt.state()[key];
      if (!slot) {
        auto s = std::make_unique<State>();
        s->step(0);
        s->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        s->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        if (o.amsgrad()) s->max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(s);
      }
      auto& s = static_cast<State&>(*slot);
      if (o.amsgrad() && !s.max_exp_avg_sq().defined())
        s.max_exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
      s.step(s.step() + 1);
      const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
      const double bias_correction1 = 1 - std::pow(beta1, static_cast<double>(s.step()));
      const double bias_correction2 = 1 - std::pow(beta2, static_cast<double>(s.step()));
      kernel::AdamCoefficients c{};
      c.beta1 = static_cast<float>(beta1);
      c.beta2 = static_cast<float>(beta2);
      c.one_minus_beta1 = static_cast<float>(1 - beta1);
      c.one_minus_beta2 = static_cast<float>(1 - beta2);
      c.sqrt_bias_correction2 = static_cast<float>(std::sqrt(bias_correction2));
      c.eps = static_cast<float>(o.eps());
      c.step_size = static_cast<float>(o.lr() / bias_correction1);
      c.weight_decay = decoupled ? 0.0F : static_cast<float>(o.weight_decay());
      c.decay_scale = decoupled ? static_cast<float>(1 - o.lr() * o.weight_decay()) : 1.0F;
      c.amsgrad = o.amsgrad();
      const torch::Tensor& m = s.exp_avg();
      const torch::Tensor& v = s.exp_avg_sq();
      const torch::Tensor& vmax = s.max_exp_avg_sq();
      const auto ana = fold.pending(p);
      const auto ahead = ana ? fold.ahead(p) : std::nullopt;  // the next forward's quantized weight
      kernel::adam_step(p.data_ptr<float>(), p.grad().data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(),
                        o.amsgrad() ? vmax.data_ptr<float>() : nullptr, p.numel(), c, threads, ana ? &*ana : nullptr,
                        ahead ? &*ahead : nullptr);
      // Written through its pointer: a new version, as libtorch's in-place step would give it (what
      // a copy of the weight made before, the layer's cached quantized weights, go by).
      p.unsafeGetTensorImpl()->bump_version();
      if (ahead) fold.written(p);
    }
  }
}

template <typename Base, typename State, typename Options>
torch::Tensor step_of(Base& opt, const AnaBackwardFold& fold, torch::optim::Optimizer::LossClosure closure,
                      bool decoupled) {
  torch::Tensor loss;
  if (closure != nullptr) {
    at::AutoGradMode enable_grad(true);
    loss = closure();
  }
  if (fused_adam_enabled() && fusable<State>(opt, any_amsgrad<Options>(opt))) {
    fused_step<State, Options>(opt, fold, decoupled);
    return loss;
  }
  if (!fold.empty())
    for (auto& group : opt.param_groups())
      for (auto& p : group.params()) fold.apply(p);
  opt.Base::step(nullptr);
  return loss;
}

}  // namespace

bool fused_adam_enabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("QL_UNFUSED_ADAM");
    return v == nullptr || std::strcmp(v, "1") != 0;
  }();
  return enabled;
}

torch::Tensor FusedAdam::step(LossClosure closure) {
  return step_of<torch::optim::Adam, torch::optim::AdamParamState, torch::optim::AdamOptions>(
      *this, ana_fold, std::move(closure), false);
}

torch::Tensor FusedAdamW::step(LossClosure closure) {
  return step_of<torch::optim::AdamW, torch::optim::AdamWParamState, torch::optim::AdamWOptions>(
      *this, ana_fold, std::move(closure), true);
}

}  // namespace quantlab::train
