// Timers are pure functions of the clock; groups must cover every ANA module exactly once.
#include <gtest/gtest.h>

#include "quantlab/topology/mlp.h"
#include "quantlab/train/thermostat.h"
#include "quantlab/util/error.h"
#include "test_names.h"

namespace quantlab {
namespace {

double timer_at(const nlohmann::json& spec, double t) { return make_timer(JsonNode(spec, "timer"))(t); }

TEST(Timers, ValuesAsSpecified) {
  const nlohmann::json lin = {{"class", "Linear"}, {"params", {{"t_start", 10}, {"t_decay", 4}}}};
  EXPECT_DOUBLE_EQ(timer_at(lin, 0), 1.0);
  EXPECT_DOUBLE_EQ(timer_at(lin, 11), 0.75);
  EXPECT_DOUBLE_EQ(timer_at(lin, 14), 0.0);
  EXPECT_DOUBLE_EQ(timer_at(lin, 99), 0.0);
  const nlohmann::json quad = {{"class", "Quadratic"}, {"params", {{"t_start", 0}, {"t_decay", 4}}}};
  EXPECT_DOUBLE_EQ(timer_at(quad, 2), 0.25);
  const nlohmann::json con = {{"class", "Constant"}, {"params", nlohmann::json::object()}};
  EXPECT_DOUBLE_EQ(timer_at(con, 123), 1.0);
  const nlohmann::json bws = {{"class", "bws"}, {"params", {{"t_start", 2}, {"t_end", 6}, {"alpha", 2}}}};
  EXPECT_DOUBLE_EQ(timer_at(bws, 0), 1.0);
  EXPECT_DOUBLE_EQ(timer_at(bws, 4), 0.25);
  EXPECT_DOUBLE_EQ(timer_at(bws, 9), 0.0);
  const nlohmann::json uws = {{"class", "uws"}, {"params", {{"t_start", 1}, {"eps", 0.3}, {"alpha", 1}}}};
  EXPECT_DOUBLE_EQ(timer_at(uws, 1), 1.0);
  EXPECT_DOUBLE_EQ(timer_at(uws, 2), 0.5);
  EXPECT_DOUBLE_EQ(timer_at(uws, 5), 0.0);  // 0.2 < eps
}

TEST(Timers, UnknownClassListsTheKnownOnes) {
  try {
    timer_at({{"class", "Linaer"}, {"params", nlohmann::json::object()}}, 0);
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("timer.class: unknown timer 'Linaer'; known: "), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("Quadratic"), std::string::npos);
  }
}

std::shared_ptr<Network> small_mlp() {
  nlohmann::json schemes;
  for (const auto& n : mlp_quantized_modules()) schemes[n] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  const nlohmann::json params = {{"capacity", 0.01}, {"quant_schemes", schemes}};
  return make_mlp(JsonNode(params, "params"));
}

nlohmann::json prefix_thermostat(int period) {
  nlohmann::json noise, bindings = nlohmann::json::array();
  for (const auto& n : mlp_quantized_modules()) noise[n] = {{"stddev_start", {0.5, 0.25}}};
  for (int k = 1; k <= 4; ++k)
    bindings.push_back(
        {{"maps", {"phi" + std::to_string(k)}},
         {"forward", {{"class", "Linear"}, {"params", {{"t_start", (k - 1) * period}, {"t_decay", period}}}}},
         {"backward", {{"class", "Constant"}, {"params", nlohmann::json::object()}}}});
  return {{"params", {{"noise_schemes", noise}, {"bindings", bindings}}}};
}

TEST(Thermostat, StaggeredPrefixGroupsAnnealLayerByLayer) {
  auto net = small_mlp();
  const auto cfg = prefix_thermostat(2);
  Thermostat th(*net, JsonNode(cfg, "treat.thermostat"));
  th.step();  // t = 1
  auto noise = th.noise();
  ASSERT_EQ(noise.size(), 7u);
  EXPECT_EQ(noise[0].first, "phi1_fc");
  EXPECT_FLOAT_EQ(noise[0].second.sigma_forward, 0.25f);  // 0.5 * (1 - 1/2)
  EXPECT_FLOAT_EQ(noise[0].second.sigma_backward, 0.25f);
  EXPECT_FLOAT_EQ(noise[2].second.sigma_forward, 0.5f);  // phi2 starts at t = 2
  th.set_clock(4);
  noise = th.noise();
  EXPECT_FLOAT_EQ(noise[1].second.sigma_forward, 0.0f);  // phi1_act done
  EXPECT_FLOAT_EQ(noise[3].second.sigma_forward, 0.0f);  // phi2_act done at t = 4
  EXPECT_FLOAT_EQ(noise[4].second.sigma_forward, 0.5f);  // phi3 starts
  EXPECT_EQ(th.clock(), 4);
}

TEST(Thermostat, ExplicitModuleListsMustCoverEveryModuleOnce) {
  auto net = small_mlp();
  nlohmann::json noise;
  for (const auto& n : mlp_quantized_modules()) noise[n] = {{"mu_start", 0.0}, {"sigma_start", 1.0}};
  const nlohmann::json timer = {{"class", "Linear"}, {"params", {{"t_start", 0}, {"t_decay", 10}}}};
  nlohmann::json cfg = {{"params",
                         {{"noise_schemes", noise},
                          {"bindings",
                           {{{"modules", {"phi1_fc", "phi1_act", "phi2_fc"}}, {"sigma", timer}},
                            {{"modules", {"phi2_act", "phi3_fc", "phi3_act"}}, {"sigma", timer}}}}}}};
  try {
    Thermostat th(*net, JsonNode(cfg, "treat.thermostat"));
    FAIL() << "phi4_fc is in no group";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("in no group: phi4_fc"), std::string::npos) << e.what();
  }
  cfg["params"]["bindings"][1]["modules"] = {"phi2_act", "phi3_fc", "phi3_act", "phi4_fc", "phi1_fc"};
  try {
    Thermostat th(*net, JsonNode(cfg, "treat.thermostat"));
    FAIL() << "phi1_fc is in two groups";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("'phi1_fc' is already in the group at treat.thermostat.params.bindings[0]"),
              std::string::npos)
        << e.what();
  }
  cfg["params"]["bindings"][1]["modules"] = {"phi2_act", "phi3_fc", "phi3_act", "phi4_fc"};
  Thermostat th(*net, JsonNode(cfg, "treat.thermostat"));
  th.set_clock(5);
  for (const auto& kv : th.noise()) {
    EXPECT_FLOAT_EQ(kv.second.sigma_forward, 0.5f);  // successor: one sigma for both passes
    EXPECT_FLOAT_EQ(kv.second.sigma_backward, 0.5f);
  }
}

TEST(Thermostat, UnknownModuleIsNamed) {
  auto net = small_mlp();
  auto cfg = prefix_thermostat(2);
  cfg["params"]["noise_schemes"]["phi5_fc"] = {{"stddev_start", {0.5, 0.5}}};
  try {
    Thermostat th(*net, JsonNode(cfg, "treat.thermostat"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("treat.thermostat.params.noise_schemes.phi5_fc: no ANA module"),
              std::string::npos)
        << e.what();
  }
}

// The two forms parse into one schedule; an entry of the other form is refused with its path.
TEST(Thermostat, TwoFormsOneScheduleAndNoMixing) {
  auto net = small_mlp();
  const auto cfg = prefix_thermostat(2);
  const JsonNode node(cfg, "treat.thermostat");
  const auto names = mlp_quantized_modules();
  const NoiseSchedule old_form = parse_noise_schedule(node, names);
  ASSERT_EQ(old_form.groups.size(), 4u);
  const NoiseState s = old_form.at("phi1_fc", 1.0);
  EXPECT_FLOAT_EQ(s.mu, 0.0f);
  EXPECT_FLOAT_EQ(s.sigma_forward, 0.25f);
  EXPECT_FLOAT_EQ(s.sigma_backward, 0.25f);
  nlohmann::json succ = cfg;
  for (const auto& n : names) succ["params"]["noise_schemes"][n] = {{"mu_start", 0.1}, {"sigma_start", 0.5}};
  for (auto& b : succ["params"]["bindings"]) {
    b["sigma"] = b["forward"];
    b.erase("forward");
    b.erase("backward");
  }
  const NoiseState t = parse_noise_schedule(JsonNode(succ, "treat.thermostat"), names).at("phi1_fc", 1.0);
  EXPECT_FLOAT_EQ(t.mu, 0.1f);  // Constant mu timer by default
  EXPECT_FLOAT_EQ(t.sigma_forward, 0.25f);
  EXPECT_FLOAT_EQ(t.sigma_backward, 0.25f);
  auto mixed = cfg;
  mixed["params"]["noise_schemes"]["phi3_act"] = {{"sigma_start", 0.5}};
  try {
    parse_noise_schedule(JsonNode(mixed, "treat.thermostat"), names);
    FAIL() << "a successor entry in a 2019 config";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("noise_schemes.phi3_act.sigma_start: unknown key"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace quantlab
