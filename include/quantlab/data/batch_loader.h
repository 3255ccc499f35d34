// Assembles batches on a background thread, a few ahead of the training loop (bounded queue).
//   Batch.inputs: float [B, 1, H, W] in [0, 1] (then (x - mean) / std)   Batch.labels: int64 [B]
// The order is given by the caller (see split.h), so the loader itself holds no random state.
#pragma once

#include <torch/torch.h>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "quantlab/data/idx.h"

namespace quantlab::data {

struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
};

struct Normalization {
  float mean = 0.0f;
  float std = 1.0f;
};

class BatchLoader {
 public:
  // Iterates `order` in batches of `batch_size` (the last one may be smaller).
  BatchLoader(const ImageSet& set, std::vector<int64_t> order, int64_t batch_size,
              Normalization norm = {}, size_t prefetch = 4);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t num_batches() const { return num_batches_; }
  // The next batch, or nothing at the end. Rethrows an error of the worker thread.
  std::optional<Batch> next();

 private:
  void produce();

  const ImageSet& set_;
  std::vector<int64_t> order_;
  int64_t batch_size_;
  int64_t num_batches_;
  Normalization norm_;
  size_t prefetch_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<Batch> queue_;
  bool done_ = false, stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

// Assembles one batch from the given indices, on the calling thread.
Batch make_batch(const ImageSet& set, const int64_t* indices, int64_t count, Normalization norm);

}  // namespace quantlab::data
