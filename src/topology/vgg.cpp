// VGG and VGGBaseline.
#include "quantlab/topology/vgg.h"

#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/step_network.h"

namespace quantlab::topology {
namespace {

struct VggOptions {
  double capacity = 1.0;
  int64_t in_channels = 3;
  int64_t num_classes = 10;
};

VggOptions parse_vgg_options(const config::JsonNode& params) {
  VggOptions o;
  o.capacity = parse_capacity(params);
  o.in_channels = params.integer("in_channels", 3);
  if (o.in_channels < 1) params.at("in_channels").fail("expected a positive number of channels");
  o.num_classes = parse_num_classes(params, 10);
  return o;
}

std::string layer_name(int k, const char* what) { return "phi" + std::to_string(k + 1) + "_" + what; }

// Six 3x3 convolutions (a max pooling after every second, before its batch norm), three linear
// layers; the baseline's last layer has a bias and no batch norm, as the original's.
Steps vgg_steps(const VggOptions& o, bool baseline) {
  using namespace step;
  const auto c1 = static_cast<int64_t>(128 * o.capacity), c2 = static_cast<int64_t>(256 * o.capacity),
             c3 = static_cast<int64_t>(512 * o.capacity);
  const int64_t ch[] = {o.in_channels, c1, c1, c2, c2, c3, c3};
  constexpr int64_t kHidden = 1024;
  Steps s;
  for (int k = 0; k < 6; ++k) {
    s.push_back(conv(layer_name(k, "conv"), ch[k], ch[k + 1], 3, 1, 1));
    if (k % 2 == 1) s.push_back(max_pool(2, 2));
    s.push_back(bn2d(layer_name(k, "bn"), ch[k + 1]));
    s.push_back(act(layer_name(k, "act")));
  }
  s.push_back(flatten());
  const int64_t dims[] = {ch[6] * 4 * 4, kHidden, kHidden, o.num_classes};
  for (int k = 0; k < 3; ++k) {
    const bool last = k == 2;
    s.push_back(linear(layer_name(6 + k, "fc"), dims[k], dims[k + 1], last && baseline));
    if (!(last && baseline)) s.push_back(bn1d(layer_name(6 + k, "bn"), dims[k + 1]));
    if (!last) s.push_back(act(layer_name(6 + k, "act")));
  }
  return s;
}

}  // namespace

std::vector<std::string> vgg_quantized_modules() { return quantizable_names(vgg_steps(VggOptions{}, false)); }

std::shared_ptr<Network> make_vgg(const config::JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes", "quant_schemes"});
  return make_step_network("VGG", vgg_steps(parse_vgg_options(params), false), params, false);
}

std::shared_ptr<Network> make_vgg_baseline(const config::JsonNode& params) {
  params.allow_keys({"capacity", "in_channels", "num_classes"});
  return make_step_network("VGGBaseline", vgg_steps(parse_vgg_options(params), true), params, true);
}

QL_REGISTER_TOPOLOGY(VGG, "VGG", make_vgg);
QL_REGISTER_TOPOLOGY(VGGBaseline, "VGG", make_vgg_baseline);

}  // namespace quantlab::topology
