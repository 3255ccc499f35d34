// A network described once: an ordered list of named steps. A topology builds the list; the
// network's modules, its forward pass (topology/step_network.h), the names its quant_schemes may
// give (quantizable_names) and the integer export (export/exporter.h) all read the same list, so
// the exported network cannot drift from the trained one.
//   using namespace step;
//   Steps s = {conv("phi1_conv", 3, 64, 3, 1, 1), bn2d("phi1_bn", 64), act("phi1_act"),
//              max_pool(2, 2), flatten(), linear("phi2_fc", 64 * 16 * 16, 10), bn1d("phi2_bn", 10)};
// A conv, linear or act step is quantized (ANA) when the config gives its name a scheme, and is
// the float layer otherwise; float_only() marks a step that never is (MobileNetV2's stem).
#pragma once

#include <torch/torch.h>

#include <functional>
#include <string>
#include <vector>

namespace quantlab::topology {

using Layer = std::function<torch::Tensor(const torch::Tensor&)>;

struct Step;
using Steps = std::vector<Step>;

struct Step {
  enum class Kind { kConv, kLinear, kBatchNorm, kActivation, kMaxPool, kGlobalAvgPool, kFlatten, kResidual };
  Kind kind = Kind::kLinear;
  std::string name;                                         // the module's name (conv, linear, batch norm, activation)
  int64_t in = 0, out = 0;                                  // conv / linear: channels or features; batch norm: `out`
  int64_t kernel = 1, stride = 1, padding = 0, groups = 1;  // conv; max pool: kernel, stride
  bool bias = false;                                        // conv / linear
  bool spatial = false;                                     // batch norm: 2-d (channels of a feature map) or 1-d
  bool quantizable = true;      // conv / linear / activation: may take a quantization scheme
  bool float_identity = false;  // activation: without a scheme, nothing (instead of ReLU6)
  int64_t expect_map = 0;       // flatten: the side of the square feature map it expects (0: any)
  std::string hint;             // flatten: what to tell a user whose inputs give another size
  Steps branch;                 // residual: x + branch(x)
};

// The steps' builders.
namespace step {
Step conv(std::string name, int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0,
          int64_t groups = 1, bool bias = false);
Step linear(std::string name, int64_t in, int64_t out, bool bias = false);
Step bn2d(std::string name, int64_t channels);
Step bn1d(std::string name, int64_t features);
// ANA with a scheme; ReLU6 (a clamp to [0, 6]) without one.
Step act(std::string name);
// ANA with a scheme; nothing without one (a residual branch's input).
Step act_or_identity(std::string name);
Step max_pool(int64_t kernel, int64_t stride);
Step global_avg_pool();  // [N, C, H, W] -> [N, C, 1, 1]
Step flatten(int64_t expect_map = 0, std::string hint = "");
Step residual(Steps branch);

// The same step, never quantized (its name is not one of the quant_schemes' keys).
Step float_only(Step s);
Steps float_only(Steps s);
}  // namespace step

// The names a config's quant_schemes must give, in forward order (conv, linear and activation
// steps that are quantizable, inside residual branches too).
std::vector<std::string> quantizable_names(const Steps& steps);

const char* step_kind_name(Step::Kind k);

}  // namespace quantlab::topology
