// Trainer: epochs and their statistics.
#include "quantlab/train/trainer.h"

#include <chrono>
#include <cstdio>
#include <iostream>
#include <cstring>
#include <limits>
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

int Trainer::stop_requested() {
  const int local = options_.stop ? options_.stop->load() : 0;
  if (!options_.comm) return local;
  torch::Tensor flag = torch::tensor({static_cast<float>(local)});
  options_.comm->all_reduce_sum(flag)->wait();
  const int any = static_cast<int>(flag.item<float>());
  return any == 0 ? 0 : (local != 0 ? local : 2 /* SIGINT, raised at another rank */);
}

void Trainer::reduce_stats(double* values, size_t n) {
  if (!options_.comm) return;
  torch::Tensor t = torch::from_blob(values, {static_cast<int64_t>(n)}, torch::kFloat64).clone();
  options_.comm->all_reduce_sum(t)->wait();
  std::memcpy(values, t.data_ptr<double>(), n * sizeof(double));
}

// `steps`: the batches of the epoch on every rank; `examples`: the samples of the whole epoch
// (over all ranks), which weighs a rank's share of a step.
EpochStats Trainer::run(data::BatchLoader& loader, bool train, bool track_metric, const std::string& label,
                        int64_t epoch, int64_t steps, int64_t examples) {
  dist::Communicator* comm = options_.comm;
  int64_t total = steps;
  if (options_.max_batches_per_epoch >= 0) total = std::min(total, options_.max_batches_per_epoch);
  progress_.begin(label, total);
  const bool top5 = data_.report_top5 && !train;
  // The sums build up on the device and come to the host only when a line is printed and at the
  // end, so a GPU step never waits for the host to read its loss (docs/GPU.md).
  torch::Tensor acc = torch::zeros({3}, torch::TensorOptions().dtype(torch::kFloat64).device(exp_.device));
  double sums[4] = {0, 0, 0, 0};  // loss * n, correct, correct top-5 (from acc), samples
  // A non-finite training loss stops the run (Diverged): each step's loss is read on the CPU; on a
  // GPU the first bad step is kept on the device and read with the sums.
  torch::Tensor first_bad;
  if (train && exp_.device.is_cuda()) first_bad = torch::full({1}, -1, torch::TensorOptions().dtype(torch::kLong).device(exp_.device));
  const auto check_bad = [&] {
    if (!first_bad.defined()) return;
    const int64_t bad = first_bad.item<int64_t>();
    if (bad >= 0) throw Diverged(epoch, bad + 1, total, std::numeric_limits<double>::quiet_NaN());
  };
  const auto pull = [&] {
    const torch::Tensor host = acc.cpu();
    std::memcpy(sums, host.data_ptr<double>(), 3 * sizeof(double));
    check_bad();
  };
  const bool async = exp_.device.is_cuda();  // copies from the loader's pinned memory
  EpochStats s;
  auto fill = [&](const double* v) {
    s.samples = static_cast<int64_t>(v[3]);
    if (v[3] == 0) return;
    s.loss = v[0] / v[3];
    if (track_metric) s.metric = 100.0 * (1.0 - v[1] / v[3]);
    if (top5) s.top5 = 100.0 * (1.0 - v[2] / v[3]);
  };
  for (int64_t i = 0; i < total; ++i) {
    // Stopping is decided together between training steps; evaluations (whose batch counts may
    // differ by one between ranks) stop only in a single-process run.
    if (train || !comm) {
      if (const int sig = train ? stop_requested() : (options_.stop ? options_.stop->load() : 0))
        throw Interrupted(epoch, sig);
    }
    auto batch = loader.next();
    if (!batch && !(train && comm)) break;
    const int64_t n = batch ? batch->labels.size(0) : 0;
    if (n == 0 && !(train && comm)) continue;  // every image of the batch was unreadable
    torch::Tensor scores, loss, y;
    if (n > 0) y = batch->labels.to(exp_.device, async);
    if (train) {
      if (comm) dist::broadcast_buffers(*exp_.net, *comm);  // rank 0's running statistics, as DDP
      exp_.optimizer->zero_grad();
      if (sync_) sync_->begin_step();
      if (n > 0) {
        scores = exp_.net->forward(batch->inputs.to(exp_.device, async));
        loss = exp_.loss(scores, y);
        if (comm) {
          // The ranks' gradients are averaged: weigh this rank's part of the step by its share of
          // the step's samples (a mean), or by the number of ranks (a sum).
          const int64_t global = std::min(exp_.data.bs_train, examples - i * exp_.data.bs_train);
          const double weight = exp_.loss.sums
                                    ? comm->world_size()
                                    : static_cast<double>(comm->world_size() * n) / static_cast<double>(global);
          (loss * weight).backward();
        } else {
          loss.backward();
        }
      }
      if (sync_) sync_->finish_step();
      exp_.optimizer->step();
    } else {
      scores = exp_.net->forward(batch->inputs.to(exp_.device, async));
      loss = exp_.loss(scores, y);
    }
    if (n == 0) continue;
    const torch::Tensor batch_loss = loss.detach();
    if (train) {
      if (first_bad.defined()) {
        first_bad = torch::where(first_bad.lt(0).logical_and(batch_loss.isfinite().logical_not()),
                                 torch::full_like(first_bad, i), first_bad);
      } else if (const double v = batch_loss.item<double>(); !std::isfinite(v)) {
        throw Diverged(epoch, i + 1, total, v);
      }
    }
    acc.select(0, 0).add_(batch_loss.to(torch::kFloat64) * static_cast<double>(n));
    if (track_metric) acc.select(0, 1).add_(scores.argmax(1).eq(y).sum().to(torch::kFloat64));
    if (top5) {
      const auto k = std::min<int64_t>(5, scores.size(1));
      acc.select(0, 2).add_(std::get<1>(scores.topk(k, 1)).eq(y.unsqueeze(1)).any(1).sum().to(torch::kFloat64));
    }
    sums[3] += static_cast<double>(n);
    if (train && options_.on_step && options_.log_every > 0 && (i + 1) % options_.log_every == 0)
      options_.on_step((epoch - 1) * steps + i + 1, batch_loss.item<double>());
    progress_.update(i + 1, [&] {
      pull();
      fill(sums);
      return stats_text(s);
    });
  }
  pull();
  reduce_stats(sums, 4);
  fill(sums);
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
  const int64_t steps = (examples + exp_.data.bs_train - 1) / exp_.data.bs_train;
  int64_t batch = exp_.data.bs_train;
  if (options_.comm) {
    if (!sync_) sync_ = std::make_unique<dist::GradientSync>(*exp_.net, *options_.comm);
    order = data::rank_shard(order, exp_.data.bs_train, options_.comm->world_size(), options_.comm->rank());
    batch = exp_.data.bs_train / options_.comm->world_size();
  }
  data::BatchLoader loader(*data_.train, order, batch, data::SampleContext{true, exp_.data.seed, epoch - 1},
                           loader_options());
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
  exp_.net->eval();
  torch::NoGradGuard no_grad;
  const std::vector<int64_t> mine =
      options_.comm ? data::rank_slice(indices, options_.comm->world_size(), options_.comm->rank()) : indices;
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
