// Levels as integers on one grid (integer_grid.h).
#include "quantlab/core/integer_grid.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace quantlab::core {

std::string on_grid(const std::vector<double>& values, double preferred, double& step, std::vector<int8_t>& ints) {
  std::vector<double> distinct(values);
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
  double smallest = INFINITY, gap = INFINITY;
  for (size_t k = 0; k < distinct.size(); ++k) {
    if (distinct[k] != 0) smallest = std::min(smallest, std::abs(distinct[k]));
    if (k > 0) gap = std::min(gap, distinct[k] - distinct[k - 1]);
  }
  // Whether every value is a whole number of steps `s`, and the most steps from zero. On the plain
  // steps within 1e-5 of a step per step (levels are float32: 255 steps of 0.01 are off by more
  // than 1e-5 of a step); on a fraction of the smallest magnitude within float32's rounding of the
  // value, so that a level near a fine grid (1.33334 by steps of 1/3) is not taken for one on it.
  const auto fits = [&](double s, double& most, bool fraction) {
    most = 0;
    for (double v : distinct) {
      const double q = v / s, r = std::round(q);
      const bool off = fraction ? std::abs(v - r * s) > 4 * std::ldexp(1.0, -24) * std::abs(v)
                                : std::abs(q - r) > 1e-5 * std::max(1.0, std::abs(r));
      if (off) return false;
      most = std::max(most, std::abs(r));
    }
    return true;
  };
  // The steps tried: the scheme's, 1, the smallest magnitude and the smallest gap; then the
  // smallest magnitude's whole fractions (every step that fits 8 bits is one: {-1, 0, 1.5} is
  // 0.5 x {-2, 0, 3}, {0.3, 0.7, 1.1} is 0.1 x {3, 7, 11}).
  std::vector<double> steps = {preferred, 1.0, smallest, gap};
  const size_t plain = steps.size();
  for (int m = 2; m <= 127 && std::isfinite(smallest); ++m) steps.push_back(smallest / m);
  double widest = 0;  // |value / step| on the first step that fits, beyond 127
  for (size_t k = 0; k < steps.size(); ++k) {
    const double s = steps[k];
    double most = 0;
    if (!(s > 0) || !std::isfinite(s) || !fits(s, most, k >= plain)) continue;
    if (most <= 127) {
      step = s;
      ints.clear();
      ints.reserve(values.size());
      for (double v : values) ints.push_back(static_cast<int8_t>(std::round(v / s)));
      return "";
    }
    if (widest == 0) widest = most;
  }
  if (widest > 0)
    return "they need more than 8 bits (up to " + std::to_string(static_cast<int64_t>(widest)) +
           " steps from zero; the integer export holds -127..127)";
  // Evenly spaced values (whole gaps apart) that are not whole steps from zero are a uniform stair
  // that misses zero, not a non-uniform one: say which.
  bool spaced = std::isfinite(gap) && gap > 0;
  for (size_t k = 1; spaced && k < distinct.size(); ++k) {
    const double q = (distinct[k] - distinct[0]) / gap, r = std::round(q);
    spaced = std::abs(q - r) <= 1e-5 * std::max(1.0, std::abs(r));
  }
  if (spaced) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "they are evenly spaced by %g but %g is not a whole number of those steps from zero",
                  gap, distinct[0]);
    return std::string(buf) + " (uniform levels that miss zero); the integer export needs levels k * step";
  }
  return "they are not integer multiples of one step (non-uniform levels); the integer export needs levels k * step, "
         "|k| <= 127";
}

}  // namespace quantlab::core
