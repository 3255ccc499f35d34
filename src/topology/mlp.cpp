// MLP and MLPBaseline.
#include "quantlab/topology/mlp.h"

#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/step_network.h"

namespace quantlab::topology {
namespace {

struct MlpOptions {
  double capacity = 1.0;      // hidden width = int(2048 * capacity)
  int64_t in_features = 784;  // 28 * 28
  int64_t num_classes = 10;
};

MlpOptions parse_options(const config::JsonNode& params) {
  MlpOptions o;
  o.capacity = parse_capacity(params);
  o.num_classes = parse_num_classes(params, 10);
  return o;
}

// Both variants: the baseline's last layer has a bias and no batch norm, as the original's.
Steps mlp_steps(const MlpOptions& o, bool baseline) {
  using namespace step;
  const auto nh = static_cast<int64_t>(2048 * o.capacity);
  const int64_t in[] = {o.in_features, nh, nh, nh};
  const int64_t out[] = {nh, nh, nh, o.num_classes};
  Steps s{flatten()};
  for (int k = 0; k < 4; ++k) {
    const std::string p = "phi" + std::to_string(k + 1);
    const bool last = k == 3;
    s.push_back(linear(p + "_fc", in[k], out[k], last && baseline));
    if (!(last && baseline)) s.push_back(bn1d(p + "_bn", out[k]));
    if (!last) s.push_back(act(p + "_act"));
  }
  return s;
}

}  // namespace

std::vector<std::string> mlp_quantized_modules() { return quantizable_names(mlp_steps(MlpOptions{}, false)); }

std::shared_ptr<Network> make_mlp(const config::JsonNode& params) {
  params.allow_keys({"capacity", "num_classes", "quant_schemes"});
  return make_step_network("MLP", mlp_steps(parse_options(params), false), params, false);
}

std::shared_ptr<Network> make_mlp_baseline(const config::JsonNode& params) {
  params.allow_keys({"capacity", "num_classes"});
  return make_step_network("MLPBaseline", mlp_steps(parse_options(params), true), params, true);
}

QL_REGISTER_TOPOLOGY(MLP, "MLP", make_mlp);
QL_REGISTER_TOPOLOGY(MLPBaseline, "MLP", make_mlp_baseline);

}  // namespace quantlab::topology
