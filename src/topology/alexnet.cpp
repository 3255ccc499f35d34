// AlexNet and AlexNetBaseline.
#include "quantlab/topology/alexnet.h"

#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/step_network.h"

namespace quantlab::topology {
namespace {

struct AlexNetOptions {
  double capacity = 1.0;
  int64_t num_classes = 1000;
};

AlexNetOptions parse_alexnet_options(const config::JsonNode& params) {
  AlexNetOptions o;
  o.capacity = parse_capacity(params);
  o.num_classes = parse_num_classes(params, 1000);
  return o;
}

std::string alexnet_name(int k, const char* what) { return "phi" + std::to_string(k) + "_" + what; }

// Five convolutions (max pooling after the 1st, 2nd and 5th, before their batch norms), three
// linear layers on the 6x6 map; the baseline's last layer has a bias and no batch norm.
Steps alexnet_steps(const AlexNetOptions& o, bool baseline) {
  using namespace step;
  constexpr int64_t kHidden = 4096, kC5 = 256, kMap = 6;
  const auto cap = [&](int64_t c) { return static_cast<int64_t>(static_cast<double>(c) * o.capacity); };
  const int64_t ch[] = {3, cap(64), cap(64 * 3), cap(64 * 6), cap(64 * 4), kC5};
  const int64_t kernel[] = {11, 5, 3, 3, 3}, stride[] = {4, 1, 1, 1, 1}, pad[] = {2, 2, 1, 1, 1};
  Steps s;
  for (int k = 1; k <= 5; ++k) {
    s.push_back(conv(alexnet_name(k, "conv"), ch[k - 1], ch[k], kernel[k - 1], stride[k - 1], pad[k - 1]));
    if (k == 1 || k == 2 || k == 5) s.push_back(max_pool(3, 2));
    s.push_back(bn2d(alexnet_name(k, "bn"), ch[k]));
    s.push_back(act(alexnet_name(k, "act")));
  }
  s.push_back(flatten(kMap, "use crops of 224 to 227 pixels"));
  const int64_t dims[] = {kC5 * kMap * kMap, kHidden, kHidden, o.num_classes};
  for (int k = 6; k <= 8; ++k) {
    const bool last = k == 8;
    s.push_back(linear(alexnet_name(k, "fc"), dims[k - 6], dims[k - 5], last && baseline));
    if (!(last && baseline)) s.push_back(bn1d(alexnet_name(k, "bn"), dims[k - 5]));
    if (!last) s.push_back(act(alexnet_name(k, "act")));
  }
  return s;
}

}  // namespace

std::vector<std::string> alexnet_quantized_modules() {
  return quantizable_names(alexnet_steps(AlexNetOptions{}, false));
}

std::shared_ptr<Network> make_alexnet(const config::JsonNode& params) {
  params.allow_keys({"capacity", "num_classes", "quant_schemes"});
  return make_step_network("AlexNet", alexnet_steps(parse_alexnet_options(params), false), params, false);
}

std::shared_ptr<Network> make_alexnet_baseline(const config::JsonNode& params) {
  params.allow_keys({"capacity", "num_classes"});
  return make_step_network("AlexNetBaseline", alexnet_steps(parse_alexnet_options(params), true), params, true);
}

QL_REGISTER_TOPOLOGY(AlexNet, "AlexNet", make_alexnet);
QL_REGISTER_TOPOLOGY(AlexNetBaseline, "AlexNet", make_alexnet_baseline);

}  // namespace quantlab::topology
