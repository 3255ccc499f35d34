// The data set interface the batch loader draws from. A data set turns a list of sample indices
// into a batch; whatever randomness it applies (augmentation) is a pure function of
// (seed, epoch, position in the epoch's order), so batches can be built by any number of worker
// threads in any order and a resumed run sees exactly the same batches.
//   Batch.inputs: float [B, C, H, W]   Batch.labels: int64 [B]
// B may be smaller than the number of indices asked for when a sample cannot be read (a corrupt
// image file is reported once and left out).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace quantlab::data {

struct Batch {
  torch::Tensor inputs;
  torch::Tensor labels;
};

struct SampleContext {
  bool train = false;  // training batches get the data set's augmentation, if it has one
  uint64_t seed = 0;
  int64_t epoch = 0;
};

class Dataset {
 public:
  virtual ~Dataset() = default;
  virtual int64_t size() const = 0;
  // Samples indices[0 .. count); `first` is the position of indices[0] in the epoch's order.
  // Must be safe to call from several threads at once.
  virtual Batch make_batch(const int64_t* indices, int64_t count, int64_t first, const SampleContext& ctx) const = 0;
  // The label of every sample (int64 [size()]), for the checks made before training.
  virtual torch::Tensor labels() const = 0;
  // Where sample `i` comes from (its label file, or its image file), for messages.
  virtual std::string source(int64_t i) const = 0;
  // Where sample `i`'s input comes from (its image file), for messages about shapes.
  virtual std::string input_source(int64_t i) const { return source(i); }
  // Worker threads worth running by default on `cores` cores (in-memory sets need one).
  virtual int default_workers(int cores) const {
    (void)cores;
    return 1;
  }
};

}  // namespace quantlab::data
