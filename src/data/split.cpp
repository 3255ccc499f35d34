// Seeded split (libtorch's randperm, as the original) and per-epoch shuffles (own Fisher-Yates:
// identical on every standard library).
#include "quantlab/data/split.h"

#include <torch/torch.h>

#include <algorithm>
#include <numeric>
#include <random>

namespace quantlab::data {
namespace {

void shuffle(std::vector<int64_t>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const uint64_t j = rng() % i;  // bias < 2^-40 for data-set sizes
    std::swap(v[i - 1], v[j]);
  }
}

// Calls take(from, to) for the rank's share [from, to) of every batch of an epoch of n samples.
template <class Take>
void for_each_share(int64_t n, int64_t batch, int world, int rank, Take take) {
  for (int64_t start = 0; start < n; start += batch) {
    const int64_t len = std::min(batch, n - start);
    take(start + len * rank / world, start + len * (rank + 1) / world);
  }
}

}  // namespace

Split split_indices(int64_t n, double valid_fraction, uint64_t seed) {
  // torch.manual_seed(seed); torch.randperm(n), as the original's transform_random_split.
  const at::Generator gen = at::detail::createCPUGenerator(seed);
  const torch::Tensor perm = torch::randperm(n, gen, torch::TensorOptions().dtype(torch::kLong));
  const int64_t* p = perm.data_ptr<int64_t>();
  const std::vector<int64_t> all(p, p + n);
  const auto n_train = static_cast<int64_t>(static_cast<double>(n) * (1.0 - valid_fraction));
  Split s;
  s.train.assign(all.begin(), all.begin() + n_train);
  s.valid.assign(all.begin() + n_train, all.end());
  return s;
}

std::vector<int64_t> epoch_order(const std::vector<int64_t>& indices, uint64_t seed, int64_t epoch) {
  std::seed_seq seq{static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32), static_cast<uint32_t>(epoch),
                    0x5eedu};
  std::mt19937_64 rng(seq);
  std::vector<int64_t> out = indices;
  shuffle(out, rng);
  return out;
}

std::vector<int64_t> rank_shard(const std::vector<int64_t>& order, int64_t batch, int world, int rank) {
  std::vector<int64_t> out;
  for_each_share(static_cast<int64_t>(order.size()), batch, world, rank,
                 [&](int64_t from, int64_t to) { out.insert(out.end(), order.begin() + from, order.begin() + to); });
  return out;
}

std::vector<int64_t> rank_shard_positions(int64_t n, int64_t batch, int world, int rank) {
  std::vector<int64_t> out;
  for_each_share(n, batch, world, rank, [&](int64_t from, int64_t to) {
    if (to > from) out.push_back(from);
  });
  return out;
}

std::vector<int64_t> rank_slice(const std::vector<int64_t>& indices, int world, int rank) {
  const auto n = static_cast<int64_t>(indices.size());
  return {indices.begin() + n * rank / world, indices.begin() + n * (rank + 1) / world};
}

}  // namespace quantlab::data
