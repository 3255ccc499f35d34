// What a data-parallel run does differently from a single process, behind one interface, so the
// training loop (train/trainer.h) reads the same for both. A single process is its trivial case:
// nothing to agree on, nothing to share.
// Data parallel: each rank trains on its share of every batch (data::rank_shard), gradients are
// averaged over the ranks (GradientSync), batch-norm buffers follow rank 0 before each step,
// evaluations are split between the ranks and every sum is taken over them, and stopping is
// decided together between two training steps.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace quantlab::dist {

class Communicator;

class Parallelism {
 public:
  virtual ~Parallelism() = default;

  // Whether there are other ranks: then every rank takes every training step, even one without
  // samples of its own (the step's collectives), and evaluations do not stop early.
  virtual bool distributed() const { return false; }
  // What all ranks agree on between two training steps, from each rank's own: the stop signal (a
  // signal number, 0: go on) and the first step (1-based; 0: none) whose training loss was not
  // finite on any rank (then every rank stops with that, naming that step, not with a rank gone
  // from the collectives).
  struct Agreement {
    int stop = 0;
    int64_t diverged_step = 0;
  };
  virtual Agreement agree(int stop, int64_t diverged_step) { return {stop, diverged_step}; }
  // `values` summed over the ranks, in place.
  virtual void sum(double* /*values*/, size_t /*n*/) {}

  // This rank's part of an epoch's training order of batches of `batch`, and its batch size.
  virtual std::vector<int64_t> train_share(const std::vector<int64_t>& order, int64_t /*batch*/) { return order; }
  virtual int64_t train_batch(int64_t batch) const { return batch; }
  // Where each of this rank's batches starts in the epoch's order of `n` samples (augmentation
  // draws by position); empty: its own positions, which are the epoch's.
  virtual std::vector<int64_t> train_positions(int64_t /*n*/, int64_t /*batch*/) const { return {}; }
  // This rank's part of an evaluation's images.
  virtual std::vector<int64_t> eval_share(const std::vector<int64_t>& indices) { return indices; }

  // Before an evaluation: every rank evaluates rank 0's network, the one its checkpoint saves (each
  // rank's last training step updated its own batch-norm running statistics).
  virtual void begin_evaluation() {}
  // Before a training step's forward pass (rank 0's buffers, the gradient buckets armed) and after
  // its backward pass, or instead of it for a rank without samples (the gradients averaged).
  virtual void begin_step() {}
  virtual void finish_step() {}
  // The factor of this rank's loss in a step of `global` samples of which it has `n`: the ranks'
  // gradients are averaged, so a mean loss weighs by the rank's share, a summed loss by the ranks.
  virtual double loss_weight(int64_t /*n*/, int64_t /*global*/, bool /*summed*/) const { return 1.0; }
};

std::unique_ptr<Parallelism> single_process();
// `net`'s gradients averaged and its buffers shared over the ranks of `comm` (both outlive it).
std::unique_ptr<Parallelism> data_parallel(Communicator& comm, torch::nn::Module& net);

}  // namespace quantlab::dist
