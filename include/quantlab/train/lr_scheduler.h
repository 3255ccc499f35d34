// Learning-rate schedules from `treat.lr_scheduler` ({class, params, step_metric}). Stepped once
// after each epoch; all but ReduceLROnPlateau are pure functions of the epoch count.
//   HandScheduler(schedule: {"epoch": factor, ...})   lr0 * factor of the largest epoch <= e
//   StepLR(step_size, gamma=0.1)   MultiStepLR(milestones, gamma=0.1)
//   CosineAnnealingLR(T_max, eta_min=0)  ("CosineAnnealing" too)
//   ReduceLROnPlateau(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
//                     cooldown=0, min_lr=0, eps=1e-8), stepped with the epoch's metric named by
//                     step_metric (train_loss, train_metric, valid_loss or valid_metric).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quantlab/config/json_node.h"

namespace quantlab {

class LrScheduler {
 public:
  virtual ~LrScheduler() = default;
  // The learning rate for epoch `epoch` (0-based) given the one now and the metric of the
  // epoch just finished.
  virtual double lr_for_epoch(int64_t epoch, double current_lr, double metric) = 0;
  // What a checkpoint keeps of the scheduler (empty for the pure functions of the epoch).
  virtual std::vector<double> state() const { return {}; }
  virtual void load_state(const std::vector<double>& state);
  // Name of the epoch statistic this scheduler reads (empty when none).
  const std::string& step_metric() const { return step_metric_; }

 protected:
  std::string step_metric_;
  friend std::unique_ptr<LrScheduler> make_lr_scheduler(const JsonNode&, double);
};

// `spec` may be absent (null): the rate stays constant. `base_lr` is the optimizer's.
std::unique_ptr<LrScheduler> make_lr_scheduler(const JsonNode& spec, double base_lr);

}  // namespace quantlab
