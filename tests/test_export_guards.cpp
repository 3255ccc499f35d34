// What the integer export refuses instead of writing a wrong model (docs/EXPORT.md): step lists
// that no shipped topology has but a new one could, built here directly.
#include <gtest/gtest.h>

#include "quantlab/export/exporter.h"
#include "quantlab/export/onnx.h"
#include "quantlab/topology/step_network.h"
#include "quantlab/topology/steps.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "test_util.h"
#include "toy_home.h"

namespace quantlab {
namespace {

// The toy MLP's experiment with its network replaced by `steps`, each quantized step ternary
// unless `schemes` gives its scheme.
train::Experiment experiment_of(const topology::Steps& steps, const std::vector<std::string>& quantized,
                                nlohmann::json schemes = nlohmann::json::object()) {
  train::Experiment exp(testing::toy_mlp_config(1), "MLP", torch::kCPU);
  for (const auto& name : quantized)
    if (!schemes.contains(name)) schemes[name] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  exp.net = topology::make_step_network("Odd", steps, config::JsonNode({{"quant_schemes", schemes}}, "params"), false);
  return exp;
}

// Levels -top..top on a unit step (top 127: 8 bits).
nlohmann::json unit_levels(int top) {
  std::vector<double> thresholds, levels;
  for (int v = -top; v <= top; ++v) levels.push_back(v);
  for (int v = -top; v < top; ++v) thresholds.push_back(v + 0.5);
  return {"uniform", thresholds, levels};
}

// Every weight of layer `name` set to `value`.
void fill_weight(train::Experiment& exp, const std::string& name, double value) {
  torch::NoGradGuard no_grad;
  for (auto& p : exp.net->named_parameters())
    if (p.key() == name + ".weight") {
      p.value().fill_(value);
      return;
    }
  FAIL() << "no weight " << name;
}

// Normalised inputs, so the first values are real ones.
runtime::Model export_toy(const train::Experiment& exp) {
  runtime::InputSpec input;
  input.mean = {0.5};
  input.std = {0.25};
  return export_::export_model(exp, input, "Toy", "a test");
}

// The export's error, "" when it exports.
std::string export_error(const train::Experiment& exp) {
  return testing::error_of([&] { export_toy(exp); });
}

// The ONNX writer's error, "" when it writes the model.
std::string onnx_error(const runtime::Model& model) {
  testing::TempDir dir;
  return testing::error_of([&] { export_::write_onnx(model, dir.path() + "/model.onnx"); });
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

// The runtime's kernels take a layer's input as bytes (a level plus its zero point 128) and take
// the zero point's share off afterwards, so their accumulator holds up to 255 times the sum of a
// row's |weights|, however small the levels are: a layer where that exceeds 32 bits is refused.
// Here 85 x 28 x 28 = 66,640 ternary inputs and 8-bit weights all at 127 (the largest real
// product 8.5e6, the biased one 2.16e9 > 2^31 - 1); one step less (126) fits.
TEST(ExportGuards, TheRuntimesBiasedByteProductsMustFitIn32Bits) {
  using namespace topology::step;  // NOLINT(google-build-using-namespace)
  for (const int top : {127, 126}) {
    auto exp =
        experiment_of({conv("c1", 1, 85, 3, 1, 1), bn2d("b1", 85), act("a1"), flatten(), linear("f2", 85 * 28 * 28, 2)},
                      {"c1", "a1", "f2"}, {{"f2", unit_levels(top)}});
    fill_weight(exp, "f2", 200.0);  // above every threshold: level `top`
    EXPECT_EQ(export_error(exp), top == 127 ? "f2: its accumulator could exceed 32 bits" : "") << top;
  }
}

// ONNX compares accumulators in float, exact below 2^24; a layer's bound is the sum of a row's
// |weights| times the largest |level| of its input. Here 169 x 28 x 28 = 132,496 ternary inputs
// to ternary weights all at 1: 132,496 fits, while 127 times it (8-bit levels before the layer)
// does not. The bound used to take 127 for every input, refusing the ternary network.
TEST(ExportGuards, OnnxBoundsTheAccumulatorByTheInputsLargestLevel) {
  using namespace topology::step;  // NOLINT(google-build-using-namespace)
  for (const bool wide : {false, true}) {
    auto exp = experiment_of({conv("c1", 1, 169, 3, 1, 1), bn2d("b1", 169), act("a1"), flatten(),
                              linear("f2", 169 * 28 * 28, 4), bn1d("b2", 4), act("a2"), linear("f3", 4, 2)},
                             {"c1", "a1", "f2", "a2", "f3"},
                             wide ? nlohmann::json{{"a1", unit_levels(127)}} : nlohmann::json::object());
    fill_weight(exp, "f2", 1.0);
    const runtime::Model model = export_toy(exp);  // the runtime's own bounds are met
    EXPECT_EQ(onnx_error(model),
              wide ? "b2 + a2: the accumulator can exceed 2^24, which float cannot hold exactly" : "")
        << "wide=" << wide;
  }
}

// Why an activation's levels cannot be integers, said by its cause. 8-bit unsigned levels of
// 0.01 (0..255 steps, float32) used to be called "non-uniform": 255 * 0.01 in float32 is more
// than 1e-5 of a step off, so the check needed a relative tolerance; the true reason is the 8 bits.
// Evenly spaced levels that miss zero are not non-uniform either. Levels that are whole numbers of a
// step finer than any of theirs export: {0.3, 0.7, 1.1} and {-1, 0, 1.5} were refused, though they
// are 0.1 x {3, 7, 11} and 0.5 x {-2, 0, 3}.
TEST(ExportGuards, LevelsThatCannotBeIntegersAreRefusedForTheirCause) {
  using namespace topology::step;  // NOLINT(google-build-using-namespace)
  const auto with_a1 = [](const nlohmann::json& scheme) {
    return experiment_of({flatten(), linear("f1", 28 * 28, 8), bn1d("b1", 8), act("a1"), linear("f2", 8, 4)},
                         {"f1", "a1", "f2"}, {{"a1", scheme}});
  };
  const nlohmann::json unsigned8 = {{"noise", "uniform"}, {"strategy", "expectation"}, {"nbits", 8},
                                    {"signed", false},    {"balanced", false},         {"eps", 0.01}};
  EXPECT_EQ(export_error(with_a1(unsigned8)),
            "b1 + a1: its levels cannot be integers: they need more than 8 bits (up to 255 steps from zero; the "
            "integer export holds -127..127)");
  const nlohmann::json offset = {"uniform", {0.5, 0.9}, {0.333, 0.733, 1.133}};  // 0.001 x 333: 9 bits
  const std::string why = export_error(with_a1(offset));
  EXPECT_NE(why.find("b1 + a1: its levels cannot be integers: they are evenly spaced by 0.4 but 0.333 is not a "
                     "whole number of those steps from zero (uniform levels that miss zero)"),
            std::string::npos)
      << why;
  const nlohmann::json uneven = {"uniform", {0.5, 1.5}, {0.0, 1.0, 3.14159}};
  EXPECT_NE(export_error(with_a1(uneven)).find("(non-uniform levels)"), std::string::npos);
  // Near a fine grid is not on it (1.33334 is not 4 steps of 1/3: the runtime would compute with
  // 1.3333333), and on a fine grid beyond 8 bits says so (0.1 x {0, 3, 400}).
  const nlohmann::json near = {"uniform", {0.5, 1.2}, {0.0, 1.0, 1.33334}};
  EXPECT_NE(export_error(with_a1(near)).find("(non-uniform levels)"), std::string::npos) << export_error(with_a1(near));
  const nlohmann::json wide = {"uniform", {0.1, 20}, {0.0, 0.3, 40.0}};
  EXPECT_NE(export_error(with_a1(wide)).find("they need more than 8 bits (up to 400 steps from zero"),
            std::string::npos)
      << export_error(with_a1(wide));
  for (const nlohmann::json& fine : {nlohmann::json{"uniform", {0.5, 0.9}, {0.3, 0.7, 1.1}},
                                     nlohmann::json{"uniform", {-0.5, 0.75}, {-1.0, 0.0, 1.5}},
                                     nlohmann::json{"uniform", {0.5, 1.5}, {0.0, 1.0, 2.5}}}) {
    EXPECT_EQ(export_error(with_a1(fine)), "") << fine.dump();
    EXPECT_EQ(
        export_error(experiment_of({flatten(), linear("f1", 28 * 28, 8), bn1d("b1", 8), act("a1"), linear("f2", 8, 4)},
                                   {"f1", "a1", "f2"}, {{"f1", fine}})),
        "")
        << "weights " << fine.dump();
  }
}

// Levels the export will refuse are said when the experiment is made (a note launch prints), one
// note per reason, rather than only after training; levels it takes make no note.
TEST(ExportGuards, LevelsTheExportRefusesAreANoteBeforeTraining) {
  nlohmann::json cfg = testing::toy_mlp_config(1);
  EXPECT_TRUE(train::Experiment(cfg, "MLP", torch::kCPU).notes.empty());
  auto& schemes = cfg["indiv"]["net"]["params"]["quant_schemes"];
  schemes["phi2_act"] = schemes["phi3_act"] = {"uniform", {-0.5, 0.75}, {-1.0, 0.0, 3.14159}};
  schemes["phi1_fc"] = {"uniform", {-0.5, 0.75}, {-1.0, 0.0, 1.5}};  // 0.5 x {-2, 0, 3}: exported
  const train::Experiment exp(cfg, "MLP", torch::kCPU);
  ASSERT_EQ(exp.notes.size(), 1U);
  EXPECT_EQ(exp.notes[0].rfind("the levels of phi2_act, phi3_act cannot be integers: they are not integer multiples "
                               "of one step (non-uniform levels)",
                               0),
            0U)
      << exp.notes[0];
  EXPECT_NE(exp.notes[0].find("`quantlab export` will refuse this network"), std::string::npos);
}

}  // namespace
}  // namespace quantlab
