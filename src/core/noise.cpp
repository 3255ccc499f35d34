// Names of the noise families and forward strategies, as written in config files.
#include "quantlab/core/noise.h"

#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::core {
namespace {

#define QL_NOISE_NAME(value, name) #name,
const std::vector<std::string> kFamilyNames = {QL_NOISE_FAMILIES(QL_NOISE_NAME)};
#undef QL_NOISE_NAME
const std::vector<std::string> kStrategyNames = {"expectation", "mode", "random"};

int index_of(const std::vector<std::string>& names, const std::string& name, const std::string& what) {
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return static_cast<int>(i);
  throw ConfigError("unknown " + what + " '" + name + "'; known: " + join(names));
}

}  // namespace

NoiseFamily noise_family_from_name(const std::string& name) {
  return static_cast<NoiseFamily>(index_of(kFamilyNames, name, "noise family"));
}
std::string noise_family_name(NoiseFamily f) { return kFamilyNames.at(static_cast<int>(f)); }

ForwardStrategy forward_strategy_from_name(const std::string& name) {
  return static_cast<ForwardStrategy>(index_of(kStrategyNames, name, "forward strategy"));
}
std::string forward_strategy_name(ForwardStrategy s) { return kStrategyNames.at(static_cast<int>(s)); }

}  // namespace quantlab::core
