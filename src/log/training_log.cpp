// TrainingLog: the statistics of a run as TensorBoard events.
#include "quantlab/log/training_log.h"

#include <sstream>

#include "quantlab/nn/ana_layers.h"

namespace quantlab {

TrainingLog::TrainingLog(const std::string& stats_dir, Experiment& exp) : writer_(stats_dir), exp_(exp) {}

void TrainingLog::on_start(const TrainingState& state) {
  if (state.epoch == 0) {
    // Markdown: four spaces make the JSON a code block in TensorBoard's text dashboard.
    std::istringstream lines(exp_.config.dump(2));
    std::string text, line;
    while (std::getline(lines, line)) text += "    " + line + "\n";
    writer_.add_text("config", text, 0);
  } else {
    writer_.add_session_start(state.epoch + 1);
  }
  writer_.flush();
}

void TrainingLog::on_epoch(const EpochRecord& r) {
  const int64_t step = r.epoch + 1;
  writer_.add_scalar("train_loss", r.train.loss, step);
  writer_.add_scalar("train_metric", r.train.metric, step);
  writer_.add_scalar("valid_loss", r.valid.loss, step);
  writer_.add_scalar("valid_metric", r.valid.metric, step);
  writer_.add_scalar("learning_rate", r.lr, step);
  if (exp_.thermostat) {
    for (const auto& kv : exp_.thermostat->noise()) {
      writer_.add_scalar("noise/" + kv.first + "/sigma_forward", kv.second.sigma_forward, step);
      writer_.add_scalar("noise/" + kv.first + "/sigma_backward", kv.second.sigma_backward, step);
      writer_.add_scalar("noise/" + kv.first + "/mu", kv.second.mu, step);
    }
  }
  torch::NoGradGuard no_grad;
  for (const auto& item : exp_.net->named_modules("", false)) {
    auto* layer = dynamic_cast<nn::AnaWeightLayer*>(item.value().get());
    if (!layer) continue;
    writer_.add_histogram("weights/" + item.key(), layer->weight, step);
    const auto& scheme = layer->scheme();
    const auto q = ana_tensor_ops_forward(layer->weight.detach(), scheme, layer->noise().mu, 0.0f);
    for (float level : scheme.quantizer.levels) {
      std::ostringstream name;
      name << level;
      writer_.add_scalar("levels/" + item.key() + "/" + name.str(), (q == level).to(torch::kFloat64).mean().item<double>(),
                         step);
    }
  }
  writer_.flush();
}

void TrainingLog::on_step(int64_t step, double loss) { writer_.add_scalar("train_loss_step", loss, step); }

}  // namespace quantlab
