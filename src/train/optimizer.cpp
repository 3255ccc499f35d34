// The optimizer registry.
#include "quantlab/train/optimizer.h"

#include "quantlab/util/registry.h"

namespace quantlab {
namespace {

using Params = std::vector<torch::Tensor>;
using OptimizerFactory = std::function<std::unique_ptr<torch::optim::Optimizer>(const JsonNode&, Params)>;

double lr_of(const JsonNode& p, double fallback) {
  const double lr = p.number("lr", fallback);
  if (!(lr > 0)) p.at("lr").fail("expected a positive learning rate");
  return lr;
}

std::tuple<double, double> betas_of(const JsonNode& p) {
  if (!p.has("betas")) return {0.9, 0.999};
  const auto b = p.at("betas").floats();
  if (b.size() != 2) p.at("betas").fail("expected [beta1, beta2]");
  return {b[0], b[1]};
}

std::unique_ptr<torch::optim::Optimizer> adam(const JsonNode& p, Params params) {
  p.allow_keys({"lr", "betas", "eps", "weight_decay", "amsgrad"});
  torch::optim::AdamOptions o(lr_of(p, 1e-3));
  o.betas(betas_of(p)).eps(p.number("eps", 1e-8)).weight_decay(p.number("weight_decay", 0.0));
  o.amsgrad(p.boolean("amsgrad", false));
  return std::make_unique<torch::optim::Adam>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> adamw(const JsonNode& p, Params params) {
  p.allow_keys({"lr", "betas", "eps", "weight_decay", "amsgrad"});
  torch::optim::AdamWOptions o(lr_of(p, 1e-3));
  o.betas(betas_of(p)).eps(p.number("eps", 1e-8)).weight_decay(p.number("weight_decay", 1e-2));
  o.amsgrad(p.boolean("amsgrad", false));
  return std::make_unique<torch::optim::AdamW>(std::move(params), o);
}

std::unique_ptr<torch::optim::Optimizer> sgd(const JsonNode& p, Params params) {
  p.allow_keys({"lr", "momentum", "dampening", "weight_decay", "nesterov"});
  torch::optim::SGDOptions o(lr_of(p, 1e-2));
  o.momentum(p.number("momentum", 0.0)).dampening(p.number("dampening", 0.0));
  o.weight_decay(p.number("weight_decay", 0.0)).nesterov(p.boolean("nesterov", false));
  if (o.nesterov() && (o.momentum() <= 0 || o.dampening() != 0))
    p.at("nesterov").fail("Nesterov momentum needs momentum > 0 and dampening = 0");
  return std::make_unique<torch::optim::SGD>(std::move(params), o);
}

const Registry<OptimizerFactory>& optimizer_registry() {
  static const Registry<OptimizerFactory> r = [] {
    Registry<OptimizerFactory> reg("optimizer");
    reg.add("Adam", adam).add("AdamW", adamw).add("SGD", sgd);
    return reg;
  }();
  return r;
}

}  // namespace

std::unique_ptr<torch::optim::Optimizer> make_optimizer(const JsonNode& spec, Params parameters) {
  spec.allow_keys({"class", "params"});
  const JsonNode cls = spec.at("class");
  return optimizer_registry().at(cls.string(), cls.path())(spec.at("params"), std::move(parameters));
}

double get_lr(const torch::optim::Optimizer& opt) { return opt.param_groups().front().options().get_lr(); }

void set_lr(torch::optim::Optimizer& opt, double lr) {
  for (auto& group : const_cast<torch::optim::Optimizer&>(opt).param_groups()) group.options().set_lr(lr);
}

}  // namespace quantlab
