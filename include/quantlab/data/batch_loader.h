// Assembles batches on a background thread, a few ahead of the training loop (bounded queue).
//   Batch.inputs: float [B, C, H, W] in [0, 1], zero-padded by `pad` pixels on each side, then
//   (x - mean[c]) / std[c] when given      Batch.labels: int64 [B]
// Grayscale sets ([N, H, W]) give C = 1.
// The order is given by the caller (see split.h), so the loader itself holds no random state.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "quantlab/data/augment.h"
#include "quantlab/data/idx.h"

namespace quantlab::data {

struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
};

struct Preprocess {
  std::vector<float> mean, std;  // per channel; empty: no normalisation
  int64_t pad = 0;               // zero pixels added on each side
};

class BatchLoader {
 public:
  // Iterates `order` in batches of `batch_size` (the last one may be smaller).
  BatchLoader(const ImageSet& set, std::vector<int64_t> order, int64_t batch_size,
              Preprocess pre = {}, Augment augment = {}, size_t prefetch = 4);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t num_batches() const { return num_batches_; }
  // The next batch, or nothing at the end. Rethrows an error of the worker thread.
  std::optional<Batch> next();
  // Seconds next() has spent waiting for the worker: the time training waited for data.
  double wait_seconds() const { return waited_s_; }

 private:
  void produce();

  const ImageSet& set_;
  std::vector<int64_t> order_;
  int64_t batch_size_;
  int64_t num_batches_;
  Preprocess pre_;
  Augment augment_;
  size_t prefetch_;
  double waited_s_ = 0.0;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;
  bool done_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

// Assembles one batch from the given indices, on the calling thread; `first` is the position of
// indices[0] in the epoch's order (for the augmentation's per-sample draws).
Batch make_batch(const ImageSet& set, const int64_t* indices, int64_t count, const Preprocess& pre,
                 const Augment& augment = {}, int64_t first = 0);

}  // namespace quantlab::data
