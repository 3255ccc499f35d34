// The steps' builders and the names they may quantize.
#include "quantlab/topology/steps.h"

namespace quantlab::topology {
namespace step {

Step conv(std::string name, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding, int64_t groups,
          bool bias) {
  Step s;
  s.kind = Step::Kind::kConv;
  s.name = std::move(name);
  s.in = in, s.out = out, s.kernel = kernel, s.stride = stride, s.padding = padding, s.groups = groups;
  s.bias = bias;
  return s;
}

Step linear(std::string name, int64_t in, int64_t out, bool bias) {
  Step s;
  s.kind = Step::Kind::kLinear;
  s.name = std::move(name);
  s.in = in, s.out = out, s.bias = bias;
  return s;
}

namespace {
Step batch_norm(std::string name, int64_t n, bool spatial) {
  Step s;
  s.kind = Step::Kind::kBatchNorm;
  s.name = std::move(name);
  s.out = n, s.spatial = spatial, s.quantizable = false;
  return s;
}
}  // namespace

Step bn2d(std::string name, int64_t channels) { return batch_norm(std::move(name), channels, true); }
Step bn1d(std::string name, int64_t features) { return batch_norm(std::move(name), features, false); }

Step act(std::string name) {
  Step s;
  s.kind = Step::Kind::kActivation;
  s.name = std::move(name);
  return s;
}

Step act_or_identity(std::string name) {
  Step s = act(std::move(name));
  s.float_identity = true;
  return s;
}

Step max_pool(int64_t kernel, int64_t stride) {
  Step s;
  s.kind = Step::Kind::kMaxPool;
  s.kernel = kernel, s.stride = stride, s.quantizable = false;
  return s;
}

Step global_avg_pool() {
  Step s;
  s.kind = Step::Kind::kGlobalAvgPool;
  s.quantizable = false;
  return s;
}

Step flatten(int64_t expect_map, std::string hint) {
  Step s;
  s.kind = Step::Kind::kFlatten;
  s.expect_map = expect_map, s.hint = std::move(hint), s.quantizable = false;
  return s;
}

Step residual(Steps branch) {
  Step s;
  s.kind = Step::Kind::kResidual;
  s.branch = std::move(branch);
  s.quantizable = false;
  return s;
}

Step float_only(Step s) {
  s.quantizable = false;
  s.branch = float_only(std::move(s.branch));
  return s;
}

Steps float_only(Steps steps) {
  for (Step& s : steps) s = float_only(std::move(s));
  return steps;
}

}  // namespace step

namespace {
void collect(const Steps& steps, std::vector<std::string>& out) {
  for (const Step& s : steps) {
    if (s.kind == Step::Kind::kResidual) collect(s.branch, out);
    const bool layer =
        s.kind == Step::Kind::kConv || s.kind == Step::Kind::kLinear || s.kind == Step::Kind::kActivation;
    if (layer && s.quantizable) out.push_back(s.name);
  }
}
}  // namespace

std::vector<std::string> quantizable_names(const Steps& steps) {
  std::vector<std::string> out;
  collect(steps, out);
  return out;
}

const char* step_kind_name(Step::Kind k) {
  switch (k) {
    case Step::Kind::kConv:
      return "conv";
    case Step::Kind::kLinear:
      return "linear";
    case Step::Kind::kBatchNorm:
      return "batch norm";
    case Step::Kind::kActivation:
      return "activation";
    case Step::Kind::kMaxPool:
      return "max pool";
    case Step::Kind::kGlobalAvgPool:
      return "global average pool";
    case Step::Kind::kFlatten:
      return "flatten";
    case Step::Kind::kResidual:
      return "residual";
  }
  return "?";
}

}  // namespace quantlab::topology
