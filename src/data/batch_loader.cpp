// BatchLoader: a producer thread and a bounded queue.
#include "quantlab/data/batch_loader.h"

#include <omp.h>

#include <chrono>

namespace quantlab::data {

Batch make_batch(const ImageSet& set, const int64_t* indices, int64_t count, const Preprocess& pre,
                 const Augment& augment, int64_t first) {
  auto idx = torch::from_blob(const_cast<int64_t*>(indices), {count}, torch::kLong);
  Batch b;
  auto x = set.images.index_select(0, idx);
  if (x.dim() == 3) x = x.unsqueeze(1);
  b.inputs = x.to(torch::kFloat32).div_(255.0f);
  if (pre.pad > 0) b.inputs = torch::constant_pad_nd(b.inputs, {pre.pad, pre.pad, pre.pad, pre.pad}, 0.0);
  augment_batch(b.inputs, augment, first);
  if (!pre.mean.empty()) {
    const auto c = static_cast<int64_t>(pre.mean.size());
    b.inputs.sub_(torch::tensor(pre.mean).view({1, c, 1, 1})).div_(torch::tensor(pre.std).view({1, c, 1, 1}));
  }
  b.labels = set.labels.index_select(0, idx);
  return b;
}

BatchLoader::BatchLoader(const ImageSet& set, std::vector<int64_t> order, int64_t batch_size,
                         Preprocess pre, Augment augment, size_t prefetch)
    : set_(set),
      order_(std::move(order)),
      batch_size_(batch_size),
      num_batches_((static_cast<int64_t>(order_.size()) + batch_size - 1) / batch_size),
      pre_(std::move(pre)),
      augment_(augment),
      prefetch_(std::max<size_t>(prefetch, 1)) {
  worker_ = std::thread([this] { produce(); });
}

BatchLoader::~BatchLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  changed_.notify_all();
  worker_.join();
}

void BatchLoader::produce() {
  omp_set_num_threads(1);  // this thread's own parallel regions: the training loop owns the cores
  try {
    for (int64_t b = 0; b < num_batches_; ++b) {
      const int64_t begin = b * batch_size_;
      const int64_t count = std::min<int64_t>(batch_size_, static_cast<int64_t>(order_.size()) - begin);
      Batch batch = make_batch(set_, order_.data() + begin, count, pre_, augment_, begin);
      std::unique_lock<std::mutex> lock(mutex_);
      changed_.wait(lock, [&] { return stop_ || queue_.size() < prefetch_; });
      if (stop_) return;
      queue_.push_back(std::move(batch));
      changed_.notify_all();
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
  }
  std::lock_guard<std::mutex> lock(mutex_);
  done_ = true;
  changed_.notify_all();
}

std::optional<Batch> BatchLoader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  if (queue_.empty() && !done_) {
    const auto t0 = std::chrono::steady_clock::now();
    changed_.wait(lock, [&] { return !queue_.empty() || done_; });
    waited_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  }
  if (!queue_.empty()) {
    Batch b = std::move(queue_.front());
    queue_.pop_front();
    changed_.notify_all();
    return b;
  }
  if (error_) std::rethrow_exception(error_);
  return std::nullopt;
}

}  // namespace quantlab::data
