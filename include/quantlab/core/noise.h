// Noise families and forward strategies of the ANA operator (docs/ANA.md §2).
// To add a family: one line in QL_NOISE_FAMILIES (its enum value and config name), its CDF and
// density in core/noise_math.h, and its tensor-op formulas in ana.cpp (the tests' independent
// reference, which must not share the kernels' code). The CPU kernel's table, the CUDA kernel's
// launches and the names all come from the list, through dispatch_noise_family.
#pragma once

#include <string>
#include <type_traits>
#include <vector>

namespace quantlab::core {

// Every noise family, once: X(enum value, config name), in the order of the enum.
#define QL_NOISE_FAMILIES(X) \
  X(kUniform, uniform)       \
  X(kTriangular, triangular) \
  X(kNormal, normal)         \
  X(kLogistic, logistic)

#define QL_NOISE_ENUM(value, name) value,
enum class NoiseFamily { QL_NOISE_FAMILIES(QL_NOISE_ENUM) };
#undef QL_NOISE_ENUM

// Calls fn(std::integral_constant<NoiseFamily, F>{}) for the family F = `family` (in the style of
// PyTorch's AT_DISPATCH macros): the kernels are templates on the family, chosen at run time here.
//   dispatch_noise_family(f, [&](auto fam) { kernel<decltype(fam)::value><<<...>>>(...); });
template <typename Fn>
auto dispatch_noise_family(NoiseFamily family, Fn&& fn) {
#define QL_NOISE_CASE(value, name) \
  case NoiseFamily::value:         \
    return fn(std::integral_constant<NoiseFamily, NoiseFamily::value>{});
  switch (family) { QL_NOISE_FAMILIES(QL_NOISE_CASE) }
#undef QL_NOISE_CASE
  return fn(std::integral_constant<NoiseFamily, NoiseFamily::kUniform>{});  // not reached: every value has a case
}

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

}  // namespace quantlab::core
