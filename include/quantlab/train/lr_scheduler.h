// Learning-rate schedules from `treat.lr_scheduler` ({class, params, step_metric}), by PyTorch's
// class names with PyTorch's parameter names, defaults and semantics, stepped once after each
// epoch as the original steps them (so CyclicLR's and OneCycleLR's steps are epochs):
//   HandScheduler(schedule: {"epoch": factor})  the original's: lr0 * factor of the largest epoch <= e
//   StepLR(step_size, gamma=0.1)   MultiStepLR(milestones, gamma=0.1)   ExponentialLR(gamma)
//   CosineAnnealingLR(T_max, eta_min=0)  ("CosineAnnealing" too)
//   CyclicLR(base_lr, max_lr, step_size_up=2000, step_size_down=step_size_up, mode="triangular" |
//            "triangular2" | "exp_range", gamma=1, scale_mode (by mode), cycle_momentum=true,
//            base_momentum=0.8, max_momentum=0.9)
//   OneCycleLR(max_lr, total_steps | epochs (x steps_per_epoch=1), pct_start=0.3,
//              anneal_strategy="cos" | "linear", cycle_momentum=true, base_momentum=0.85,
//              max_momentum=0.95, div_factor=25, final_div_factor=1e4, three_phase=false)
//   ReduceLROnPlateau(mode="min", factor=0.1, patience=10, threshold=1e-4, threshold_mode="rel",
//                     cooldown=0, min_lr=0, eps=1e-8), stepped with the epoch's statistic named by
//                     step_metric (train_loss, train_metric, valid_loss or valid_metric).
// A schedule sets the optimizer's rate from the first epoch on (CyclicLR starts at base_lr,
// OneCycleLR at max_lr / div_factor, HandScheduler at the factor of epoch 0), and the cycling ones
// also its momentum (SGD's and RMSprop's momentum, Adam's and AdamW's beta1), as PyTorch does.
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

namespace quantlab::train {

class LrScheduler {
 public:
  virtual ~LrScheduler() = default;
  // The rate of the first epoch, given the optimizer's configured rate.
  virtual double initial_lr(double optimizer_lr) const { return optimizer_lr; }
  // The rate after `epochs_done` epochs (>= 1, the epoch just finished), given the rate now and
  // the statistic of that epoch (for the schedules that read one).
  virtual double lr_for_epoch(int64_t epochs_done, double current_lr, double metric) = 0;
  // The rate after `epochs_done` epochs as the config alone gives it, given the first epoch's
  // (initial_lr's): for the schedules that are functions of the epoch, what lr_for_epoch returns
  // after that epoch; none for those that follow a statistic (their rate is in their history).
  virtual std::optional<double> lr_at(int64_t epochs_done, double first_lr) const = 0;
  // The momentum after `epochs_done` epochs (0: the first epoch's), for the schedules that cycle it.
  virtual std::optional<double> momentum_at(int64_t epochs_done) const {
    (void)epochs_done;
    return std::nullopt;
  }
  // What a checkpoint keeps of the scheduler (empty for the pure functions of the epoch).
  virtual std::vector<double> state() const { return {}; }
  virtual void load_state(const std::vector<double>& state);

  // The statistic this scheduler reads (none for the pure schedules).
  const std::optional<Statistic>& step_metric() const { return step_metric_; }
  void set_step_metric(Statistic s) { step_metric_ = s; }

 private:
  std::optional<Statistic> step_metric_;
};

// What a schedule is built for: the optimizer's configured rate and the run's length.
struct ScheduleContext {
  double base_lr = 1e-3;
  int64_t max_epoch = 1;
};

// `spec` may be absent (null): the rate stays constant.
std::unique_ptr<LrScheduler> make_lr_scheduler(const config::JsonNode& spec, const ScheduleContext& context);

// What a checkpoint records of the schedule whose state it holds: "none", the class, and for one
// that follows a statistic the statistic and mode its counters compare ("ReduceLROnPlateau of
// valid_metric, mode min"): a resume whose config has another starts the config's anew.
std::string schedule_identity(const config::JsonNode& spec);

}  // namespace quantlab::train
