// MobileNetv2Residuals and MobileNetv2Baseline.
#include "quantlab/topology/mobilenetv2.h"

#include <cstdio>

#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/step_network.h"

namespace quantlab::topology {
namespace {

struct MobileNetOptions {
  double capacity = 1.0;
  int64_t expansion = 6;
  int64_t num_classes = 1000;
};

MobileNetOptions parse_mobilenet_options(const config::JsonNode& params) {
  MobileNetOptions o;
  o.capacity = parse_capacity(params);
  o.expansion = params.integer("expansion", 6);
  if (o.expansion < 1) params.at("expansion").fail("expected a positive expansion factor");
  o.num_classes = parse_num_classes(params, 1000);
  return o;
}

std::string mobilenet_name(int k, const char* what) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "phi%02d_%s", k, what);
  return buf;
}

// A stage: an expanding block from `in` to `out` channels with `stride`, then `residuals` blocks.
struct Stage {
  int64_t in, out, stride, residuals;
};

std::vector<Stage> mobilenet_stages(const MobileNetOptions& o) {
  const auto c = [&](int64_t n) { return static_cast<int64_t>(static_cast<double>(n) * o.capacity); };
  return {{c(16), c(24), 2, 1}, {c(24), c(32), 2, 2},  {c(32), c(64), 2, 3},
          {c(64), c(96), 1, 2}, {c(96), c(160), 2, 2}, {c(160), c(320), 1, 0}};
}

// The stem (3x3/2 conv, depthwise, projection), six stages of an expanding block followed by
// residual blocks, the 1x1 head to 1280 channels, global average pooling and the classifier.
// Only the residual branches are quantizable: each starts with an activation of the block input
// (ANA with a scheme; nothing in the baseline) that carries the previous layer's index (phi06_act).
Steps mobilenet_steps(const MobileNetOptions& o) {
  using namespace step;
  int k = 1;
  // One conv + batch norm (+ ReLU6 or ANA activation).
  auto unit = [&](Steps& s, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, bool with_act) {
    s.push_back(conv(mobilenet_name(k, "conv"), in, out, kernel, stride, kernel / 2, groups));
    s.push_back(bn2d(mobilenet_name(k, "bn"), out));
    if (with_act) s.push_back(act(mobilenet_name(k, "act")));
    ++k;
  };
  // Expand, depthwise, project.
  auto inverted = [&](Steps& s, int64_t in, int64_t hidden, int64_t out, int64_t stride) {
    unit(s, in, hidden, 1, 1, 1, true);
    unit(s, hidden, hidden, 3, stride, hidden, true);
    unit(s, hidden, out, 1, 1, 1, false);
  };
  const int64_t t0 = static_cast<int64_t>(32 * o.capacity), c1 = static_cast<int64_t>(16 * o.capacity);
  Steps stem;
  unit(stem, 3, t0, 3, 2, 1, true);
  unit(stem, t0, t0, 3, 1, t0, true);
  unit(stem, t0, c1, 1, 1, 1, false);
  Steps s = float_only(std::move(stem));
  for (const Stage& st : mobilenet_stages(o)) {
    Steps expanding;
    inverted(expanding, st.in, st.in * o.expansion, st.out, st.stride);
    for (Step& e : float_only(std::move(expanding))) s.push_back(std::move(e));
    for (int r = 0; r < st.residuals; ++r) {
      Steps branch{act_or_identity(mobilenet_name(k - 1, "act"))};
      inverted(branch, st.out, st.out * o.expansion, st.out, 1);
      s.push_back(residual(std::move(branch)));
    }
  }
  const int64_t c7 = mobilenet_stages(o).back().out;
  const int64_t c8 = std::max<int64_t>(static_cast<int64_t>(1280 * o.capacity), 1280);
  Steps head;
  unit(head, c7, c8, 1, 1, 1, true);
  head.push_back(global_avg_pool());  // the original's 7x7 average at 224
  head.push_back(flatten());
  head.push_back(linear(mobilenet_name(k, "fc"), c8, o.num_classes, true));
  for (Step& h : float_only(std::move(head))) s.push_back(std::move(h));
  return s;
}

}  // namespace

std::vector<std::string> mobilenetv2_quantized_modules() {
  return quantizable_names(mobilenet_steps(MobileNetOptions{}));
}

std::shared_ptr<Network> make_mobilenetv2_residuals(const config::JsonNode& params) {
  params.allow_keys({"capacity", "expansion", "num_classes", "quant_schemes"});
  return make_step_network("MobileNetv2Residuals", mobilenet_steps(parse_mobilenet_options(params)), params, false,
                           StepNetwork::FloatInit::kHe);
}

std::shared_ptr<Network> make_mobilenetv2_baseline(const config::JsonNode& params) {
  params.allow_keys({"capacity", "expansion", "num_classes"});
  return make_step_network("MobileNetv2Baseline", mobilenet_steps(parse_mobilenet_options(params)), params, true,
                           StepNetwork::FloatInit::kHe);
}

QL_REGISTER_TOPOLOGY(MobileNetv2Residuals, "MobileNetv2", make_mobilenetv2_residuals);
QL_REGISTER_TOPOLOGY(MobileNetv2Baseline, "MobileNetv2", make_mobilenetv2_baseline);

}  // namespace quantlab::topology
