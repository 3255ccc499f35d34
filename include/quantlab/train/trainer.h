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
#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "quantlab/dist/parallelism.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/statistic.h"
#include "quantlab/util/error.h"
#include "quantlab/util/progress.h"

namespace quantlab {

// One pass over a set. With no sample seen, every value is NaN.
struct EpochStats {
  double loss = NAN;    // mean over samples
  double metric = NAN;  // top-1 classification error, %; NaN when not measured
  double top5 = NAN;    // top-5 error, %, for problems that report it (ImageNet); else NaN
  int64_t samples = 0;
  double data_wait_s = 0.0;  // time the loop waited for batches (0 when the loader keeps ahead)
  double accuracy() const { return 100.0 - metric; }
  double top5_accuracy() const { return 100.0 - top5; }
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  EpochStats train, valid;
  double lr = 0.0;  // the rate the epoch trained with
  double seconds = 0.0;
  bool best = false;  // improved the best-epoch statistic
};

// What the loop itself carries from epoch to epoch (saved in checkpoints).
struct TrainingState {
  int64_t epoch = 0;        // epochs completed
  int64_t best_epoch = 0;   // 1-based epoch with the best statistic; 0 before any
  double best_value = NAN;  // its value
  EpochStatistics stats;    // the last epoch's four statistics
};

// Thrown between two batches when the stop flag is raised (SIGINT, SIGTERM): the epoch is abandoned.
class Interrupted : public Error {
 public:
  Interrupted(int64_t epoch, int signal)
      : Error("interrupted during epoch " + std::to_string(epoch)), epoch(epoch), signal(signal) {}
  int64_t epoch;  // 1-based, not completed
  int signal;     // the flag's value: the signal that raised it
};

// Thrown when a training step's loss is NaN or infinite: the weights that step produced are no
// longer usable, and the epoch is abandoned before anything is saved. On the CPU every step is
// checked as it ends; on a GPU the check rides on the reads the loop makes anyway (progress lines,
// the epoch's end), so the step named is exact but the stop may come a few steps later.
class Diverged : public Error {
 public:
  Diverged(int64_t epoch, int64_t step, int64_t steps, double loss)
      : Error("epoch " + std::to_string(epoch) + ", step " + std::to_string(step) + " of " + std::to_string(steps) +
              ": the training loss is " + (std::isnan(loss) ? "NaN" : "infinite") +
              "; the training diverged (a learning rate too high, a schedule or optimizer setting out of range, "
              "a loss whose weights are all zero)"),
        epoch(epoch),
        step(step) {}
  int64_t epoch;  // 1-based, not completed
  int64_t step;   // 1-based step of the epoch whose loss was not finite
};

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
  Statistic step_stat_;
  bool has_step_stat_ = false;
};

// "loss 0.1234 acc 95.10%" (with "top5 ..%" when measured; "-" for what was not measured).
std::string stats_text(const EpochStats& s);

}  // namespace quantlab
