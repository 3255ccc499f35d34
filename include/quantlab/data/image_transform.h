// The ImageNet transforms of the original (torchvision's, plus its colour jitter and lighting),
// on one decoded image, written straight into a float [3, S, S] slot of the batch:
//   training:   random resized crop to S (area 8-100 %, aspect 3/4-4/3), horizontal flip with
//               probability 1/2, then (original only) brightness, contrast and saturation jitter
//               (each lerps towards black / the mean grey / the grey image by U(0, 0.4), in a random
//               order) and AlexNet's PCA lighting noise (sigma 0.1)
//   validation: shorter side resized to 256, centre crop S
// then normalisation with the ImageNet channel statistics. Resampling is PIL's bilinear filter,
// widened by the shrink factor (anti-aliased), as torchvision applies it to PIL images.
// Every draw comes from the generator the caller seeds per sample.
#pragma once

#include <cstdint>
#include <random>

#include "quantlab/data/image_decode.h"

namespace quantlab::data {

enum class ImageAugment {
  kNone,          // the validation transform
  kOriginal,      // crop, flip, colour jitter, lighting (the original's "augment": true)
  kTorchvision,   // crop, flip ("torchvision")
  kTorchvision2,  // resize 256, random crop, flip ("torchvision2")
};

// A region of the full-size image (pixels; may be fractional) and where the filter may read.
struct CropPlan {
  double x0 = 0, y0 = 0, w = 0, h = 0;        // the source region mapped onto the output
  double cx0 = 0, cy0 = 0, cx1 = 0, cy1 = 0;  // the filter reads only inside [cx0, cx1) x [cy0, cy1)
  bool flip = false;
};

// The region to resample for an image of `size` (draws from `rng` when augmenting).
CropPlan plan_crop(ImageSize size, int64_t out, ImageAugment kind, std::mt19937_64& rng);

// The smallest decode scale that keeps every output pixel from being enlarged.
double min_decode_scale(const CropPlan& plan, int64_t out);

// Resamples the plan's region of `img` (decoded at img.scale of the full size) to out x out and
// writes (x - mean) / std, channel-major, into dst[3 * out * out]; colour jitter and lighting
// (drawn from `rng`) when kind is kOriginal.
void render_crop(const RgbImage& img, const CropPlan& plan, int64_t out, ImageAugment kind, std::mt19937_64& rng,
                 float* dst);

}  // namespace quantlab::data
