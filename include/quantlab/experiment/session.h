// The bookkeeping of one run (the original's protocol): checkpoints after every epoch, the best
// one, periodic snapshots and a small status file, and finding the checkpoint --load names.
//   saves/last.ckpt          after every epoch ("last" is the highest epoch, never a file time)
//   saves/best.ckpt          when the best-epoch statistic improves
//   saves/epochNNNN.ckpt     every --ckpt_every epochs (NNNN = epochs completed)
//   saves/status.json        epochs done, the best epoch and its accuracy, the test accuracy once
//                            known, finished: what `quantlab list` shows
// An epoch's files are written in that order and status.json last, so status.json records the
// last epoch whose save completed; repair() finishes a save that a kill interrupted.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/experiment/logbook.h"

namespace quantlab {

// A checkpoint file of an experiment and what loading it found.
struct CheckpointInfo {
  std::string file;
  CheckpointRef ref;
  int64_t epoch = -1;  // epochs completed; -1 when unusable
  std::string error;   // why it is unusable ("" when usable)
};

class Session {
 public:
  // `best_statistic`: what picks the best epoch (after the no-validation fallback), for status.json.
  Session(Experiment& exp, const Logbook& book, int64_t ckpt_every, Statistic best_statistic);

  // Called after each epoch by the trainer. `rng_ranks`: every rank's generator state (data
  // parallel; empty for one process).
  void on_epoch(const EpochRecord& r, const TrainingState& state, const std::vector<torch::Tensor>& rng_ranks = {});

  // Records the final test in status.json: `what` names the weights ("best", "last", "epoch 12").
  void on_test(const EpochStats& test, const std::string& what, int64_t epoch);

  // Completes the save of the epoch of `last` (loaded from saves/last.ckpt) when a kill stopped it
  // before status.json: rewrites best.ckpt when that epoch was the best, the epoch snapshot when
  // it is due and missing, and status.json. Returns what it rewrote (empty when nothing was amiss).
  std::vector<std::string> repair(const Checkpoint& last);

  // The file `ref` names in `book`; throws Error naming it and listing the checkpoints that exist
  // when it does not.
  static std::string checkpoint_file(const Logbook& book, const CheckpointRef& ref);

  // Every checkpoint file of `book` (best, last, epochNNNN), loaded to learn its epoch.
  static std::vector<CheckpointInfo> inventory(const Logbook& book);

  // "best.ckpt, last.ckpt, epoch0002.ckpt" or "none".
  static std::string available(const Logbook& book);

  // Reads saves/status.json (an empty object when there is none or it is unreadable).
  static nlohmann::json status(const Logbook& book);

 private:
  void write_status(const TrainingState& state);
  Experiment& exp_;
  const Logbook& book_;
  int64_t ckpt_every_;
  Statistic best_statistic_;
  nlohmann::json best_;         // the best epoch's accuracies, carried across launches through status.json
  double train_seconds_ = 0.0;  // the epochs' wall time so far, carried the same way
  nlohmann::json test_;
};

}  // namespace quantlab
