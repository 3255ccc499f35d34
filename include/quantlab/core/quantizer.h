// A quantizer: the stair function Q of docs/ANA.md §1, given by sorted thresholds and levels.
// Accepts both forms of the configs: explicit thresholds+levels (2019) and {nbits, signed,
// balanced, eps} (successor). `scale` (= eps) converts noise parameters given in quantizer units.
#pragma once

#include <string>
#include <vector>

namespace quantlab::core {

struct Quantizer {
  std::vector<float> thresholds;  // T values, strictly increasing
  std::vector<float> levels;      // T + 1 values, increasing
  float scale = 1.0f;             // eps; thresholds and levels above already include it

  // Throws ConfigError (without a JSON path: the caller adds it) on unsorted thresholds, a count
  // mismatch, or an empty stair.
  static Quantizer from_stair(std::vector<float> thresholds, std::vector<float> levels);
  // Levels 0 .. 2^nbits - 1 (signed: minus 2^(nbits-1); balanced: lowest dropped), thresholds at
  // the midpoints, all times eps.
  static Quantizer from_nbits(int nbits, bool is_signed, bool balanced, float eps);

  int num_thresholds() const { return static_cast<int>(thresholds.size()); }
};

}  // namespace quantlab::core
