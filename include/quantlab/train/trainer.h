// The training loop of one experiment. Each epoch, as the original: thermostat step, train,
// validate, lr step; the metric is the classification error in percent (lower is better).
// The weights of the best epoch (by protocol.update_metric) are kept in memory, so the test set
// can be evaluated with them at the end.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/progress.h"

namespace quantlab {

struct EpochStats {
  double loss = 0.0;    // mean over samples
  double metric = 0.0;  // classification error, %
  int64_t samples = 0;
  double accuracy() const { return 100.0 - metric; }
};

struct EpochRecord {
  int64_t epoch = 0;  // 0-based
  EpochStats train, valid;
  double lr = 0.0;
  double seconds = 0.0;
};

struct TrainerOptions {
  int64_t max_batches_per_epoch = -1;  // < 0: all (tests use a few)
};

class Trainer {
 public:
  Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options = {});

  // Runs epochs [first, last), one record each; prints a summary line per epoch.
  std::vector<EpochRecord> fit(int64_t first, int64_t last);

  EpochStats train_epoch(int64_t epoch);
  EpochStats evaluate(const data::ImageSet& set, const std::vector<int64_t>& indices, const std::string& label);
  EpochStats test();

  // Best epoch so far by protocol.update_metric (-1 before the first), and its statistic.
  int64_t best_epoch() const { return best_epoch_; }
  double best_value() const { return best_value_; }
  // Loads the weights of the best epoch into the network.
  void restore_best();

 private:
  void remember_best(int64_t epoch, const EpochRecord& r);
  EpochStats run(data::BatchLoader& loader, bool train, const std::string& label);

  Experiment& exp_;
  const data::ProblemData& data_;
  Progress& progress_;
  TrainerOptions options_;
  std::vector<int64_t> test_indices_;
  int64_t best_epoch_ = -1;
  double best_value_ = 0.0;
  std::map<std::string, torch::Tensor> best_state_;
};

}  // namespace quantlab
