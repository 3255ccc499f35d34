// Configs load in the original's format, and every mistake stops with its JSON path.
#include <gtest/gtest.h>

#include <filesystem>

#include <fstream>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "test_names.h"
#include "test_util.h"

namespace quantlab {
namespace {

nlohmann::json shipped_config() { return read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json"); }

// The message of the ConfigError that building `cfg` throws ("" when none).
std::string error_of(const nlohmann::json& cfg) {
  try {
    Experiment exp(cfg, "MLP", torch::kCPU);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(Config, ShippedFashionMnistConfigBuilds) {
  Experiment exp(shipped_config(), "MLP", torch::kCPU);
  EXPECT_EQ(exp.max_epoch, shipped_config()["treat"]["max_epoch"].get<int64_t>());
  ASSERT_TRUE(exp.thermostat);
  EXPECT_EQ(exp.thermostat->noise().size(), 7u);
}

TEST(Config, OriginalMnistConfigLoadsUnchanged) {
  const std::string file = std::string(QL_SOURCE_DIR) + "/../shared/reference/original-quantlab/MNIST/config.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is not beside this checkout";
  Experiment exp(read_json_file(file), "MLP", torch::kCPU);
  EXPECT_EQ(exp.max_epoch, 1000);
  EXPECT_EQ(exp.lr_scheduler->step_metric(), Statistic::kValidMetric);
  int64_t params = 0;
  for (const auto& p : exp.net->parameters()) params += p.numel();
  // 784*2048 + 2*2048*2048 + 2048*10 weights, 3*2*2048 + 2*10 BN affine parameters.
  EXPECT_EQ(params, 784 * 2048 + 2 * 2048 * 2048 + 2048 * 10 + 3 * 2 * 2048 + 2 * 10);
  const auto names = exp.net->named_parameters().keys();
  EXPECT_NE(std::find(names.begin(), names.end(), "phi1_fc.weight"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "phi4_bn.bias"), names.end());
}

TEST(Config, WrongKeyIsNamedWithItsPath) {
  auto cfg = shipped_config();
  cfg["treat"]["optimizer"]["params"]["learning_rate"] = 0.1;
  EXPECT_NE(error_of(cfg).find("treat.optimizer.params.learning_rate: unknown key; expected one of: lr"),
            std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["treat"]["dat"] = cfg["treat"]["data"];
  EXPECT_NE(error_of(cfg).find("treat.dat: unknown key"), std::string::npos) << error_of(cfg);
}

TEST(Config, WrongTypeIsNamedWithItsPath) {
  auto cfg = shipped_config();
  cfg["treat"]["data"]["bs_train"] = "256";
  EXPECT_NE(error_of(cfg).find("treat.data.bs_train: expected an integer, got \"256\""), std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["treat"]["max_epoch"] = 2.5;
  EXPECT_NE(error_of(cfg).find("treat.max_epoch: expected an integer"), std::string::npos) << error_of(cfg);
}

// Numbers beyond what the program holds are named, not cast: 1e999 in a file or a --set (the JSON
// parser's own message named neither), an integer beyond int64, a threshold or spread beyond a
// float (it became infinite), a window timer's negative exponent (a spread growing to infinity).
TEST(Config, NumbersBeyondTheirRangeAreNamed) {
  testing::TempDir dir;
  std::ofstream(dir.path() + "/config.json") << R"({"treat": {"optimizer": {"params": {"lr": 1e999}}}})";
  try {
    read_json_file(dir.path() + "/config.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(
        std::string(e.what()).find(dir.path() + "/config.json: a number beyond the range of a double (number overflow "
                                                "parsing '1e999')"),
        std::string::npos)
        << e.what();
  }
  try {
    config::parse_override("treat.optimizer.params.lr=1e999");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("--set treat.optimizer.params.lr=1e999: 1e999 is a number beyond the range "
                                         "of a double"),
              std::string::npos)
        << e.what();
  }
  auto cfg = shipped_config();
  cfg["treat"]["max_epoch"] = 1e20;
  EXPECT_NE(error_of(cfg).find("treat.max_epoch: an integer beyond the range of a 64-bit integer"), std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["treat"]["max_epoch"] = 18446744073709551615ULL;
  EXPECT_NE(error_of(cfg).find("treat.max_epoch: an integer beyond the range of a 64-bit integer"), std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_fc"][1][0] = -1e39;
  EXPECT_NE(error_of(cfg).find("indiv.net.params.quant_schemes.phi1_fc[1][0]: a number beyond the range of a float"),
            std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["treat"]["thermostat"]["params"]["noise_schemes"]["phi1_fc"]["stddev_start"][0] = 1e39;
  EXPECT_NE(error_of(cfg).find("a spread beyond the range of a float"), std::string::npos) << error_of(cfg);
  cfg = shipped_config();
  cfg["treat"]["thermostat"]["params"]["bindings"][0]["forward"] = {
      {"class", "BoundedWindow"}, {"params", {{"t_start", 0}, {"t_end", 1}, {"alpha", -1}}}};
  EXPECT_NE(error_of(cfg).find("forward.params.alpha: expected a number >= 0"), std::string::npos) << error_of(cfg);
}

TEST(Config, UnknownClassListsTheKnownOnes) {
  auto cfg = shipped_config();
  cfg["treat"]["optimizer"]["class"] = "Adamm";
  EXPECT_NE(
      error_of(cfg).find("treat.optimizer.class: unknown optimizer 'Adamm'; known: Adagrad, Adam, AdamW, RMSprop, SGD"),
      std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["indiv"]["net"]["class"] = "MLPP";
  EXPECT_NE(error_of(cfg).find("indiv.net.class: unknown network class 'MLPP'"), std::string::npos) << error_of(cfg);
  cfg = shipped_config();
  cfg["indiv"]["loss_function"]["class"] = "Hinge";
  EXPECT_NE(error_of(cfg).find("indiv.loss_function.class: unknown loss function 'Hinge'"), std::string::npos);
  cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_fc"][0] = "gaussian";
  EXPECT_NE(error_of(cfg).find("quant_schemes.phi1_fc[0]: unknown noise family 'gaussian'; known: uniform"),
            std::string::npos)
      << error_of(cfg);
}

TEST(Config, BadQuantizersAreNamedWithTheirPath) {
  auto cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi2_act"][1] = {0.5, -0.5};
  EXPECT_NE(error_of(cfg).find("indiv.net.params.quant_schemes.phi2_act: thresholds must be strictly increasing"),
            std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi3_fc"][2] = {-1.0, 1.0};
  EXPECT_NE(error_of(cfg).find("indiv.net.params.quant_schemes.phi3_fc: expected 3 levels for 2 thresholds"),
            std::string::npos)
      << error_of(cfg);
  cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"].erase("phi4_fc");
  EXPECT_NE(error_of(cfg).find("missing the scheme of quantized module 'phi4_fc'"), std::string::npos) << error_of(cfg);
}

TEST(Config, TopologyFlagMustMatchTheClass) {
  try {
    Experiment exp(shipped_config(), "VGG", torch::kCPU);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("belongs to topology 'MLP', not to --topology=VGG"), std::string::npos);
  }
}

TEST(Config, SuccessorQuantizerFormAndStrategies) {
  auto cfg = shipped_config();
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_act"] = {
      {"noise", "logistic"}, {"strategy", "random"}, {"nbits", 2}, {"signed", true}, {"balanced", true}, {"eps", 0.5}};
  EXPECT_EQ(error_of(cfg), "");
  cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_act"]["strategy"] = "median";
  EXPECT_NE(error_of(cfg).find("quant_schemes.phi1_act: unknown forward strategy 'median'"), std::string::npos)
      << error_of(cfg);
}

TEST(Config, ReduceLROnPlateauNeedsAKnownMetric) {
  auto cfg = shipped_config();
  cfg["treat"]["lr_scheduler"] = {
      {"class", "ReduceLROnPlateau"}, {"step_metric", "valid_acc"}, {"params", {{"patience", 2}}}};
  EXPECT_NE(error_of(cfg).find("treat.lr_scheduler.step_metric: expected one of train_loss"), std::string::npos)
      << error_of(cfg);
}

}  // namespace
}  // namespace quantlab
