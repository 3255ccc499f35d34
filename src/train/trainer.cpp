// Trainer: epochs and their statistics.
#include "quantlab/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>

#include "quantlab/train/optimizer.h"
#include "quantlab/train/preflight.h"
#include "quantlab/util/runtime.h"

namespace quantlab::train {
namespace {

// The sums of a pass (the loss summed over samples: loss * n for a mean loss, the loss itself for
// a summed one; correct, correct top-5; samples): the first three build up on the
// device and come to the host only when a line is printed and at the end, so a GPU step never
// waits for the host to read its loss (docs/GPU.md). A non-finite training loss stops the run
// (Diverged): each step's loss is read on the CPU; on a GPU the first bad step is kept on the
// device and read with the sums.
class StepSums {
 public:
  StepSums(const torch::Device& device, bool train, bool summed_loss, int64_t epoch, int64_t total)
      : train_(train), summed_(summed_loss), epoch_(epoch), total_(total) {
    acc_ = torch::zeros({3}, torch::TensorOptions().dtype(torch::kFloat64).device(device));
    if (train && device.is_cuda())
      first_bad_ = torch::full({1}, -1, torch::TensorOptions().dtype(torch::kLong).device(device));
  }

  // Step `step` (0-based) of `n` samples; `metric_scores` / `top5_scores` undefined when not measured.
  void add(int64_t step, int64_t n, const torch::Tensor& loss, const torch::Tensor& metric_scores,
           const torch::Tensor& top5_scores, const torch::Tensor& y) {
    if (train_) {
      if (first_bad_.defined()) {
        first_bad_ = torch::where(first_bad_.lt(0).logical_and(loss.isfinite().logical_not()),
                                  torch::full_like(first_bad_, step), first_bad_);
      } else if (const double v = loss.item<double>(); !std::isfinite(v)) {
        throw Diverged(epoch_, step + 1, total_, v);
      }
    }
    acc_.select(0, 0).add_(summed_ ? loss.to(torch::kFloat64) : loss.to(torch::kFloat64) * static_cast<double>(n));
    if (metric_scores.defined()) acc_.select(0, 1).add_(metric_scores.argmax(1).eq(y).sum().to(torch::kFloat64));
    if (top5_scores.defined()) {
      const auto k = std::min<int64_t>(5, top5_scores.size(1));
      acc_.select(0, 2).add_(std::get<1>(top5_scores.topk(k, 1)).eq(y.unsqueeze(1)).any(1).sum().to(torch::kFloat64));
    }
    host_[3] += static_cast<double>(n);
  }

  // The device's sums to the host (and the first non-finite loss, if any, thrown).
  StepSums& pull() {
    const torch::Tensor host = acc_.cpu();
    std::memcpy(host_, host.data_ptr<double>(), 3 * sizeof(double));
    if (first_bad_.defined()) {
      const int64_t bad = first_bad_.item<int64_t>();
      if (bad >= 0) throw Diverged(epoch_, bad + 1, total_, std::numeric_limits<double>::quiet_NaN());
    }
    return *this;
  }
  void copy_to(double* v) const { std::memcpy(v, host_, sizeof host_); }  // 4 values
  EpochStats stats(bool metric, bool top5) const { return stats_of(host_, metric, top5); }

  static EpochStats stats_of(const double* v, bool metric, bool top5) {
    EpochStats s;
    s.samples = static_cast<int64_t>(v[3]);
    if (v[3] == 0) return s;
    s.loss = v[0] / v[3];
    if (metric) s.metric = 100.0 * (1.0 - v[1] / v[3]);
    if (top5) s.top5 = 100.0 * (1.0 - v[2] / v[3]);
    return s;
  }

 private:
  bool train_, summed_;
  int64_t epoch_, total_;
  torch::Tensor acc_, first_bad_;
  double host_[4] = {0, 0, 0, 0};
};

}  // namespace

Trainer::Trainer(Experiment& exp, const data::ProblemData& data, Progress& progress, TrainerOptions options)
    : exp_(exp),
      data_(data),
      progress_(progress),
      options_(std::move(options)),
      par_(options_.comm ? dist::data_parallel(*options_.comm, *exp_.net) : dist::single_process()) {
  batch_norm_1d_ = first_batch_norm_1d(exp_);
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

// `steps`: the batches of the epoch on every rank; `examples`: the samples of the whole epoch
// (over all ranks), which weighs a rank's share of a step.
EpochStats Trainer::run(data::BatchLoader& loader, bool train, bool track_metric, const std::string& label,
                        int64_t epoch, int64_t steps, int64_t examples) {
  dist::Parallelism& par = *par_;
  // With other ranks, every rank takes every training step, with or without samples of its own.
  const bool lockstep = train && par.distributed();
  int64_t total = steps;
  if (options_.max_batches_per_epoch >= 0) total = std::min(total, options_.max_batches_per_epoch);
  progress_.begin(label, total);
  const bool top5 = data_.report_top5 && !train;
  StepSums sums(exp_.device, train, exp_.loss.sums, epoch, total);
  const bool async = exp_.device.is_cuda();  // copies from the loader's pinned memory
  // In lockstep, a rank whose loss is not finite goes on to the next agreement, where every rank
  // learns it and stops with it (alone, it left the others failing in the next collective).
  std::optional<Diverged> diverged;
  auto keep = [&](const Diverged& d) {
    if (!lockstep) throw d;
    if (!diverged) diverged = d;
  };
  auto stop_if_diverged = [&](int64_t first_step) {  // any rank's first non-finite step; 0: none
    if (first_step == 0) return;
    if (diverged && diverged->step == first_step) throw *diverged;
    throw Diverged(epoch, first_step, total, std::numeric_limits<double>::quiet_NaN(), "on another process");
  };
  const auto own_step = [&] { return diverged ? diverged->step : int64_t{0}; };
  for (int64_t i = 0; i < total; ++i) {
    // Stopping is decided together between training steps; evaluations (whose batch counts may
    // differ by one between ranks) stop only in a single-process run.
    const int local_stop = options_.stop ? options_.stop->load() : 0;
    if (train) {
      const dist::Parallelism::Agreement agreed = par.agree(local_stop, own_step());
      stop_if_diverged(agreed.diverged_step);
      if (agreed.stop != 0) throw Interrupted(epoch, agreed.stop);
    } else if (!par.distributed() && local_stop != 0) {
      throw Interrupted(epoch, local_stop);
    }
    auto batch = loader.next();
    if (!batch && !lockstep) break;
    int64_t n = batch ? batch->labels.size(0) : 0;
    // Unreadable images that leave one image of a training batch: batch norm cannot train on it
    // (libtorch stops the run), so the batch is skipped, as its unreadable images were.
    if (train && n == 1 && !batch_norm_1d_.empty()) {
      std::cerr << "warning: skipping training batch " << i + 1 << " of epoch " << epoch
                << ": unreadable images left 1 image, which batch norm (" << batch_norm_1d_ << ") cannot train on"
                << std::endl;
      n = 0;
    }
    if (n == 0 && !lockstep) continue;  // every image of the batch was unreadable
    torch::Tensor scores, loss, y;
    if (n > 0) y = batch->labels.to(exp_.device, async);
    if (train) {
      clear_gradients(*exp_.optimizer);
      par.begin_step();
      if (n > 0) {
        scores = exp_.net->forward(batch->inputs.to(exp_.device, async));
        loss = exp_.loss(scores, y);
        const int64_t global = std::min(exp_.data.bs_train, examples - i * exp_.data.bs_train);
        const double weight = par.loss_weight(n, global, exp_.loss.sums);
        (weight == 1.0 ? loss : loss * weight).backward();
      }
      par.finish_step();
      exp_.optimizer->step();
    } else {
      scores = exp_.net->forward(batch->inputs.to(exp_.device, async));
      loss = exp_.loss(scores, y);
    }
    if (n == 0) continue;
    const torch::Tensor batch_loss = loss.detach();
    try {
      sums.add(i, n, batch_loss, track_metric ? scores : torch::Tensor(), top5 ? scores : torch::Tensor(), y);
    } catch (const Diverged& d) {
      keep(d);
    }
    if (train && options_.on_step && options_.log_every > 0 && (i + 1) % options_.log_every == 0)
      options_.on_step((epoch - 1) * steps + i + 1,  // per sample, as the epoch's statistics
                       batch_loss.item<double>() / (exp_.loss.sums ? static_cast<double>(n) : 1.0));
    progress_.update(i + 1, [&] {
      try {
        return stats_text(sums.pull().stats(track_metric, top5));
      } catch (const Diverged& d) {
        keep(d);
        return std::string();
      }
    });
  }
  double values[4] = {0, 0, 0, 0};
  try {
    sums.pull().copy_to(values);
  } catch (const Diverged& d) {
    keep(d);
  }
  if (lockstep) stop_if_diverged(par.agree(0, own_step()).diverged_step);  // the last steps'
  par.sum(values, 4);
  EpochStats s = StepSums::stats_of(values, track_metric, top5);
  s.data_wait_s = loader.wait_seconds();
  progress_.end(stats_text(s));
  return s;
}

EpochStats Trainer::train_epoch(int64_t epoch, bool track_metric) {
  if (exp_.thermostat) exp_.thermostat->step();
  exp_.net->train();
  // Orders and augmentation draws take the 0-based epoch index.
  std::vector<int64_t> order = data::epoch_order(data_.train_indices, exp_.data.seed, epoch - 1);
  const auto examples = static_cast<int64_t>(order.size());
  const int64_t steps = examples == 0 ? 0 : (examples - 1) / exp_.data.bs_train + 1;  // no overflow near 2^63
  order = par_->train_share(order, exp_.data.bs_train);
  const int64_t batch = par_->train_batch(exp_.data.bs_train);
  data::BatchLoader loader(*data_.train, order, batch, data::SampleContext{true, exp_.data.seed, epoch - 1},
                           loader_options(), par_->train_positions(examples, exp_.data.bs_train));
  return run(loader, true, track_metric,
             "epoch " + std::to_string(epoch) + "/" + std::to_string(exp_.max_epoch) + " train", epoch, steps,
             examples);
}

data::LoaderOptions Trainer::loader_options() const {
  data::LoaderOptions o;
  o.workers =
      exp_.data.workers > 0 ? static_cast<int>(exp_.data.workers) : data_.train->default_workers(available_cores());
  o.prefetch = static_cast<size_t>(std::max(4, 2 * o.workers));
  o.pin_memory = exp_.device.is_cuda();
  return o;
}

EpochStats Trainer::evaluate(const data::Dataset& set, const std::vector<int64_t>& indices, const std::string& label) {
  par_->begin_evaluation();
  exp_.net->eval();
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> mine = par_->eval_share(indices);
  data::BatchLoader loader(set, mine, exp_.data.bs_valid, data::SampleContext{false, exp_.data.seed, state_.epoch},
                           loader_options());
  return run(loader, false, true, label, state_.epoch, loader.num_batches(), static_cast<int64_t>(indices.size()));
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
    const bool train_metric = period > 0 && e % period == 0;
    r.train = train_epoch(e, train_metric);
    const auto t_valid = std::chrono::steady_clock::now();
    if (validation) r.valid = evaluate(*data_.valid, data_.valid_indices, "epoch " + std::to_string(e) + " valid");
    r.valid_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_valid).count();
    EpochStatistics& st = state_.stats;
    st[Statistic::kTrainLoss] = r.train.loss;
    st[Statistic::kTrainMetric] = r.train.metric;
    st[Statistic::kValidLoss] = r.valid.loss;
    st[Statistic::kValidMetric] = r.valid.metric;
    // A schedule that reads a statistic is not stepped in an epoch that did not measure it (the
    // training metric under metric_period > 1): no bad epoch for ReduceLROnPlateau's patience.
    const bool measured = !has_step_stat_ || step_stat_ != Statistic::kTrainMetric || train_metric;
    if (measured)
      set_lr(*exp_.optimizer, exp_.lr_scheduler->lr_for_epoch(e, r.lr, has_step_stat_ ? st[step_stat_] : 0.0));
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

}  // namespace quantlab::train
