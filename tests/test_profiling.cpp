// QuantLab's operators seen by profilers: the ANA operator, batch norm + ANA and the fused Adam step
// name themselves to ATen's RecordFunction (what PyTorch's profiler and bench/op_times.h read), and
// bench/op_times.h counts a step's time by kind of operation, the outermost operation of a kind
// once.
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../bench/op_times.h"
#include "quantlab/core/ana.h"
#include "quantlab/core/bn_ana.h"
#include "quantlab/train/fused_adam.h"
#include "test_names.h"
#include "test_util.h"

namespace quantlab {
namespace {

using bench::OpKind;

// The names of the operations recorded while it lives, on any thread.
class NameRecorder {
 public:
  NameRecorder() {
    names().clear();
    handle_ = at::addGlobalCallback(at::RecordFunctionCallback(&NameRecorder::on_start)
                                        .scopes({at::RecordScope::FUNCTION, at::RecordScope::USER_SCOPE}));
  }
  ~NameRecorder() { at::removeCallback(handle_); }
  NameRecorder(const NameRecorder&) = delete;
  NameRecorder& operator=(const NameRecorder&) = delete;
  static std::set<std::string>& names() {
    static std::set<std::string> n;
    return n;
  }

 private:
  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    names().insert(fn.name());
    return nullptr;
  }
  at::CallbackHandle handle_;
};

AnaScheme ternary() {
  AnaScheme a;
  a.quantizer = Quantizer::from_stair({-0.5f, 0.5f}, {-1.0f, 0.0f, 1.0f});
  a.noise = NoiseFamily::kUniform;
  return a;
}

TEST(Profiling, QuantLabOperatorsNameThemselves) {
  const AnaScheme s = ternary();
  const NoiseState noise{0.0f, 0.5f, 0.5f};
  const torch::Tensor stair = core::stair_tensor(s.quantizer, torch::kCPU);
  torch::nn::BatchNorm1d bn(6);
  bn->train();
  const core::BatchNormRefs refs{
      bn->weight, bn->bias, bn->running_mean, bn->running_var, bn->num_batches_tracked, 0.1, bn->options.eps()};
  const torch::Tensor w = torch::randn({6, 6}).requires_grad_(true);
  train::FusedAdam adam(std::vector<torch::Tensor>{w}, torch::optim::AdamOptions(1e-3));
  NameRecorder recorder;
  const torch::Tensor x = torch::randn({4, 6}).requires_grad_(true);
  const torch::Tensor z = core::bn_ana(x, refs, stair, s, noise, torch::kFloat32);
  (z.mm(core::ana(w, stair, s, noise, true))).sum().backward();
  adam.step();
  for (const char* name :
       {"quantlab::ana", "quantlab::ana_backward", "quantlab::bn_ana", "quantlab::bn_ana_backward", "quantlab::adam"})
    EXPECT_EQ(NameRecorder::names().count(name), 1U) << name << " was not recorded";
}

// Operation names and their kind ("" for none): the one table both sides' counting is held to.
const std::vector<std::pair<std::string, std::string>>& kind_cases() {
  static const std::vector<std::pair<std::string, std::string>> cases{
      {"aten::mm", "products"},
      {"aten::addmm", "products"},
      {"aten::bmm", "products"},
      {"aten::linear", "products"},
      {"aten::matmul", "products"},
      {"aten::convolution", "products"},
      {"aten::convolution_backward", "products"},
      {"aten::mkldnn_convolution", "products"},
      {"quantlab::ana", "ana"},
      {"quantlab::ana_backward", "ana"},
      {"quantlab::bn_ana", "batch_norm"},
      {"quantlab::bn_ana_backward", "batch_norm"},
      {"aten::batch_norm", "batch_norm"},
      {"aten::native_batch_norm_backward", "batch_norm"},
      {"aten::add", ""},
      {"aten::sum", ""},
      {"AddmmBackward0", ""},
      {"quantlab::adam", ""},
      {"aten::addmm_", ""},
      {"mm", ""}};
  return cases;
}

TEST(OpTimes, KindsByName) {
  for (const auto& [name, kind] : kind_cases()) {
    OpKind k{};
    const bool counted = bench::op_kind_of(name.c_str(), &k);
    EXPECT_EQ(counted ? std::string(bench::op_kind_name(k)) : std::string(), kind) << name;
  }
}

// bench/train_step.py --phases counts the Python side's operations with its own op_kind(): the
// same table holds it to the same names, so the two sides' products are measured alike. Its
// function is taken out of the script (which needs torch) and run alone, by the tests' Python.
TEST(OpTimes, PythonPeerCountsTheSameKinds) {
  std::string names;
  for (const auto& c : kind_cases()) names += (names.empty() ? "" : ",") + c.first;
  const std::string script = R"PY(
import ast, sys
src = open(sys.argv[1].split("|")[0]).read()
fn = next(n for n in ast.parse(src).body if isinstance(n, ast.FunctionDef) and n.name == "op_kind")
scope = {}
exec(compile(ast.Module(body=[fn], type_ignores=[]), "train_step.py", "exec"), scope)
for name in sys.argv[1].split("|")[1].split(","):
    print(name, scope["op_kind"](name) or "")
)PY";
  std::string out;
  ASSERT_EQ(testing::run_python(script, std::string(QL_SOURCE_DIR) + "/bench/train_step.py|" + names, out), 0) << out;
  std::istringstream lines(out);
  std::map<std::string, std::string> python;
  for (std::string line; std::getline(lines, line);) {
    const auto space = line.find(' ');
    if (space != std::string::npos) python[line.substr(0, space)] = line.substr(space + 1);
  }
  for (const auto& [name, kind] : kind_cases()) {
    ASSERT_EQ(python.count(name), 1U) << name << " missing from:\n" << out;
    EXPECT_EQ(python[name], kind) << name;
  }
}

// An operation of a kind inside another of the same kind (aten::mm inside aten::linear) counts
// once: what is counted cannot exceed the time that encloses both, as measured around them.
TEST(OpTimes, CountsTheOutermostOperationOnce) {
  using Clock = std::chrono::steady_clock;
  bench::OpTimes ops;
  const auto t0 = Clock::now();
  {
    RECORD_USER_SCOPE("aten::linear");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    {
      RECORD_USER_SCOPE("aten::mm");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const double enclosing = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_GE(ops.seconds(OpKind::kProducts), 0.012);
  EXPECT_LE(ops.seconds(OpKind::kProducts), enclosing);  // counted twice, it would exceed it by >= 10 ms
  EXPECT_EQ(ops.seconds(OpKind::kAna), 0.0);
}

TEST(OpTimes, CountsARealProduct) {
  bench::OpTimes ops;
  const torch::Tensor a = torch::randn({64, 64}), b = torch::randn({64, 64});
  torch::nn::functional::linear(a, b).sum().item<float>();
  EXPECT_GT(ops.seconds(OpKind::kProducts), 0.0);
}

}  // namespace
}  // namespace quantlab
