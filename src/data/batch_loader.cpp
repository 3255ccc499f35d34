// BatchLoader: worker threads, a bounded window of batches, in-order delivery.
#include "quantlab/data/batch_loader.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <string>

namespace quantlab::data {

BatchLoader::BatchLoader(const Dataset& set, std::vector<int64_t> order, int64_t batch_size, SampleContext ctx,
                         LoaderOptions options, std::vector<int64_t> positions)
    : set_(set),
      order_(std::move(order)),
      batch_size_(batch_size),
      // (n - 1) / b + 1: n + b - 1 overflows for a batch size near 2^63 (and measured nothing)
      num_batches_(order_.empty() ? 0 : (static_cast<int64_t>(order_.size()) - 1) / batch_size + 1),
      ctx_(ctx),
      positions_(std::move(positions)),
      pin_memory_(options.pin_memory) {
  if (!positions_.empty() && static_cast<int64_t>(positions_.size()) != num_batches_)
    throw std::invalid_argument("BatchLoader: " + std::to_string(positions_.size()) + " positions for " +
                                std::to_string(num_batches_) + " batches");
  const int workers = std::max(options.workers, 1);
  prefetch_ = std::max<size_t>(options.prefetch, static_cast<size_t>(workers));
  for (int w = 0; w < workers; ++w) workers_.emplace_back([this] { work(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  for (auto& t : workers_) t.join();
}

void BatchLoader::work() {
  omp_set_num_threads(1);  // this thread's own parallel regions: the training loop owns the cores
  for (;;) {
    int64_t b;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] {
        return stop_ || error_ || claimed_ >= num_batches_ || claimed_ < delivered_ + static_cast<int64_t>(prefetch_);
      });
      if (stop_ || error_ || claimed_ >= num_batches_) return;
      b = claimed_++;
    }
    try {
      const int64_t begin = b * batch_size_;
      const int64_t count = std::min<int64_t>(batch_size_, static_cast<int64_t>(order_.size()) - begin);
      const int64_t first = positions_.empty() ? begin : positions_[static_cast<size_t>(b)];
      Batch batch = set_.make_batch(order_.data() + begin, count, first, ctx_);
      if (pin_memory_) {
        batch.inputs = batch.inputs.pin_memory();
        batch.labels = batch.labels.pin_memory();
      }
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(b, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_ || b < error_batch_) {
        error_ = std::current_exception();
        error_batch_ = b;
      }
    }
    changed_.notify_all();
  }
}

std::optional<Batch> BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (delivered_ >= num_batches_) return std::nullopt;
  // Batches before a failed one are still delivered; the error comes in its place.
  auto failed = [&] { return error_ && error_batch_ <= delivered_; };
  auto ready = [&] { return failed() || ready_.count(delivered_) > 0; };
  if (!ready()) {
    const auto t0 = std::chrono::steady_clock::now();
    changed_.wait(lock, ready);
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (failed()) std::rethrow_exception(error_);
  auto it = ready_.find(delivered_);
  Batch b = std::move(it->second);
  ready_.erase(it);
  ++delivered_;
  changed_.notify_all();
  return b;
}

}  // namespace quantlab::data
