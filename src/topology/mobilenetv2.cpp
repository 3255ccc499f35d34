// MobileNetv2Residuals and MobileNetv2Baseline.
#include "quantlab/topology/mobilenetv2.h"

#include <cstdio>

#include "quantlab/config/quant_schemes.h"
#include "quantlab/topology/layer_maker.h"

namespace quantlab {
namespace {

struct MobileNetOptions {
  double capacity = 1.0;
  int64_t expansion = 6;
  int64_t num_classes = 1000;
};

MobileNetOptions parse_mobilenet_options(const JsonNode& params) {
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

// Layer index of the first layer of each residual block (7, 13, 16, 22, ...).
std::vector<int> residual_blocks(const MobileNetOptions& o) {
  std::vector<int> first;
  int k = 4;  // after the stem (phi01 .. phi03)
  for (const Stage& s : mobilenet_stages(o)) {
    k += 3;  // the expanding block
    for (int r = 0; r < s.residuals; ++r, k += 3) first.push_back(k);
  }
  return first;
}

class MobileNetV2 : public Network {
 public:
  std::vector<ExportStep> export_steps() const override {
    throw Error(name() + " cannot be exported as integers: the residual additions (the first: block phi06..phi08, "
                "added to the float output of phi05_bn) sum a quantized branch and a float one, and its stem and "
                "expanding blocks are float layers; export supports MLP, VGG and AlexNet");
  }

  MobileNetV2(const MobileNetOptions& o, std::map<std::string, AnaScheme> schemes, const JsonNode& params) {
    const bool quantized = !schemes.empty();
    LayerMaker make(*this, std::move(schemes), params);
    const int64_t t0 = static_cast<int64_t>(32 * o.capacity), c1 = static_cast<int64_t>(16 * o.capacity);
    int k = 1;
    // One conv + batch norm (+ activation) step.
    auto unit = [&](Block& b, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, bool act) {
      b.steps.push_back(make.conv(mobilenet_name(k, "conv"), in, out, kernel, stride, kernel / 2, groups));
      b.steps.push_back(make.bn2d(mobilenet_name(k, "bn"), out));
      if (act) b.steps.push_back(make.act(mobilenet_name(k, "act")));
      ++k;
    };
    // Expand, depthwise, project.
    auto inverted = [&](Block& b, int64_t in, int64_t hidden, int64_t out, int64_t stride) {
      unit(b, in, hidden, 1, 1, 1, true);
      unit(b, hidden, hidden, 3, stride, hidden, true);
      unit(b, hidden, out, 1, 1, 1, false);
    };
    Block stem;
    unit(stem, 3, t0, 3, 2, 1, true);
    unit(stem, t0, t0, 3, 1, t0, true);
    unit(stem, t0, c1, 1, 1, 1, false);
    blocks_.push_back(std::move(stem));
    for (const Stage& s : mobilenet_stages(o)) {
      Block expanding;
      inverted(expanding, s.in, s.in * o.expansion, s.out, s.stride);
      blocks_.push_back(std::move(expanding));
      for (int r = 0; r < s.residuals; ++r) {
        Block res;
        res.residual = true;
        // The branch's input activation carries the previous layer's index (phi06_act, ...).
        if (quantized) res.steps.push_back(make.act(mobilenet_name(k - 1, "act")));
        inverted(res, s.out, s.out * o.expansion, s.out, 1);
        blocks_.push_back(std::move(res));
      }
    }
    const int64_t c7 = mobilenet_stages(o).back().out;
    const int64_t c8 = std::max<int64_t>(static_cast<int64_t>(1280 * o.capacity), 1280);
    Block head;
    unit(head, c7, c8, 1, 1, 1, true);
    blocks_.push_back(std::move(head));
    fc_ = make.fc(mobilenet_name(k, "fc"), c8, o.num_classes, true);
    make.init_float_layers_he();
  }

  torch::Tensor forward(const torch::Tensor& input) override {
    torch::Tensor x = conv_layout(input);
    for (const Block& b : blocks_) {
      torch::Tensor y = x;
      for (const Layer& step : b.steps) y = step(y);
      x = b.residual ? x + y : y;
    }
    x = torch::adaptive_avg_pool2d(x, {1, 1}).flatten(1);  // the original's 7x7 average at 224
    return fc_(x);
  }

 private:
  struct Block {
    std::vector<Layer> steps;
    bool residual = false;
  };
  std::vector<Block> blocks_;
  Layer fc_;
};

}  // namespace

std::vector<std::string> mobilenetv2_quantized_modules() {
  std::vector<std::string> out;
  for (int first : residual_blocks(MobileNetOptions{})) {
    out.push_back(mobilenet_name(first - 1, "act"));
    for (int j = 0; j < 3; ++j) {
      out.push_back(mobilenet_name(first + j, "conv"));
      if (j < 2) out.push_back(mobilenet_name(first + j, "act"));
    }
  }
  return out;
}

std::shared_ptr<Network> make_mobilenetv2_residuals(const JsonNode& params) {
  params.allow_keys({"capacity", "expansion", "num_classes", "quant_schemes"});
  const MobileNetOptions o = parse_mobilenet_options(params);
  return std::make_shared<MobileNetV2>(
      o, parse_quant_schemes(params.at("quant_schemes"), mobilenetv2_quantized_modules()), params);
}

std::shared_ptr<Network> make_mobilenetv2_baseline(const JsonNode& params) {
  params.allow_keys({"capacity", "expansion", "num_classes"});
  return std::make_shared<MobileNetV2>(parse_mobilenet_options(params), std::map<std::string, AnaScheme>{}, params);
}

QL_REGISTER_TOPOLOGY(MobileNetv2Residuals, "MobileNetv2", make_mobilenetv2_residuals);
QL_REGISTER_TOPOLOGY(MobileNetv2Baseline, "MobileNetv2", make_mobilenetv2_baseline);

}  // namespace quantlab
