// The optimizer registry.
#include "quantlab/train/optimizer.h"

#include <cmath>
#include <limits>

#include "quantlab/train/fused_adam.h"
#include "quantlab/train/optimizer_state.h"
#include "quantlab/util/registry.h"

namespace quantlab::train {
namespace {

using Params = std::vector<torch::Tensor>;
using OptimizerFactory = std::function<std::unique_ptr<torch::optim::Optimizer>(const config::JsonNode&, Params)>;

// The steps multiply float32 tensors by these numbers: one beyond float32's range stopped the first
// step with libtorch's "value cannot be converted to type float without overflow".
constexpr double kFloatMax = std::numeric_limits<float>::max();

double lr_of(const config::JsonNode& p, double fallback) {
  const double lr = p.number("lr", fallback);
  if (!(lr > 0) || lr > kFloatMax) p.at("lr").fail("expected a positive learning rate, at most float32's 3.4e38");
  return lr;
}

double non_negative(const config::JsonNode& p, const char* key, double fallback) {
  const double v = p.number(key, fallback);
  if (!(v >= 0) || v > kFloatMax) p.at(key).fail("expected a non-negative number, at most float32's 3.4e38");
  return v;
}

std::tuple<double, double> betas_of(const config::JsonNode& p) {
  if (!p.has("betas")) return {0.9, 0.999};
  const config::JsonNode n = p.at("betas");
  if (!n.is_array() || n.size() != 2) n.fail("expected [beta1, beta2]");
  const double b1 = n.at(0).number(), b2 = n.at(1).number();
  if (!(b1 >= 0 && b1 < 1 && b2 >= 0 && b2 < 1)) n.fail("expected [beta1, beta2], each in [0, 1)");
  return {b1, b2};
}

// The switches of PyTorch's implementations, which change how it computes, not what.
void implementation_switches(const config::JsonNode& p) {
  if (p.has("maximize") && p.at("maximize").boolean()) p.at("maximize").fail("maximize=true is not supported");
}

#define QL_OPTIMIZER_KEYS(...) \
  p.allow_keys({__VA_ARGS__, "maximize", "foreach", "fused", "capturable", "differentiable"})

std::unique_ptr<torch::optim::Optimizer> adam(const config::JsonNode& p, Params params) {
  QL_OPTIMIZER_KEYS("lr", "betas", "eps", "weight_decay", "amsgrad");
  implementation_switches(p);
  torch::optim::AdamOptions o(lr_of(p, 1e-3));
  o.betas(betas_of(p)).eps(non_negative(p, "eps", 1e-8)).weight_decay(non_negative(p, "weight_decay", 0.0));
  o.amsgrad(p.boolean("amsgrad", false));
  return std::make_unique<FusedAdam>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> adamw(const config::JsonNode& p, Params params) {
  QL_OPTIMIZER_KEYS("lr", "betas", "eps", "weight_decay", "amsgrad");
  implementation_switches(p);
  torch::optim::AdamWOptions o(lr_of(p, 1e-3));
  o.betas(betas_of(p)).eps(non_negative(p, "eps", 1e-8)).weight_decay(non_negative(p, "weight_decay", 1e-2));
  o.amsgrad(p.boolean("amsgrad", false));
  return std::make_unique<FusedAdamW>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> sgd(const config::JsonNode& p, Params params) {
  QL_OPTIMIZER_KEYS("lr", "momentum", "dampening", "weight_decay", "nesterov");
  implementation_switches(p);
  if (!p.has("lr")) p.fail("SGD needs \"lr\" (PyTorch's SGD has no default rate)");
  torch::optim::SGDOptions o(lr_of(p, 0.0));
  const double dampening = p.number("dampening", 0.0);
  if (!(std::abs(dampening) <= kFloatMax)) p.at("dampening").fail("expected a number within float32's range");
  o.momentum(non_negative(p, "momentum", 0.0)).dampening(dampening);
  o.weight_decay(non_negative(p, "weight_decay", 0.0)).nesterov(p.boolean("nesterov", false));
  if (o.nesterov() && (o.momentum() <= 0 || o.dampening() != 0))
    p.at("nesterov").fail("Nesterov momentum needs momentum > 0 and dampening = 0");
  return std::make_unique<torch::optim::SGD>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> adagrad(const config::JsonNode& p, Params params) {
  QL_OPTIMIZER_KEYS("lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps");
  implementation_switches(p);
  torch::optim::AdagradOptions o(lr_of(p, 1e-2));
  o.lr_decay(non_negative(p, "lr_decay", 0.0)).weight_decay(non_negative(p, "weight_decay", 0.0));
  o.initial_accumulator_value(non_negative(p, "initial_accumulator_value", 0.0)).eps(non_negative(p, "eps", 1e-10));
  return std::make_unique<torch::optim::Adagrad>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> rmsprop(const config::JsonNode& p, Params params) {
  QL_OPTIMIZER_KEYS("lr", "alpha", "eps", "weight_decay", "momentum", "centered");
  implementation_switches(p);
  torch::optim::RMSpropOptions o(lr_of(p, 1e-2));
  const double alpha = non_negative(p, "alpha", 0.99);
  // The running average of squares is alpha * v + (1 - alpha) * g^2: above 1 it turns negative and
  // its square root NaN (PyTorch accepts it).
  if (alpha > 1) p.at("alpha").fail("expected a smoothing constant in [0, 1] (PyTorch's default 0.99)");
  o.alpha(alpha).eps(non_negative(p, "eps", 1e-8));
  o.weight_decay(non_negative(p, "weight_decay", 0.0)).momentum(non_negative(p, "momentum", 0.0));
  o.centered(p.boolean("centered", false));
  return std::make_unique<torch::optim::RMSprop>(std::move(params), o);
}

const Registry<OptimizerFactory>& optimizer_registry() {
  static const Registry<OptimizerFactory> r = [] {
    Registry<OptimizerFactory> reg("optimizer");
    reg.add("Adam", adam).add("AdamW", adamw).add("SGD", sgd).add("Adagrad", adagrad).add("RMSprop", rmsprop);
    return reg;
  }();
  return r;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const config::JsonNode& spec, Params parameters) {
  spec.allow_keys({"class", "params"});
  const config::JsonNode cls = spec.at("class");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return optimizer_registry().at(cls.string(), cls.path())(
      spec.has("params") ? spec.at("params") : config::JsonNode(kEmpty, spec.path() + ".params"),
      std::move(parameters));
}

double get_lr(const torch::optim::Optimizer& opt) { return opt.param_groups().front().options().get_lr(); }

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) group.options().set_lr(lr);
}

void clear_gradients(torch::optim::Optimizer& opt) {
  for (auto& group : opt.param_groups())
    for (auto& p : group.params()) p.mutable_grad().reset();
}

void set_momentum(torch::optim::Optimizer& opt, double momentum) {
  for (auto& group : opt.param_groups()) {
    auto& o = group.options();
    if (auto* sgd = dynamic_cast<torch::optim::SGDOptions*>(&o)) {
      sgd->momentum(momentum);
    } else if (auto* rms = dynamic_cast<torch::optim::RMSpropOptions*>(&o)) {
      rms->momentum(momentum);
    } else if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&o)) {
      adam->betas({momentum, std::get<1>(adam->betas())});
    } else if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&o)) {
      adamw->betas({momentum, std::get<1>(adamw->betas())});
    } else {
      throw ConfigError(
          "treat.lr_scheduler.params.cycle_momentum: this optimizer has no momentum to cycle; set it to false");
    }
  }
  // A momentum switched on after the first steps (a cycle from 0): RMSprop's state made without it
  // has no buffer, which its next step would read.
  fill_missing_state(opt);
}

}  // namespace quantlab::train
