// Construction and validation of quantizers (docs/ANA.md §1).
#include "quantlab/core/quantizer.h"

#include <sstream>

#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::core {
namespace {

std::string list(const std::vector<float>& v) {
  return "[" +
         join(v,
              [](float x) {
                std::ostringstream os;
                os << x;
                return os.str();
              }) +
         "]";
}

}  // namespace

Quantizer Quantizer::from_stair(std::vector<float> thresholds, std::vector<float> levels) {
  if (thresholds.empty()) throw ConfigError("a quantizer needs at least one threshold");
  if (levels.size() != thresholds.size() + 1)
    throw ConfigError("expected " + std::to_string(thresholds.size() + 1) + " levels for " +
                      std::to_string(thresholds.size()) + " thresholds, got " + std::to_string(levels.size()) +
                      " levels " + list(levels));
  for (size_t i = 1; i < thresholds.size(); ++i)
    if (!(thresholds[i - 1] < thresholds[i]))
      throw ConfigError("thresholds must be strictly increasing, got " + list(thresholds));
  for (size_t i = 1; i < levels.size(); ++i)
    if (!(levels[i - 1] < levels[i])) throw ConfigError("levels must be strictly increasing, got " + list(levels));
  Quantizer q;
  q.thresholds = std::move(thresholds);
  q.levels = std::move(levels);
  return q;
}

Quantizer Quantizer::from_nbits(int nbits, bool is_signed, bool balanced, float eps) {
  if (nbits < 1 || nbits > 16) throw ConfigError("nbits must be in 1..16, got " + std::to_string(nbits));
  if (!(eps > 0.0f)) throw ConfigError("eps must be positive");
  // As the successor's setup_quantizer: balanced applies to signed ranges only (-2^(n-1)+1 ..
  // 2^(n-1)-1, symmetric about 0); an unsigned range keeps its 2^n levels.
  if (!is_signed) balanced = false;
  const int count = 1 << nbits;
  const int offset = is_signed ? -(1 << (nbits - 1)) : 0;
  std::vector<float> levels;
  for (int k = balanced ? 1 : 0; k < count; ++k) levels.push_back(static_cast<float>(k + offset));
  if (levels.size() < 2) throw ConfigError("a balanced 1-bit quantizer has a single level");
  std::vector<float> thresholds;
  for (size_t k = 1; k < levels.size(); ++k) thresholds.push_back(0.5f * (levels[k - 1] + levels[k]));
  for (auto& t : thresholds) t *= eps;
  for (auto& l : levels) l *= eps;
  Quantizer q = from_stair(std::move(thresholds), std::move(levels));
  q.scale = eps;
  return q;
}

}  // namespace quantlab::core
