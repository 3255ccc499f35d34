// The loss registry.
#include "quantlab/train/loss.h"

#include "quantlab/util/registry.h"

namespace quantlab::train {
namespace {

namespace F = torch::nn::functional;
using LossFactory = std::function<LossFn(const config::JsonNode&)>;

enum class Reduction { kMean, kSum };

Reduction reduction_of(const config::JsonNode& p) {
  const std::string r = p.string("reduction", "mean");
  if (r == "mean") return Reduction::kMean;
  if (r == "sum") return Reduction::kSum;
  p.at("reduction").fail("expected \"mean\" or \"sum\" (training needs one number per batch)");
}

// Per-class weights, or an undefined tensor.
torch::Tensor weight_of(const config::JsonNode& p) {
  if (!p.has("weight")) return {};
  const auto w = p.at("weight").floats();
  if (w.empty()) p.at("weight").fail("expected one weight per class");
  for (float x : w)
    if (!(x >= 0)) p.at("weight").fail("expected non-negative weights");
  return torch::tensor(w);
}

// The weights on the scores' device, checked against the number of classes.
torch::Tensor weight_for(const torch::Tensor& w, const torch::Tensor& scores, const char* loss) {
  if (!w.defined()) return w;
  TORCH_CHECK(w.size(0) == scores.size(1), loss, ": weight has ", w.size(0), " entries, the network gives ",
              scores.size(1), " scores");
  return w.to(scores.device(), scores.scalar_type());
}

LossFn cross_entropy(const config::JsonNode& p) {
  p.allow_keys({"weight", "ignore_index", "reduction", "label_smoothing"});
  const double smoothing = p.number("label_smoothing", 0.0);
  if (!(smoothing >= 0.0 && smoothing <= 1.0)) p.at("label_smoothing").fail("expected a number in [0, 1]");
  const int64_t ignore = p.integer("ignore_index", -100);
  const bool sum = reduction_of(p) == Reduction::kSum;
  const torch::Tensor weight = weight_of(p);
  return [=](const torch::Tensor& s, const torch::Tensor& y) {
    auto o = F::CrossEntropyFuncOptions().label_smoothing(smoothing).ignore_index(ignore);
    o.weight(weight_for(weight, s, "CrossEntropyLoss"));
    if (sum) o.reduction(torch::kSum);
    return F::cross_entropy(s, y, o);
  };
}

LossFn nll(const config::JsonNode& p) {
  p.allow_keys({"weight", "ignore_index", "reduction"});
  const int64_t ignore = p.integer("ignore_index", -100);
  const bool sum = reduction_of(p) == Reduction::kSum;
  const torch::Tensor weight = weight_of(p);
  return [=](const torch::Tensor& s, const torch::Tensor& y) {
    auto o = F::NLLLossFuncOptions().ignore_index(ignore).weight(weight_for(weight, s, "NLLLoss"));
    if (sum) o.reduction(torch::kSum);
    return F::nll_loss(s, y, o);
  };
}

LossFn multi_margin(const config::JsonNode& p) {
  p.allow_keys({"p", "margin", "weight", "reduction"});
  const int64_t power = p.integer("p", 1);
  if (power != 1 && power != 2) p.at("p").fail("expected 1 or 2, as PyTorch's MultiMarginLoss");
  const double margin = p.number("margin", 1.0);
  const bool sum = reduction_of(p) == Reduction::kSum;
  const torch::Tensor weight = weight_of(p);
  return [=](const torch::Tensor& s, const torch::Tensor& y) {
    auto o = F::MultiMarginLossFuncOptions().p(power).margin(margin).weight(weight_for(weight, s, "MultiMarginLoss"));
    if (sum) o.reduction(torch::kSum);
    return F::multi_margin_loss(s, y, o);
  };
}

LossFn mse(const config::JsonNode& p) {
  p.allow_keys({"reduction"});
  const bool sum = reduction_of(p) == Reduction::kSum;
  return [=](const torch::Tensor& s, const torch::Tensor& y) {
    const auto target = torch::one_hot(y, s.size(1)).to(s.scalar_type());
    auto o = F::MSELossFuncOptions();
    if (sum) o.reduction(torch::kSum);
    return F::mse_loss(s, target, o);
  };
}

LossFn hinge(const config::JsonNode& p) {
  p.allow_keys({"num_classes", "margin", "p"});
  const int64_t classes = p.integer("num_classes", 10);
  if (classes < 2) p.at("num_classes").fail("expected at least 2 classes");
  const double margin = p.number("margin", 1.0), power = p.number("p", 2.0);
  return [=](const torch::Tensor& s, const torch::Tensor& y) {
    TORCH_CHECK(s.size(1) == classes, "HingeLoss: the network gives ", s.size(1), " scores, num_classes is ", classes);
    return hinge_loss(s, y, margin, power);
  };
}

const Registry<LossFactory>& loss_registry() {
  static const Registry<LossFactory> r = [] {
    Registry<LossFactory> reg("loss function");
    reg.add("CrossEntropyLoss", cross_entropy).add("NLLLoss", nll).add("MultiMarginLoss", multi_margin);
    reg.add("MSELoss", mse).add("HingeLoss", hinge);
    return reg;
  }();
  return r;
}

}  // namespace

torch::Tensor hinge_loss(const torch::Tensor& scores, const torch::Tensor& labels, double margin, double p) {
  auto target = torch::full_like(scores, -1.0);
  target.scatter_(1, labels.unsqueeze(1), 1.0);
  return torch::clamp_min(margin - scores * target, 0.0).pow(p).mean();
}

Loss make_loss(const config::JsonNode& spec) {
  spec.allow_keys({"class", "params"});
  const config::JsonNode cls = spec.at("class");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const config::JsonNode params =
      spec.has("params") ? spec.at("params") : config::JsonNode(kEmpty, spec.path() + ".params");
  Loss loss{loss_registry().at(cls.string(), cls.path())(params), false};
  loss.sums = params.has("reduction") && params.at("reduction").string() == "sum";
  return loss;
}

}  // namespace quantlab::train
