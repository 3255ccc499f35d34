// Random crop and flip, seeded per sample.
#include "quantlab/data/augment.h"

#include <random>

namespace quantlab::data {

void augment_batch(torch::Tensor& x, const Augment& a, int64_t first) {
  if (!a.enabled) return;
  const int64_t h = x.size(2), w = x.size(3), p = a.crop_pad;
  const auto padded = p > 0 ? torch::constant_pad_nd(x, {p, p, p, p}, 0.0) : x;
  auto out = torch::empty_like(x);
  for (int64_t b = 0; b < x.size(0); ++b) {
    const int64_t position = first + b;
    std::seed_seq seq{static_cast<uint32_t>(a.seed),         static_cast<uint32_t>(a.seed >> 32),
                      static_cast<uint32_t>(a.epoch),        static_cast<uint32_t>(position),
                      static_cast<uint32_t>(position >> 32), 0xa06u};
    std::mt19937_64 rng(seq);
    const int64_t dy = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * p + 1));
    const int64_t dx = static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * p + 1));
    auto crop = padded[b].narrow(1, dy, h).narrow(2, dx, w);
    if (a.flip && (rng() & 1)) crop = crop.flip({2});
    out[b].copy_(crop);
  }
  x = out;
}

}  // namespace quantlab::data
