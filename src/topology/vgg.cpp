// VGG and VGGBaseline.
#include "quantlab/topology/vgg.h"

#include "quantlab/config/quant_schemes.h"
#include "quantlab/nn/ana_layers.h"

namespace quantlab {
namespace {

struct VggOptions {
  double capacity = 1.0;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
};

VggOptions parse_vgg_options(const JsonNode& params) {
  VggOptions o;
  o.capacity = params.number("capacity", 1.0);
  if (!(o.capacity > 0.0)) params.at("capacity").fail("expected a positive number");
  o.in_channels = params.integer("in_channels", 3);
  if (o.in_channels < 1) params.at("in_channels").fail("expected a positive number of channels");
  o.num_classes = params.integer("num_classes", 10);
  if (o.num_classes < 2) params.at("num_classes").fail("expected at least 2 classes");
  return o;
}

constexpr int kConvs = 6, kDense = 3;
constexpr int64_t kHidden = 1024;

// Channels of conv layer k (0-based) and whether a max-pooling follows it.
std::vector<int64_t> conv_channels(const VggOptions& o) {
  const auto c1 = static_cast<int64_t>(128 * o.capacity), c2 = static_cast<int64_t>(256 * o.capacity),
             c3 = static_cast<int64_t>(512 * o.capacity);
  return {o.in_channels, c1, c1, c2, c2, c3, c3};
}
bool pools_after(int k) { return k % 2 == 1; }

std::string layer_name(int k, const char* what) { return "phi" + std::to_string(k + 1) + "_" + what; }

// Shared shape of both variants: layers are created by the `conv`, `fc` and `act` callbacks.
class Vgg : public Network {
 public:
  using Layer = std::function<torch::Tensor(const torch::Tensor&)>;

  template <typename MakeConv, typename MakeFc, typename MakeAct>
  Vgg(const VggOptions& o, MakeConv conv, MakeFc fc, MakeAct act) {
    const auto ch = conv_channels(o);
    for (int k = 0; k < kConvs; ++k) {
      convs_.push_back(conv(*this, layer_name(k, "conv"), ch[k], ch[k + 1]));
      auto bn = register_module(layer_name(k, "bn"), torch::nn::BatchNorm2d(ch[k + 1]));
      bns_.push_back([bn](const torch::Tensor& x) { return bn->forward(x); });
      acts_.push_back(act(*this, layer_name(k, "act")));
    }
    const int64_t dims[] = {ch[kConvs] * 4 * 4, kHidden, kHidden, o.num_classes};
    for (int k = 0; k < kDense; ++k) {
      const int idx = kConvs + k;
      fcs_.push_back(fc(*this, layer_name(idx, "fc"), dims[k], dims[k + 1]));
      auto bn = register_module(layer_name(idx, "bn"), torch::nn::BatchNorm1d(dims[k + 1]));
      bns_.push_back([bn](const torch::Tensor& x) { return bn->forward(x); });
      if (k + 1 < kDense) acts_.push_back(act(*this, layer_name(idx, "act")));
    }
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = conv_layout(input);
    for (int k = 0; k < kConvs; ++k) {
      x = convs_[k](x);
      if (pools_after(k)) x = torch::max_pool2d(x, 2, 2);
      x = acts_[k](bns_[k](x));
    }
    x = x.reshape({x.size(0), -1});
    for (int k = 0; k < kDense; ++k) {
      x = bns_[kConvs + k](fcs_[k](x));
      if (k + 1 < kDense) x = acts_[kConvs + k](x);
    }
    return x;
  }

 private:
  std::vector<Layer> convs_, bns_, fcs_, acts_;
};

}  // namespace

std::vector<std::string> vgg_quantized_modules() {
  std::vector<std::string> out;
  for (int k = 0; k < kConvs + kDense; ++k) {
    out.push_back(layer_name(k, k < kConvs ? "conv" : "fc"));
    if (k + 1 < kConvs + kDense) out.push_back(layer_name(k, "act"));
  }
  return out;
}

std::shared_ptr<Network> make_vgg(const JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes", "quant_schemes"});
  const VggOptions o = parse_vgg_options(params);
  const auto q = parse_quant_schemes(params.at("quant_schemes"), vgg_quantized_modules());
  auto conv = [&q](Network& net, const std::string& n, int64_t in, int64_t out) -> Vgg::Layer {
    nn::AnaConvOptions c;
    c.in_channels = in;
    c.out_channels = out;
    c.kernel_size = {3};
    c.padding = {1};
    auto m = net.register_module(n, nn::AnaConv(q.at(n), c));
    return [m](const torch::Tensor& x) { return m->forward(x); };
  };
  auto fc = [&q](Network& net, const std::string& n, int64_t in, int64_t out) -> Vgg::Layer {
    auto m = net.register_module(n, nn::AnaLinear(q.at(n), in, out));
    return [m](const torch::Tensor& x) { return m->forward(x); };
  };
  auto act = [&q](Network& net, const std::string& n) -> Vgg::Layer {
    auto m = net.register_module(n, nn::AnaActivation(q.at(n)));
    return [m](const torch::Tensor& x) { return m->forward(x); };
  };
  return std::make_shared<Vgg>(o, conv, fc, act);
}

std::shared_ptr<Network> make_vgg_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes"});
  const VggOptions o = parse_vgg_options(params);
  auto conv = [](Network& net, const std::string& n, int64_t in, int64_t out) -> Vgg::Layer {
    auto m = net.register_module(n, torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, 3).padding(1).bias(false)));
    return [m](const torch::Tensor& x) { return m->forward(x); };
  };
  auto fc = [](Network& net, const std::string& n, int64_t in, int64_t out) -> Vgg::Layer {
    auto m = net.register_module(n, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(false)));
    return [m](const torch::Tensor& x) { return m->forward(x); };
  };
  auto act = [](Network&, const std::string&) -> Vgg::Layer { return [](const torch::Tensor& x) { return torch::relu(x); }; };
  return std::make_shared<Vgg>(o, conv, fc, act);
}

}  // namespace quantlab
