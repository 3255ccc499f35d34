// Named layers, quantized by name.
#include "quantlab/topology/layer_maker.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "quantlab/nn/ana_layers.h"
#include "quantlab/nn/products.h"

namespace quantlab::topology {

namespace {

double physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && size > 0 ? static_cast<double>(pages) * static_cast<double>(size) : 0.0;
}

std::string gib(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / (1024.0 * 1024.0 * 1024.0));
  return buf;
}

}  // namespace

void LayerMaker::check_size(const std::string& name, int64_t in, int64_t out, double weights) {
  const std::string capacity =
      params_.path() + ".capacity" + (params_.has("capacity") ? " = " + params_.at("capacity").json().dump() : "");
  if (in < 1 || out < 1)
    throw ConfigError(capacity + ": layer " + name + " would have " + std::to_string(in) + " inputs and " +
                      std::to_string(out) + " outputs; a larger capacity gives every layer at least one unit");
  total_weights_ += weights;
  const double need = total_weights_ * 4.0 * 4.0;  // float32 weights, gradients, two optimizer moments
  const double have = physical_memory_bytes();
  if (have > 0 && need > have)
    throw ConfigError(capacity + ": the network would need at least " + gib(need) +
                      " for its parameters, gradients and optimizer state (up to layer " + name + ", " +
                      std::to_string(in) + " x " + std::to_string(out) + "), more than this machine's " + gib(have) +
                      " of memory");
}

Layer LayerMaker::conv(const std::string& name, int64_t in, int64_t out, int64_t kernel, int64_t stride,
                       int64_t padding, int64_t groups, bool bias, bool keep_bf16) {
  check_size(name, in, out,
             static_cast<double>(out) * static_cast<double>(in / std::max<int64_t>(groups, 1)) * kernel * kernel);
  if (quantized(name)) {
    nn::AnaConvOptions c;
    c.in_channels = in;
    c.out_channels = out;
    c.kernel_size = {kernel};
    c.stride = {stride};
    c.padding = {padding};
    c.groups = groups;
    c.bias = bias;
    auto m = net_.register_module(name, nn::AnaConv(schemes_.at(name), c));
    return [m, net = &net_, keep_bf16](const torch::Tensor& x) {
      return m->forward(x, net->mixed_precision(), keep_bf16);
    };
  }
  auto m = net_.register_module(
      name, torch::nn::Conv2d(
                torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).groups(groups).bias(bias)));
  convs_.push_back(m);
  return [m, net = &net_, stride, padding, groups, keep_bf16](const torch::Tensor& x) {
    if (!net->mixed_precision()) return m->forward(x);
    auto y = nn::bf16_conv(x, m->weight, m->bias, 2, stride, padding, 1, groups);
    return keep_bf16 ? y : y.to(torch::kFloat32);
  };
}

Layer LayerMaker::fc(const std::string& name, int64_t in, int64_t out, bool bias, bool keep_bf16) {
  check_size(name, in, out, static_cast<double>(in) * static_cast<double>(out));
  if (quantized(name)) {
    auto m = net_.register_module(name, nn::AnaLinear(schemes_.at(name), in, out, bias));
    return [m, net = &net_, keep_bf16](const torch::Tensor& x) {
      return m->forward(x, net->mixed_precision(), keep_bf16);
    };
  }
  auto m = net_.register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias)));
  linears_.push_back(m);
  return [m, net = &net_, keep_bf16](const torch::Tensor& x) {
    if (!net->mixed_precision()) return m->forward(x);
    auto y = nn::bf16_linear(x, m->weight, m->bias);
    return keep_bf16 ? y : y.to(torch::kFloat32);
  };
}

namespace {

template <class Module>
core::BatchNormRefs refs_of(const Module& m) {
  const auto& momentum = m->options.momentum();
  return {m->weight,
          m->bias,
          m->running_mean,
          m->running_var,
          m->num_batches_tracked,
          momentum.has_value() ? std::optional<double>(*momentum) : std::nullopt,
          m->options.eps()};
}

}  // namespace

Layer LayerMaker::bn2d(const std::string& name, int64_t channels) {
  auto m = net_.register_module(name, torch::nn::BatchNorm2d(channels));
  Layer run = [m](const torch::Tensor& x) {
    return m->forward(x.scalar_type() == torch::kBFloat16 ? x.to(torch::kFloat32) : x);
  };
  bns_[name] = {m, [m] { return refs_of(m); }, run};
  return run;
}

Layer LayerMaker::bn1d(const std::string& name, int64_t features) {
  auto m = net_.register_module(name, torch::nn::BatchNorm1d(features));
  Layer run = [m](const torch::Tensor& x) {
    return m->forward(x.scalar_type() == torch::kBFloat16 ? x.to(torch::kFloat32) : x);
  };
  bns_[name] = {m, [m] { return refs_of(m); }, run};
  return run;
}

Layer LayerMaker::bn_act(const std::string& bn, const std::string& act, bool bf16_out) {
  // QL_UNFUSED_BN_ANA=1 runs the two layers one after the other: the measurement's other side
  // (docs/PERFORMANCE.md).
  static const bool unfused = [] {
    const char* v = std::getenv("QL_UNFUSED_BN_ANA");
    return v != nullptr && std::string(v) == "1";
  }();
  const BatchNormHandle b = bns_.at(bn);
  const auto& [a, act_run] = acts_.at(act);
  return [b, a = a, act_run = act_run, net = &net_, bf16_out](const torch::Tensor& x) mutable {
    if (!unfused && b.module->is_training() && a->is_training()) {
      const core::BatchNormRefs refs = b.refs();
      if (core::bn_ana_fusable(x, refs))
        return a->forward_after_bn(x, refs, bf16_out && net->mixed_precision() ? torch::kBFloat16 : torch::kFloat32);
    }
    return act_run(b.run(x));
  };
}

Layer LayerMaker::act(const std::string& name, Layer float_act) {
  if (quantized(name)) {
    auto m = net_.register_module(name, nn::AnaActivation(schemes_.at(name)));
    Layer run = [m](const torch::Tensor& x) { return m->forward(x); };
    acts_.emplace(name, std::make_pair(m, run));
    return run;
  }
  if (float_act) return float_act;
  return [](const torch::Tensor& x) { return torch::hardtanh(x, 0.0, 6.0); };
}

double parse_capacity(const config::JsonNode& params) {
  const double c = params.number("capacity", 1.0);
  if (!(c > 0.0 && c <= 1000.0)) params.at("capacity").fail("expected a positive width factor, at most 1000");
  return c;
}

int64_t parse_num_classes(const config::JsonNode& params, int64_t fallback) {
  const int64_t n = params.integer("num_classes", fallback);
  if (n < 2) params.at("num_classes").fail("expected at least 2 classes");
  return n;
}

void LayerMaker::init_float_layers_he() {
  torch::NoGradGuard no_grad;
  for (auto& c : convs_) {
    const auto& k = c->options.kernel_size();
    const double n = static_cast<double>((*k)[0] * (*k)[1] * c->options.out_channels());
    c->weight.normal_(0.0, std::sqrt(2.0 / n));
    if (c->bias.defined()) c->bias.zero_();
  }
  for (auto& l : linears_) {
    l->weight.normal_(0.0, 0.01);
    if (l->bias.defined()) l->bias.zero_();
  }
}

}  // namespace quantlab::topology
