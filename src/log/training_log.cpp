// TrainingLog: the statistics of a run as TensorBoard events.
#include "quantlab/log/training_log.h"

#include <cmath>
#include <filesystem>
#include <sstream>

#include "quantlab/config/overrides.h"
#include "quantlab/nn/ana_layers.h"

namespace quantlab::log {
namespace {

constexpr size_t kMaxLevelScalars = 16;  // levels/<layer>/<level> up to 4-bit schemes

void python_str_to(const nlohmann::json& v, std::string& out) {
  switch (v.type()) {
    case nlohmann::json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        python_str_to(it.key(), out);
        out += ": ";
        python_str_to(it.value(), out);
      }
      out += '}';
      return;
    }
    case nlohmann::json::value_t::array: {
      out += '[';
      for (size_t i = 0; i < v.size(); ++i) {
        if (i) out += ", ";
        python_str_to(v[i], out);
      }
      out += ']';
      return;
    }
    case nlohmann::json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      const char quote = s.find('\'') != std::string::npos && s.find('"') == std::string::npos ? '"' : '\'';
      out += quote;
      for (char c : s) {
        if (c == '\\' || c == quote) out += '\\';
        if (c == '\n') {
          out += "\\n";
          continue;
        }
        out += c;
      }
      out += quote;
      return;
    }
    case nlohmann::json::value_t::boolean:
      out += v.get<bool>() ? "True" : "False";
      return;
    case nlohmann::json::value_t::null:
      out += "None";
      return;
    default:
      out += v.dump();  // numbers: JSON's shortest round-trip form, as Python's repr
  }
}

void add_if_measured(EventWriter& w, const std::string& tag, double v, int64_t step) {
  if (!std::isnan(v)) w.add_scalar(tag, v, step);
}

}  // namespace

std::string python_str(const nlohmann::json& value) {
  std::string out;
  python_str_to(value, out);
  return out;
}

TrainingLog::TrainingLog(const std::string& stats_dir, train::Experiment& exp)
    : writer_(stats_dir), stats_dir_(stats_dir), exp_(exp) {}

void TrainingLog::on_start(const train::TrainingState& state, bool new_folder) {
  if (new_folder) {
    for (auto it = exp_.config.begin(); it != exp_.config.end(); ++it)
      writer_.add_text(it.key(), it.value().is_string() ? it.value().get<std::string>() : python_str(it.value()), 0);
    // Markdown: four spaces make the JSON a code block in TensorBoard's text dashboard.
    std::istringstream lines(exp_.config.dump(2));
    std::string text, line;
    while (std::getline(lines, line)) text += "    " + line + "\n";
    writer_.add_text("config", text, 0);
    // The HParams dashboard's columns: a sweep's factors (and the sweep's own --set), or the
    // config paths this experiment changed with --set, each a hyperparameter.
    std::vector<std::pair<std::string, nlohmann::json>> hparams;
    const auto add_settings = [&](const nlohmann::json& texts) {
      for (const auto& text : texts) {
        try {
          const config::Override o = config::parse_override(text.get<std::string>());
          if (o.value.is_object()) continue;  // a record (the sweep's unit), not a setting
          hparams.emplace_back(config::dotted(o.path), o.value);
        } catch (const std::exception&) {
        }
      }
    };
    const nlohmann::json* unit = exp_.config.contains("sweep") ? &exp_.config["sweep"] : nullptr;
    if (unit && unit->is_object() && unit->contains("levels") && (*unit)["levels"].is_object()) {
      // A sweep's unit: its factors' levels (a named level by its name), and its repeat.
      for (auto it = (*unit)["levels"].begin(); it != (*unit)["levels"].end(); ++it)
        hparams.emplace_back(it.key(), it.value());
      if (unit->contains("repeat")) hparams.emplace_back("repeat", (*unit)["repeat"]);
      if (unit->contains("set") && (*unit)["set"].is_array()) add_settings((*unit)["set"]);
    } else if (exp_.config.contains("overrides") && exp_.config["overrides"].is_array()) {
      add_settings(exp_.config["overrides"]);
    }
    writer_.add_hparams_session_start(hparams);
  }
  resumed_ = state.epoch > 0;
  if (resumed_) writer_.add_session_start(state.epoch + 1);
  writer_.flush();
}

void TrainingLog::on_epoch(const train::EpochRecord& r) {
  const int64_t step = r.epoch;
  add_if_measured(writer_, "train_loss", r.train.loss, step);
  add_if_measured(writer_, "train_metric", r.train.metric, step);
  add_if_measured(writer_, "valid_loss", r.valid.loss, step);
  add_if_measured(writer_, "valid_metric", r.valid.metric, step);
  add_if_measured(writer_, "valid_metric_top5", r.valid.top5, step);
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
    torch::Tensor weight;
    auto* ana = dynamic_cast<nn::AnaWeightLayer*>(item.value().get());
    if (ana) {
      weight = ana->weight;
    } else if (item.value()->as<torch::nn::Linear>() || item.value()->as<torch::nn::Conv2d>()) {
      weight = item.value()->named_parameters(false)["weight"];
    } else {
      continue;
    }
    writer_.add_histogram(item.key() + "_w", weight, step);  // the original's name
    writer_.add_histogram("weights/" + item.key(), weight, step);
    // The fraction at each level: a scalar per level, for the few levels of ternary to 4-bit schemes
    // (16-bit weights would write 65,536 scalars per layer, each a pass over the weights, every
    // epoch: minutes and megabytes; their histogram above shows them).
    if (!ana || ana->scheme().quantizer.levels.size() > kMaxLevelScalars) continue;
    const auto& scheme = ana->scheme();
    const auto q = core::ana_tensor_ops_forward(weight.detach(), scheme, ana->noise().mu, 0.0f);
    for (float level : scheme.quantizer.levels) {
      std::ostringstream name;
      name << level;
      writer_.add_scalar("levels/" + item.key() + "/" + name.str(),
                         (q == level).to(torch::kFloat64).mean().item<double>(), step);
    }
  }
  writer_.flush();
  if (steps_) steps_->flush();
}

void TrainingLog::on_test(const train::EpochStats& test, double best_valid_accuracy, int64_t epoch) {
  if (std::isfinite(test.metric)) writer_.add_scalar("test_accuracy", 100.0 - test.metric, epoch);
  if (std::isfinite(best_valid_accuracy)) writer_.add_scalar("best_valid_accuracy", best_valid_accuracy, epoch);
  writer_.add_hparams_session_end(true);
  writer_.flush();
}

void TrainingLog::on_step(int64_t step, double loss) {
  if (!steps_) {
    std::filesystem::create_directories(stats_dir_ + "/steps");
    steps_ = std::make_unique<EventWriter>(stats_dir_ + "/steps");
    // A resume's first batch loss restarts this run's session there: TensorBoard drops what an
    // abandoned epoch logged from that step on, and nothing of the epoch-numbered run.
    if (resumed_) steps_->add_session_start(step);
  }
  steps_->add_scalar("train_loss_step", loss, step);
}

}  // namespace quantlab::log
