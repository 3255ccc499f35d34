// The loss registry.
#include "quantlab/train/loss.h"

#include "quantlab/util/registry.h"

namespace quantlab {
namespace {

using LossFactory = std::function<LossFn(const JsonNode&)>;

LossFn cross_entropy(const JsonNode& p) {
  p.allow_keys({"label_smoothing"});
  const double smoothing = p.number("label_smoothing", 0.0);
  return [smoothing](const torch::Tensor& s, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(
        s, y, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(smoothing));
  };
}

LossFn hinge(const JsonNode& p) {
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
    reg.add("CrossEntropyLoss", cross_entropy).add("HingeLoss", hinge);
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

LossFn make_loss(const JsonNode& spec) {
  spec.allow_keys({"class", "params"});
  const JsonNode cls = spec.at("class");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return loss_registry().at(
      cls.string(), cls.path())(spec.has("params") ? spec.at("params") : JsonNode(kEmpty, spec.path() + ".params"));
}

}  // namespace quantlab
