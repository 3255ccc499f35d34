// Data-parallel gradient averaging, as PyTorch's DistributedDataParallel does it: the parameters'
// gradients are all-reduced in buckets (the first about 1 MiB, the others about 25 MiB) taken in
// the reverse order of the parameters, which is about the order the backward pass produces them;
// each bucket is launched as soon as its last gradient exists, so communication overlaps the rest
// of the backward pass. Buckets are launched in the same order on every rank.
// Also the state every rank must share: parameters and buffers broadcast from rank 0 (after a
// start or a resume), and buffers again before each training forward pass (batch-norm running
// statistics, as DDP's broadcast_buffers; the batch statistics themselves stay per rank).
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "quantlab/dist/communicator.h"

namespace quantlab::dist {

class GradientSync {
 public:
  GradientSync(torch::nn::Module& net, Communicator& comm, size_t bucket_bytes = 25u << 20,
               size_t first_bucket_bytes = 1u << 20);
  ~GradientSync();  // removes its hooks from the parameters
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  // Before the backward pass of a training step.
  void begin_step();
  // After it (or instead of it, for a rank without samples this step: its gradients count as 0):
  // waits for every bucket and writes the sum over ranks, divided by the number of ranks, into each
  // parameter's gradient.
  void finish_step();

  size_t num_buckets() const { return buckets_.size(); }
  size_t bytes_per_step() const { return bytes_; }
  double wait_seconds() const { return wait_s_; }  // spent in finish_step, waiting for the network

 private:
  struct Bucket {
    torch::Tensor flat;            // the bucket's gradients, side by side
    std::vector<size_t> params;    // indices into params_
    std::vector<int64_t> offsets;  // of each parameter in `flat`
    size_t ready = 0;
    std::unique_ptr<Communicator::Pending> work;
  };
  void on_gradient(size_t param, const torch::Tensor& grad);
  void launch_ready();

  Communicator& comm_;
  std::vector<torch::Tensor> params_;
  std::vector<unsigned> hooks_;
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<std::vector<bool>> have_;           // bucket -> slot -> gradient arrived this step
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool active_ = false;
  size_t bytes_ = 0;
  double wait_s_ = 0.0;
};

// Rank 0's parameters and buffers on every rank (after construction, a restore or a transfer).
void broadcast_state(torch::nn::Module& net, Communicator& comm);
// Rank 0's buffers on every rank.
void broadcast_buffers(torch::nn::Module& net, Communicator& comm);

}  // namespace quantlab::dist
