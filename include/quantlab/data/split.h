// Index arithmetic of the data pipeline, as pure functions of seeds:
//   - the train/validation split, as the original's: libtorch's randperm(N) drawn from a generator
//     seeded with `seed` (the original seeds 1234), the first int(N * (1 - valid_fraction))
//     indices train, the rest validate; so with the same seed the validation images are the
//     original's, and every run and every resume sees the same split;
//   - the training order of epoch e: a shuffle drawn from (seed, e), so it needs no saved state.
#pragma once

#include <cstdint>
#include <vector>

namespace quantlab::data {

struct Split {
  std::vector<int64_t> train, valid;
};

Split split_indices(int64_t n, double valid_fraction, uint64_t seed);

// A permutation of `indices` that depends only on (seed, epoch).
std::vector<int64_t> epoch_order(const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch);

}  // namespace quantlab::data
