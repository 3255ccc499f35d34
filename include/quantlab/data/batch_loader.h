// Assembles batches on worker threads, a bounded number ahead of the training loop, and hands them
// out in order. The order of samples is given by the caller (see split.h) and every random draw
// of the data set is a function of the sample's position, so the batches do not depend on how
// many workers there are or which one built which batch.
#pragma once

#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "quantlab/data/dataset.h"

namespace quantlab::data {

struct LoaderOptions {
  int workers = 1;      // threads building batches
  size_t prefetch = 4;  // batches built ahead of the consumer (at least `workers`)
  // Batches in page-locked memory (built by the workers), so copies to a CUDA device can be
  // asynchronous (to(device, non_blocking)). Only for a CUDA consumer: pinning needs CUDA.
  bool pin_memory = false;
};

class BatchLoader {
 public:
  // Iterates `order` in batches of `batch_size` (the last one may be smaller). `positions`: the
  // position in the epoch's order of each batch's first sample, where `order` is a part of the
  // epoch (a rank's share, data::rank_shard_positions); empty: b * batch_size.
  BatchLoader(const Dataset& set, std::vector<int64_t> order, int64_t batch_size, SampleContext ctx = {},
              LoaderOptions options = {}, std::vector<int64_t> positions = {});
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  int64_t num_batches() const { return num_batches_; }
  // The next batch, or nothing at the end. Rethrows a worker's error in place of the batch it failed
  // to build.
  std::optional<Batch> next();
  // Seconds next() has spent waiting for the workers: the time training waited for data.
  double wait_seconds() const { return waited_s_; }

 private:
  void work();

  const Dataset& set_;
  std::vector<int64_t> order_;
  int64_t batch_size_;
  int64_t num_batches_;
  SampleContext ctx_;
  std::vector<int64_t> positions_;
  size_t prefetch_;
  bool pin_memory_;
  double waited_s_ = 0.0;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<int64_t, Batch> ready_;  // built batches by index
  int64_t claimed_ = 0;             // next batch index a worker will build
  int64_t delivered_ = 0;           // next batch index next() returns
  bool stop_ = false;
  std::exception_ptr error_;  // of the first failed batch, error_batch_
  int64_t error_batch_ = 0;
  std::vector<std::thread> workers_;
};

}  // namespace quantlab::data
