// What the integer export refuses instead of writing a wrong model (docs/EXPORT.md): step lists
// that no shipped topology has but a new one could, built here directly.
#include <gtest/gtest.h>

#include "quantlab/export/exporter.h"
#include "quantlab/topology/step_network.h"
#include "quantlab/topology/steps.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

// The toy MLP's experiment with its network replaced by `steps`, each quantized step ternary.
train::Experiment experiment_of(const topology::Steps& steps, const std::vector<std::string>& quantized) {
  train::Experiment exp(testing::toy_mlp_config(1), "MLP", torch::kCPU);
  nlohmann::json schemes;
  for (const auto& name : quantized) schemes[name] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  exp.net = topology::make_step_network("Odd", steps, config::JsonNode({{"quant_schemes", schemes}}, "params"), false);
  return exp;
}

// The export's error, "" when it exports; normalised inputs, so the first values are real ones.
std::string export_error(const train::Experiment& exp) {
  runtime::InputSpec input;
  input.mean = {0.5};
  input.std = {0.25};
  try {
    export_::export_model(exp, input, "Toy", "a test");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// An ANA activation right after a flatten: the exporter no longer knows how many values it
// thresholds (it used to read past the channels it had).
TEST(ExportGuards, AnActivationRightAfterAFlattenIsRefused) {
  using namespace topology::step;  // NOLINT(google-build-using-namespace)
  const auto exp = experiment_of({flatten(), act("a0"), linear("f1", 28 * 28, 4)}, {"a0", "f1"});
  EXPECT_EQ(export_error(exp),
            "a0: an activation right after a flatten is not exported (put a conv or linear layer first)");
  // The same activation after a linear layer and its batch norm is exported.
  const auto fine = experiment_of({flatten(), linear("f1", 28 * 28, 8), bn1d("b1", 8), act("a1"), linear("f2", 8, 4)},
                                  {"f1", "a1", "f2"});
  EXPECT_EQ(export_error(fine), "");
}

}  // namespace
}  // namespace quantlab
