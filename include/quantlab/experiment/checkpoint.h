// One versioned checkpoint file with everything an exact resume needs: network parameters and
// buffers by name, optimizer state, learning rate and lr-scheduler state, the thermostat's clock,
// the epoch, the tracked statistics, and every RNG state (libtorch's CPU and CUDA generators; the
// data split and shuffles are pure functions of the seed and the epoch).
// The file is torch's pickle format: Python reads it with torch.load() as a dict whose "net" entry
// maps "phi1_fc.weight", "phi1_bn.running_mean", ... to tensors. A checksum over the contents is
// verified on load; files are written to a temporary name, flushed and renamed into place.
// Version 2 counts best_epoch from 1 like every other epoch; version 1 files (0-based) still load.
// A file re-saved from Python (torch.save(torch.load(f))) loads; one whose "checksum" entry was
// removed loads when its contents are complete, with a note saying so. A checkpoint of the original
// QuantLab loads too (Checkpoint::original).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "quantlab/train/experiment.h"
#include "quantlab/train/training_state.h"
#include "quantlab/util/error.h"

namespace quantlab::experiment {

constexpr int64_t kCheckpointVersion = 2;

struct Checkpoint {
  std::string net_class;
  std::map<std::string, torch::Tensor> net;
  torch::Tensor optimizer;      // uint8: the optimizer's serialize archive
  std::string optimizer_class;  // its class ("" in checkpoints written before 2026-12-06)
  double lr = 0.0;
  double first_lr = 0.0;  // the rate the run's config gave its first epoch (0: not recorded)
  std::vector<double> lr_scheduler;
  std::string
      lr_schedule;  // the schedule lr_scheduler is the state of ("" before 2026-12-06; train::schedule_identity)
  int64_t thermostat_clock = 0;
  train::TrainingState state;
  torch::Tensor rng_cpu;                // uint8 generator state
  std::vector<torch::Tensor> rng_cuda;  // one per device
  // Data parallel: every rank's CPU generator state, in rank order (empty for one process); a
  // resume with as many processes restores each rank's, so it continues bit-identically.
  std::vector<torch::Tensor> rng_ranks;
  // Data parallel on CUDA: every rank's generator of its own GPU, in rank order (rng_cuda holds
  // rank 0's process's only, which no other rank drew from).
  std::vector<torch::Tensor> rng_cuda_ranks;
  std::vector<std::string> notes;  // what loading found worth telling the user
  // A checkpoint of the original QuantLab ({"indiv": {"net": ...}, "treat": {..., "i_epoch"},
  // "protocol": {"metrics"}}): its network tensors, epoch, thermostat clock and statistics only,
  // enough to test or transfer it; training it on needs QuantLab's own checkpoint.
  bool original = false;
};

// The network's parameters and buffers by name.
std::map<std::string, torch::Tensor> named_state(torch::nn::Module& net);

// Takes everything from a live experiment / puts it back (bit-exact resume). The optimizer's
// settings (its rate, the schedule's rate where the schedule is a function of the epoch, weight
// decay, betas, ...) are the experiment's config's, so that a config edited before a resume, or a
// branch's --set, takes effect; with the config unchanged they are the checkpoint's. Returns what
// is worth telling the user (a rate that differs from the checkpoint's).
Checkpoint capture(train::Experiment& exp, const train::TrainingState& state);
// An optimizer's state and settings as a checkpoint keeps them (libtorch's archive, as bytes).
torch::Tensor optimizer_archive(torch::optim::Optimizer& optimizer);
// `optimizer` false: the weights, the thermostat's clock and the generators only, for evaluation
// (a test, an export), which needs no optimizer, even one of another class than the config's.
std::vector<std::string> restore(train::Experiment& exp, const Checkpoint& c, bool optimizer = true);

// The checkpoint's optimizer does not fit the experiment's (another class, or a damaged archive):
// a branch starts a new one instead.
class OptimizerMismatch : public Error {
 public:
  using Error::Error;
};

void save_checkpoint(const std::string& file, const Checkpoint& c);
// Throws IoError naming the file when it is missing, unreadable, of another format or version,
// incomplete, or its checksum does not match.
Checkpoint load_checkpoint(const std::string& file);

}  // namespace quantlab::experiment
