// Trainer: epochs and their statistics.
#include "quantlab/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "quantlab/util/runtime.h"

namespace quantlab {
namespace {

std::string percent(double error) {
  if (std::isnan(error)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 - error);
  return buf;
}

}  // namespace

std::string stats_text(const EpochStats& s) {
  if (s.samples == 0) return "no samples";
  char buf[64];
  std::snprintf(buf, sizeof buf, "loss %.4f acc ", s.loss);
  std::string out = buf + percent(s.metric);
  if (!std::isnan(s.top5)) out += " top5 " + percent(s.top5);
  return out;
}

Trainer::Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options)
    : exp_(exp), data_(data), progress_(progress), options_(std::move(options)) {
  test_indices_.resize(static_cast<size_t>(data.test->size()));
  std::iota(test_indices_.begin(), test_indices_.end(), 0);
  const bool validation = !data_.valid_indices.empty();
  best_stat_ = exp_.protocol.update_metric;
  if (!validation) best_stat_ = training_counterpart(best_stat_);
  if (exp_.lr_scheduler->step_metric()) {
    has_step_stat_ = true;
    step_stat_ = *exp_.lr_scheduler->step_metric();
    if (!validation) step_stat_ = training_counterpart(step_stat_);
  }
}

std::ostream& Trainer::out() const { return options_.out ? *options_.out : std::cout; }

EpochStats Trainer::run(data::BatchLoader& loader, bool train, bool track_metric, const std::string& label,
                        int64_t epoch) {
  int64_t total = loader.num_batches();
  if (options_.max_batches_per_epoch >= 0) total = std::min(total, options_.max_batches_per_epoch);
  progress_.begin(label, total);
  const bool top5 = data_.report_top5 && !train;
  double loss_sum = 0.0;
  int64_t correct = 0, correct5 = 0, seen = 0;
  EpochStats s;
  auto fill = [&]() {
    s.samples = seen;
    if (seen == 0) return;
    const auto n = static_cast<double>(seen);
    s.loss = loss_sum / n;
    if (track_metric) s.metric = 100.0 * (1.0 - static_cast<double>(correct) / n);
    if (top5) s.top5 = 100.0 * (1.0 - static_cast<double>(correct5) / n);
  };
  for (int64_t i = 0; i < total; ++i) {
    if (options_.stop && options_.stop->load() != 0) throw Interrupted(epoch, options_.stop->load());
    auto batch = loader.next();
    if (!batch) break;
    if (batch->labels.size(0) == 0) continue;  // every image of the batch was unreadable
    const auto x = batch->inputs.to(exp_.device);
    const auto y = batch->labels.to(exp_.device);
    torch::Tensor scores, loss;
    if (train) {
      exp_.optimizer->zero_grad();
      scores = exp_.net->forward(x);
      loss = exp_.loss(scores, y);
      loss.backward();
      exp_.optimizer->step();
    } else {
      scores = exp_.net->forward(x);
      loss = exp_.loss(scores, y);
    }
    const int64_t n = y.size(0);
    const double batch_loss = loss.item<double>();
    loss_sum += batch_loss * static_cast<double>(n);
    if (track_metric) correct += scores.argmax(1).eq(y).sum().item<int64_t>();
    if (top5) {
      const auto k = std::min<int64_t>(5, scores.size(1));
      correct5 += std::get<1>(scores.topk(k, 1)).eq(y.unsqueeze(1)).any(1).sum().item<int64_t>();
    }
    seen += n;
    if (train && options_.on_step && options_.log_every > 0 && (i + 1) % options_.log_every == 0)
      options_.on_step((epoch - 1) * loader.num_batches() + i + 1, batch_loss);
    fill();
    progress_.update(i + 1, stats_text(s));
  }
  fill();
  s.data_wait_s = loader.wait_seconds();
  progress_.end(stats_text(s));
  return s;
}

EpochStats Trainer::train_epoch(int64_t epoch, bool track_metric) {
  if (exp_.thermostat) exp_.thermostat->step();
  exp_.net->train();
  // Orders and augmentation draws take the 0-based epoch index.
  data::BatchLoader loader(*data_.train, data::epoch_order(data_.train_indices, exp_.data.seed, epoch - 1),
                           exp_.data.bs_train, data::SampleContext{true, exp_.data.seed, epoch - 1}, loader_options());
  return run(loader, true, track_metric,
             "epoch " + std::to_string(epoch) + "/" + std::to_string(exp_.max_epoch) + " train", epoch);
}

data::LoaderOptions Trainer::loader_options() const {
  data::LoaderOptions o;
  o.workers =
      exp_.data.workers > 0 ? static_cast<int>(exp_.data.workers) : data_.train->default_workers(available_cores());
  o.prefetch = static_cast<size_t>(std::max(4, 2 * o.workers));
  return o;
}

EpochStats Trainer::evaluate(const data::Dataset& set, const std::vector<int64_t>& indices, const std::string& label) {
  exp_.net->eval();
  torch::NoGradGuard no_grad;
  data::BatchLoader loader(set, indices, exp_.data.bs_valid, data::SampleContext{false, exp_.data.seed, state_.epoch},
                           loader_options());
  return run(loader, false, true, label, state_.epoch);
}

EpochStats Trainer::test() { return evaluate(*data_.test, test_indices_, "test"); }

std::vector<EpochRecord> Trainer::fit(int64_t last, const EpochHook& on_epoch) {
  std::vector<EpochRecord> records;
  const bool validation = !data_.valid_indices.empty();
  if (!validation && state_.epoch < last) {
    out() << "no validation set (treat.data.valid_fraction leaves no images): the best epoch is chosen by "
          << statistic_name(best_stat_) << " instead of " << statistic_name(exp_.protocol.update_metric);
    if (has_step_stat_) out() << ", and the lr schedule steps with " << statistic_name(step_stat_);
    out() << std::endl;
  }
  for (int64_t e = state_.epoch + 1; e <= last; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    EpochRecord r;
    r.epoch = e;
    r.lr = get_lr(*exp_.optimizer);
    const int64_t period = exp_.protocol.metric_period;
    r.train = train_epoch(e, period > 0 && e % period == 0);
    if (validation) r.valid = evaluate(*data_.valid, data_.valid_indices, "epoch " + std::to_string(e) + " valid");
    EpochStatistics& st = state_.stats;
    st[Statistic::kTrainLoss] = r.train.loss;
    st[Statistic::kTrainMetric] = r.train.metric;
    st[Statistic::kValidLoss] = r.valid.loss;
    st[Statistic::kValidMetric] = r.valid.metric;
    const double metric = has_step_stat_ ? st[step_stat_] : 0.0;
    set_lr(*exp_.optimizer, exp_.lr_scheduler->lr_for_epoch(e, r.lr, metric));
    if (const auto m = exp_.lr_scheduler->momentum_at(e)) set_momentum(*exp_.optimizer, *m);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state_.epoch = e;
    r.best = update_best(r);
    char buf[320];
    std::snprintf(buf, sizeof buf, "epoch %lld/%lld | train %s | valid %s | lr %.3g | %s (data wait %.1f s)%s",
                  static_cast<long long>(e), static_cast<long long>(exp_.max_epoch), stats_text(r.train).c_str(),
                  validation ? stats_text(r.valid).c_str() : "none", r.lr, Progress::format_duration(r.seconds).c_str(),
                  r.train.data_wait_s, r.best ? " | best" : "");
    out() << buf << std::endl;
    if (on_epoch) on_epoch(r);
    records.push_back(r);
  }
  return records;
}

bool Trainer::update_best(const EpochRecord& r) {
  const double v = state_.stats[best_stat_];
  if (std::isnan(v)) return false;                                      // not measured this epoch (metric_period)
  if (state_.best_epoch > 0 && !(v < state_.best_value)) return false;  // all four: lower is better
  state_.best_epoch = r.epoch;
  state_.best_value = v;
  return true;
}

}  // namespace quantlab
