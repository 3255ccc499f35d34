// Levels as integers on one grid: what the integer export needs of a quantizer's levels
// (docs/EXPORT.md, "The arithmetic"), checked by the export and, as a note, when training starts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantlab::core {

// The integers of `values` on a grid of `step` (tried: `preferred`, 1, the smallest magnitude, the
// smallest gap between the values, then the smallest magnitude's whole fractions down to 1/127);
// "" when found, else why not: not on one grid, or more than 8 bits.
std::string on_grid(const std::vector<double>& values, double preferred, double& step, std::vector<int8_t>& ints);

}  // namespace quantlab::core
