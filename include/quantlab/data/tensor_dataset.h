// A data set held in memory as one uint8 tensor (IDX and CIFAR files are read whole).
//   inputs: [0, 1], zero-padded by `pad` pixels on each side, training crops and flips when
//   augmentation is on (augment.h), then (x - mean[c]) / std[c] when given.
// Grayscale sets ([N, H, W]) give C = 1.
#pragma once

#include <vector>

#include "quantlab/data/augment.h"
#include "quantlab/data/dataset.h"
#include "quantlab/data/idx.h"

namespace quantlab::data {

struct Preprocess {
  std::vector<float> mean, std;  // per channel; empty: no normalisation
  int64_t pad = 0;               // zero pixels added on each side
  bool augment = false;          // random crop (4-pixel padding) and flip on training batches
};

class TensorDataset : public Dataset {
 public:
  TensorDataset(ImageSet set, Preprocess pre) : set_(std::move(set)), pre_(std::move(pre)) {}
  int64_t size() const override { return set_.size(); }
  Batch make_batch(const int64_t* indices, int64_t count, int64_t first, const SampleContext& ctx) const override;
  torch::Tensor labels() const override { return set_.labels; }
  std::string source(int64_t i) const override { return set_.label_file(i); }
  std::string input_source(int64_t i) const override { return set_.image_file(i); }
  const ImageSet& images() const { return set_; }
  const Preprocess& preprocess() const { return pre_; }

 private:
  ImageSet set_;
  Preprocess pre_;
};

}  // namespace quantlab::data
