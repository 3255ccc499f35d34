// Trainer: epochs and their statistics.
#include "quantlab/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <numeric>

#include "quantlab/util/runtime.h"

namespace quantlab {
namespace {

std::string stats_text(double loss, double error) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "loss %.4f acc %.2f%%", loss, 100.0 - error);
  return buf;
}

}  // namespace

Trainer::Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options)
    : exp_(exp), data_(data), progress_(progress), options_(options) {
  test_indices_.resize(static_cast<size_t>(data.test->size()));
  std::iota(test_indices_.begin(), test_indices_.end(), 0);
}

EpochStats Trainer::run(data::BatchLoader& loader, bool train, const std::string& label, int64_t epoch) {
  int64_t total = loader.num_batches();
  if (options_.max_batches_per_epoch >= 0) total = std::min(total, options_.max_batches_per_epoch);
  progress_.begin(label, total);
  double loss_sum = 0.0;
  int64_t correct = 0, seen = 0;
  for (int64_t i = 0; i < total; ++i) {
    if (options_.stop && options_.stop->load()) throw Interrupted(epoch);
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
    loss_sum += loss.item<double>() * static_cast<double>(n);
    correct += scores.argmax(1).eq(y).sum().item<int64_t>();
    seen += n;
    if (train && options_.on_step && options_.log_every > 0 && (i + 1) % options_.log_every == 0)
      options_.on_step(epoch * loader.num_batches() + i + 1, loss.item<double>());
    const double error = 100.0 * (1.0 - static_cast<double>(correct) / static_cast<double>(seen));
    progress_.update(i + 1, stats_text(loss_sum / static_cast<double>(seen), error));
  }
  EpochStats s;
  s.samples = seen;
  s.data_wait_s = loader.wait_seconds();
  if (seen > 0) {
    s.loss = loss_sum / static_cast<double>(seen);
    s.metric = 100.0 * (1.0 - static_cast<double>(correct) / static_cast<double>(seen));
  }
  progress_.end(stats_text(s.loss, s.metric));
  return s;
}

EpochStats Trainer::train_epoch(int64_t epoch) {
  if (exp_.thermostat) exp_.thermostat->step();
  exp_.net->train();
  data::BatchLoader loader(*data_.train, data::epoch_order(data_.train_indices, exp_.data.seed, epoch),
                           exp_.data.bs_train, data::SampleContext{true, exp_.data.seed, epoch}, loader_options());
  return run(loader, true, "epoch " + std::to_string(epoch + 1) + "/" + std::to_string(exp_.max_epoch) + " train",
             epoch);
}

data::LoaderOptions Trainer::loader_options() const {
  data::LoaderOptions o;
  o.workers = exp_.data.workers > 0 ? static_cast<int>(exp_.data.workers)
                                     : data_.train->default_workers(available_cores());
  o.prefetch = static_cast<size_t>(std::max(4, 2 * o.workers));
  return o;
}

EpochStats Trainer::evaluate(const data::Dataset& set, const std::vector<int64_t>& indices,
                             const std::string& label) {
  exp_.net->eval();
  torch::NoGradGuard no_grad;
  data::BatchLoader loader(set, indices, exp_.data.bs_valid, data::SampleContext{false, exp_.data.seed, state_.epoch},
                           loader_options());
  return run(loader, false, label, state_.epoch);
}

EpochStats Trainer::test() { return evaluate(*data_.test, test_indices_, "test"); }

std::vector<EpochRecord> Trainer::fit(int64_t last, const EpochHook& on_epoch) {
  std::vector<EpochRecord> records;
  for (int64_t e = state_.epoch; e < last; ++e) {
    const auto t0 = std::chrono::steady_clock::now();
    EpochRecord r;
    r.epoch = e;
    r.lr = get_lr(*exp_.optimizer);
    r.train = train_epoch(e);
    if (!data_.valid_indices.empty())
      r.valid = evaluate(*data_.valid, data_.valid_indices, "epoch " + std::to_string(e + 1) + " valid");
    state_.stats = {{"train_loss", r.train.loss}, {"train_metric", r.train.metric},
                    {"valid_loss", r.valid.loss}, {"valid_metric", r.valid.metric}};
    const auto& metric = exp_.lr_scheduler->step_metric();
    set_lr(*exp_.optimizer, exp_.lr_scheduler->lr_for_epoch(e + 1, r.lr, metric.empty() ? 0.0 : state_.stats.at(metric)));
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    state_.epoch = e + 1;
    if (state_.epoch % exp_.protocol.metric_period == 0) r.best = update_best(r);
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "epoch %lld/%lld | train loss %.4f acc %.2f%% | valid loss %.4f acc %.2f%% | lr %.3g | %s"
                  " (data wait %.1f s)%s",
                  static_cast<long long>(e + 1), static_cast<long long>(exp_.max_epoch), r.train.loss,
                  r.train.accuracy(), r.valid.loss, r.valid.accuracy(), r.lr,
                  Progress::format_duration(r.seconds).c_str(), r.train.data_wait_s, r.best ? " | best" : "");
    std::cout << buf << std::endl;
    if (on_epoch) on_epoch(r);
    records.push_back(r);
  }
  return records;
}

bool Trainer::update_best(EpochRecord& r) {
  const double v = state_.stats.at(exp_.protocol.update_metric);
  if (state_.best_epoch >= 0 && !(v < state_.best_value)) return false;  // all four: lower is better
  state_.best_epoch = r.epoch;
  state_.best_value = v;
  return true;
}

}  // namespace quantlab
