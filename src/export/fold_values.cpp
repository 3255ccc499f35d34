// What the exporter reads off a trained network's values (fold_values.h).
#include "fold_values.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "quantlab/util/error.h"

namespace quantlab::export_ {

BatchNormValues batch_norm_of(torch::nn::Module& m, const std::string& name) {
  double eps = 1e-5;
  if (auto* b1 = dynamic_cast<torch::nn::BatchNorm1dImpl*>(&m))
    eps = b1->options.eps();
  else if (auto* b2 = dynamic_cast<torch::nn::BatchNorm2dImpl*>(&m))
    eps = b2->options.eps();
  else
    throw Error(name + " is not a batch norm");
  auto p = m.named_parameters(false);
  auto b = m.named_buffers(false);
  const auto w = p["weight"].detach().to(torch::kFloat64), bias = p["bias"].detach().to(torch::kFloat64);
  const auto mean = b["running_mean"].detach().to(torch::kFloat64), var = b["running_var"].detach().to(torch::kFloat64);
  const auto gain = w / torch::sqrt(var + eps);
  BatchNormValues v;
  for (int64_t c = 0; c < w.size(0); ++c) {
    v.gain.push_back(gain[c].item<double>());
    v.mean.push_back(mean[c].item<double>());
    v.shift.push_back(bias[c].item<double>());
  }
  return v;
}

}  // namespace quantlab::export_
