// The training loop of one experiment. Each epoch, as the original: thermostat step, train,
// validate, lr step; the metric is the classification error in percent (lower is better). After
// each epoch a hook receives the record (the bookkeeping saves checkpoints there).
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/split.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "quantlab/util/progress.h"

namespace quantlab {

struct EpochStats {
  double loss = 0.0;    // mean over samples
  double metric = 0.0;  // classification error, %
  int64_t samples = 0;
  double data_wait_s = 0.0;  // time the loop waited for batches (0 when the loader keeps ahead)
  double accuracy() const { return 100.0 - metric; }
};

struct EpochRecord {
  int64_t epoch = 0;  // 0-based
  EpochStats train, valid;
  double lr = 0.0;  // the rate the epoch trained with
  double seconds = 0.0;
  bool best = false;  // improved protocol.update_metric
};

// What the loop itself carries from epoch to epoch (saved in checkpoints).
struct TrainingState {
  int64_t epoch = 0;        // epochs completed = index of the next epoch to train
  int64_t best_epoch = -1;  // 0-based epoch with the best protocol.update_metric, -1 before any
  double best_value = 0.0;
  std::map<std::string, double> stats;  // the last epoch's train/valid loss and metric
};

// Thrown between two batches when the stop flag is raised (SIGINT): the epoch is abandoned.
class Interrupted : public Error {
 public:
  explicit Interrupted(int64_t epoch) : Error("interrupted during epoch " + std::to_string(epoch + 1)), epoch(epoch) {}
  int64_t epoch;  // 0-based, not completed
};

struct TrainerOptions {
  int64_t max_batches_per_epoch = -1;         // < 0: all (tests use a few)
  const std::atomic<bool>* stop = nullptr;    // checked between batches
  int64_t log_every = 0;                      // call on_step every N training batches (0: never)
  std::function<void(int64_t step, double loss)> on_step;  // step counts batches from the start
};

class Trainer {
 public:
  using EpochHook = std::function<void(const EpochRecord&)>;

  Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options = {});

  // Trains epochs state().epoch .. last-1; prints a summary line per epoch and calls `on_epoch`.
  std::vector<EpochRecord> fit(int64_t last, const EpochHook& on_epoch = {});

  EpochStats train_epoch(int64_t epoch);
  EpochStats evaluate(const data::Dataset& set, const std::vector<int64_t>& indices, const std::string& label);
  EpochStats test();

  const TrainingState& state() const { return state_; }
  void set_state(const TrainingState& s) { state_ = s; }

 private:
  EpochStats run(data::BatchLoader& loader, bool train, const std::string& label, int64_t epoch);
  data::LoaderOptions loader_options() const;
  bool update_best(EpochRecord& r);

  Experiment& exp_;
  const data::ProblemData& data_;
  Progress& progress_;
  TrainerOptions options_;
  std::vector<int64_t> test_indices_;
  TrainingState state_;
};

}  // namespace quantlab
