// Training augmentation of the original's CIFAR-10 pipeline: a random crop of the image's own size
// out of the image zero-padded by `crop_pad` pixels, and a random horizontal flip. Each sample's
// draw is a pure function of (seed, epoch, position in the epoch's order), so a resumed run
// repeats it exactly without saving any state. Runs on the batch loader's thread.
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace quantlab::data {

struct Augment {
  bool enabled = false;
  int64_t crop_pad = 4;
  bool flip = true;
  uint64_t seed = 0;
  int64_t epoch = 0;
};

// x: float [B, C, H, W], pixels before normalisation; sample b is at position first + b.
void augment_batch(torch::Tensor& x, const Augment& a, int64_t first);

}  // namespace quantlab::data
