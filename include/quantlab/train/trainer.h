// The training loop of one experiment. Each epoch, as the original: thermostat step, train,
// validate, lr step, and the best epoch kept by protocol.update_metric (checked every epoch).
// Metrics are classification errors in percent (lower is better); the training metric is measured
// every protocol.metric_period epochs (0: never), as the original's. Without a validation set the
// best epoch and ReduceLROnPlateau use the training counterpart of the statistic they name, and
// the trainer says so once. After each epoch a hook receives the record (the bookkeeping saves
// checkpoints there).
// Data parallel (TrainerOptions::comm): what differs from one process lives behind
// dist::Parallelism (dist/parallelism.h: shares of batches and evaluations, averaged gradients,
// shared buffers, sums over ranks, the agreed stop), so every rank holds the same weights,
// statistics and decisions, and the loop reads the same for both.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <vector>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "quantlab/dist/parallelism.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/statistic.h"
#include "quantlab/train/training_state.h"
#include "quantlab/util/progress.h"

namespace quantlab::train {

struct TrainerOptions {
  int64_t max_batches_per_epoch = -1;                      // < 0: all (tests use a few)
  const std::atomic<int>* stop = nullptr;                  // non-zero (a signal number): stop between batches
  int64_t log_every = 0;                                   // call on_step every N training batches (0: never)
  std::function<void(int64_t step, double loss)> on_step;  // step counts batches from the start
  std::ostream* out = nullptr;                             // epoch lines and notes (default std::cout)
  dist::Communicator* comm = nullptr;  // data-parallel training with these ranks (null: one process)
};

class Trainer {
 public:
  using EpochHook = std::function<void(const EpochRecord&)>;

  Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options = {});

  // Trains epochs state().epoch + 1 .. last; prints a summary line per epoch and calls `on_epoch`.
  std::vector<EpochRecord> fit(int64_t last, const EpochHook& on_epoch = {});

  EpochStats train_epoch(int64_t epoch, bool track_metric = true);  // epoch: 1-based
  EpochStats evaluate(const data::Dataset& set, const std::vector<int64_t>& indices, const std::string& label);
  EpochStats test();

  // The statistic that picks the best epoch, and the one ReduceLROnPlateau reads (if any), after
  // the no-validation fallback.
  Statistic best_statistic() const { return best_stat_; }

  const TrainingState& state() const { return state_; }
  void set_state(const TrainingState& s) { state_ = s; }

 private:
  EpochStats run(data::BatchLoader& loader, bool train, bool track_metric, const std::string& label, int64_t epoch,
                 int64_t steps, int64_t examples);
  data::LoaderOptions loader_options() const;
  bool update_best(const EpochRecord& r);
  std::ostream& out() const;

  Experiment& exp_;
  const data::ProblemData& data_;
  Progress& progress_;
  TrainerOptions options_;
  std::vector<int64_t> test_indices_;
  TrainingState state_;
  Statistic best_stat_;
  std::unique_ptr<dist::Parallelism> par_;  // a single process, or data-parallel ranks
  std::string batch_norm_1d_;               // its first BatchNorm1d: no training batch of one image
  Statistic step_stat_;
  bool has_step_stat_ = false;
};

}  // namespace quantlab::train
