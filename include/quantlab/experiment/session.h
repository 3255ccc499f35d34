// The bookkeeping of one run (the original's protocol): what it saves when, in the experiment's
// saves/ folder (saves.h names the files): last.ckpt after every epoch, best.ckpt when the
// best-epoch statistic improves, epochNNNN.ckpt every --ckpt_every epochs, and status.json.
// An epoch's files are written in that order and status.json last, so status.json records the
// last epoch whose save completed; repair() finishes a save that a kill interrupted.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/train/training_state.h"

namespace quantlab::experiment {

class Session {
 public:
  // `best_statistic`: what picks the best epoch (after the no-validation fallback), for status.json.
  Session(train::Experiment& exp, const Logbook& book, int64_t ckpt_every, train::Statistic best_statistic);

  // Called after each epoch by the trainer. `rng_ranks`: every rank's generator state (data
  // parallel; empty for one process).
  void on_epoch(const train::EpochRecord& r, const train::TrainingState& state,
                const std::vector<torch::Tensor>& rng_ranks = {},
                const std::vector<torch::Tensor>& rng_cuda_ranks = {});

  // Records in status.json that training diverged in `epoch` (its message), so that `list` and
  // `compare` say so rather than "stopped" or "not started"; the next epoch's status clears it.
  void on_diverged(int64_t epoch, const std::string& message);

  // Records the final test in status.json: `what` names the weights ("best", "last", "epoch 12").
  void on_test(const train::EpochStats& test, const std::string& what, int64_t epoch);

  // Completes the save of the epoch of `last` (loaded from saves/last.ckpt) when a kill stopped it
  // before status.json: rewrites best.ckpt when that epoch was the best, the epoch snapshot when
  // it is due and missing, and status.json. Returns what it rewrote (empty when nothing was amiss).
  std::vector<std::string> repair(const Checkpoint& last);

  // A branch's first moment, so that a branch stopped before its first epoch resumes there and its
  // inherited best is a file of its own: last.ckpt = `c`, best.ckpt = a copy of `best` (a file of
  // `parent`, "" when none), status.json with the parent's record of that best epoch.
  void start_branch(const Saves& parent, const Checkpoint& c, const std::string& best);

 private:
  void write_status(const train::TrainingState& state);
  train::Experiment& exp_;
  Saves saves_;
  int64_t ckpt_every_;
  train::Statistic best_statistic_;
  nlohmann::json best_;         // the best epoch's accuracies, carried across launches through status.json
  double train_seconds_ = 0.0;  // the epochs' wall time so far, carried the same way
  nlohmann::json test_;
};

}  // namespace quantlab::experiment
