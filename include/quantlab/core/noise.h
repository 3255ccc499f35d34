// Noise families and forward strategies of the ANA operator (docs/ANA.md §2).
// To add a family: extend NoiseFamily, its name in noise.cpp, its CDF and density in
// core/noise_math.h, and its tensor-op formulas in ana.cpp (the tests' independent reference).
#pragma once

#include <string>
#include <vector>

namespace quantlab {

enum class NoiseFamily { kUniform = 0, kTriangular = 1, kNormal = 2, kLogistic = 3 };

// How the forward pass turns the per-level probabilities into an output.
enum class ForwardStrategy {
  kExpectation = 0,  // sum_k p_k q_k (the paper's)
  kMode = 1,         // level of the most probable bin
  kRandom = 2,       // one level sampled with probabilities p_k
};

// Name <-> enum; unknown names throw ConfigError listing the known ones.
NoiseFamily noise_family_from_name(const std::string& name);
std::string noise_family_name(NoiseFamily f);

ForwardStrategy forward_strategy_from_name(const std::string& name);
std::string forward_strategy_name(ForwardStrategy s);

}  // namespace quantlab
