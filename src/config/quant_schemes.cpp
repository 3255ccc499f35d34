// Quantization schemes from a config.
#include "quantlab/config/quant_schemes.h"

#include "quantlab/util/strings.h"

#include <set>

#include "quantlab/util/error.h"

namespace quantlab::config {
namespace {

// Runs `f`, prefixing the JSON path to a ConfigError that has none.
template <typename F>
auto with_path(const JsonNode& node, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const ConfigError& e) {
    const std::string what = e.what();
    if (what.rfind(node.path(), 0) == 0) throw;
    node.fail(what);
  }
}

}  // namespace

core::AnaScheme parse_ana_scheme(const JsonNode& node) {
  core::AnaScheme s;
  if (node.is_array()) {
    if (node.size() != 3) node.fail("expected [noise, thresholds, levels], got " + node.json().dump());
    s.noise = with_path(node.at(0), [&] { return core::noise_family_from_name(node.at(0).string()); });
    const auto t = node.at(1).floats();
    const auto l = node.at(2).floats();
    s.quantizer = with_path(node, [&] { return core::Quantizer::from_stair(t, l); });
    return s;
  }
  if (!node.is_object()) node.fail("expected [noise, thresholds, levels] or an object, got " + node.json().dump());
  node.allow_keys({"noise", "strategy", "thresholds", "levels", "nbits", "signed", "balanced", "eps"});
  const std::string noise = node.string("noise", "uniform");
  s.noise = with_path(node, [&] { return core::noise_family_from_name(noise); });
  const std::string strategy = node.string("strategy", "expectation");
  s.strategy = with_path(node, [&] { return core::forward_strategy_from_name(strategy); });
  if (node.has("nbits")) {
    if (node.has("thresholds") || node.has("levels"))
      node.fail("give either nbits/signed/balanced/eps or thresholds/levels, not both");
    const int nbits = static_cast<int>(node.at("nbits").integer());
    const bool is_signed = node.boolean("signed", true);
    const bool balanced = node.boolean("balanced", false);
    const float eps = static_cast<float>(node.number("eps", 1.0));
    s.quantizer = with_path(node, [&] { return core::Quantizer::from_nbits(nbits, is_signed, balanced, eps); });
  } else {
    const auto t = node.at("thresholds").floats();
    const auto l = node.at("levels").floats();
    s.quantizer = with_path(node, [&] { return core::Quantizer::from_stair(t, l); });
  }
  return s;
}

std::map<std::string, core::AnaScheme> parse_quant_schemes(const JsonNode& node,
                                                           const std::vector<std::string>& expected) {
  node.expect_object();
  const std::set<std::string> want(expected.begin(), expected.end());
  std::map<std::string, core::AnaScheme> out;
  for (const auto& key : node.keys()) {
    if (!want.count(key))
      node.fail("'" + key + "' is not a quantized module of this topology; expected: " + join(expected));
    out.emplace(key, parse_ana_scheme(node.at(key)));
  }
  for (const auto& name : expected)
    if (!out.count(name)) node.fail("missing the scheme of quantized module '" + name + "'");
  return out;
}

}  // namespace quantlab::config
