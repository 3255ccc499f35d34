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

// Data parallel: rank `rank` of `world`'s part of an epoch's `order` cut in batches of `batch`:
// of every batch of the single-process epoch, the rank's contiguous share (sizes differ by at most
// one). The ranks' parts are disjoint and their union, batch by batch, is the single-process epoch.
std::vector<int64_t> rank_shard(const std::vector<int64_t>& order, int64_t batch, int world, int rank);
// The position in the epoch's order of each of rank_shard's batches' first sample (epochs of `n`
// samples; one entry per non-empty share), so that the rank's samples draw their augmentation at
// their single-process positions.
std::vector<int64_t> rank_shard_positions(int64_t n, int64_t batch, int world, int rank);

// The rank's contiguous share of `indices` (evaluation sets).
std::vector<int64_t> rank_slice(const std::vector<int64_t>& indices, int world, int rank);

}  // namespace quantlab::data
