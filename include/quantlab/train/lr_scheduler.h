// Learning-rate schedules from `treat.lr_scheduler` ({class, params, step_metric}), with PyTorch's
// names, parameters and defaults. Stepped once after each epoch, as the original; all but
// ReduceLROnPlateau are pure functions of the epoch count.
//   HandScheduler(schedule: {"epoch": factor, ...})   lr0 * factor of the largest epoch <= e
//   StepLR(step_size, gamma=0.1)   MultiStepLR(milestones, gamma=0.1)   ExponentialLR(gamma)
//   CosineAnnealingLR(T_max, eta_min=0)  ("CosineAnnealing" too)
//   ReduceLROnPlateau(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
//                     cooldown=0, min_lr=0, eps=1e-8), stepped with the epoch's statistic named by
//                     step_metric (train_loss, train_metric, valid_loss or valid_metric).
// Every rate a schedule can produce is positive: factors, gammas and floors are checked when the
// config is read, as the optimizer's lr is.
// To add a schedule: a factory in lr_scheduler.cpp and one `add()` line in its registry, saying
// whether it reads a statistic.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/train/statistic.h"

namespace quantlab {

class LrScheduler {
 public:
  virtual ~LrScheduler() = default;
  // The learning rate after epoch `epoch` (1-based, just finished) given the rate now and the
  // statistic of that epoch (for the schedules that read one).
  virtual double lr_for_epoch(int64_t epoch, double current_lr, double metric) = 0;
  // What a checkpoint keeps of the scheduler (empty for the pure functions of the epoch).
  virtual std::vector<double> state() const { return {}; }
  virtual void load_state(const std::vector<double>& state);

  // The statistic this scheduler reads (none for the pure schedules).
  const std::optional<Statistic>& step_metric() const { return step_metric_; }
  void set_step_metric(Statistic s) { step_metric_ = s; }

 private:
  std::optional<Statistic> step_metric_;
};

// `spec` may be absent (null): the rate stays constant. `base_lr` is the optimizer's.
std::unique_ptr<LrScheduler> make_lr_scheduler(const JsonNode& spec, double base_lr);

}  // namespace quantlab
