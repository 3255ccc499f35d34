// What a run shows in TensorBoard (`tensorboard --logdir=<Problem>/logs/expNNN/`), in stats/:
//   at creation:     the experiment's config as text ("config")
//   every epoch:     train_loss, train_metric, valid_loss, valid_metric, learning_rate, and each
//                    ANA module's noise (noise/<module>/sigma_forward, .../sigma_backward, .../mu)
//   every validation: a weight histogram of every quantized layer (weights/<layer>) and the
//                    fraction of its weights on each level (levels/<layer>/<level>)
//   every N batches: train_loss_step (--log_every=N)
// Epoch events use the 1-based epoch as step; a resumed run writes a session restart at the first
// new epoch, so TensorBoard shows one curve. Files are flushed after every epoch.
#pragma once

#include <string>

#include "quantlab/log/event_writer.h"
#include "quantlab/train/trainer.h"

namespace quantlab {

class TrainingLog {
 public:
  TrainingLog(const std::string& stats_dir, Experiment& exp);

  // `state.epoch == 0`: a new run (the config as text); else a resume after that many epochs.
  void on_start(const TrainingState& state);
  void on_epoch(const EpochRecord& r);
  void on_step(int64_t step, double loss);
  void flush() { writer_.flush(); }

 private:
  EventWriter writer_;
  Experiment& exp_;
};

}  // namespace quantlab
