// What a run shows in TensorBoard (`tensorboard --logdir=<Problem>/logs/expNNN/`), in stats/.
// The original's tags, so dashboards and scripts built on its runs keep working:
//   at creation:      description, indiv, treat, protocol (text: each config section as Python's
//                     str() prints it, as the original's add_text(k, str(v)))
//   every epoch:      train_loss, train_metric, valid_loss, valid_metric (skipped when not
//                     measured), learning_rate
//   every validation: a histogram of every weight layer's real-valued weights, <layer>_w
// and QuantLab's, in addition:
//   at creation:      config (the whole config.json as text)
//   every epoch:      valid_metric_top5 (problems with a top-5 meter: ImageNet); each ANA
//                     module's noise (noise/<module>/sigma_forward, .../sigma_backward, .../mu)
//   every validation: weights/<layer> histograms and the fraction of each quantized layer's
//                     weights on each level (levels/<layer>/<level>)
//   every N batches:  train_loss_step (--log_every=N), in stats/steps/ (a run of its own: its
//                     steps count batches, and TensorBoard's restart purge works per run)
// Epoch events use the 1-based epoch as step; a resumed run writes a session restart at the first
// new epoch (and stats/steps/ at its first new batch loss), so TensorBoard shows one curve.
// Files are flushed after every epoch.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "quantlab/log/event_writer.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/training_state.h"

namespace quantlab::log {

class TrainingLog {
 public:
  TrainingLog(const std::string& stats_dir, train::Experiment& exp);

  // `new_folder`: the experiment's first launch (or a branch): the config as text; otherwise a
  // resume after `state.epoch` epochs.
  void on_start(const train::TrainingState& state, bool new_folder);
  void on_epoch(const train::EpochRecord& r);
  void on_step(int64_t step, double loss);
  // The final test: test_accuracy and best_valid_accuracy scalars at `epoch`, and the end of the
  // HParams session.
  void on_test(const train::EpochStats& test, double best_valid_accuracy, int64_t epoch);
  void flush() { writer_.flush(); }

 private:
  EventWriter writer_;
  std::string stats_dir_;
  std::unique_ptr<EventWriter> steps_;  // stats/steps/, made at the first batch loss
  bool resumed_ = false;
  train::Experiment& exp_;
};

// A JSON value as Python's str() prints the dict json.load() makes of it: {'a': [1, 2.5, True, None]}.
std::string python_str(const nlohmann::json& value);

}  // namespace quantlab::log
