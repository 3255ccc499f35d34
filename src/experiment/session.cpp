// Session: what a run saves after each epoch and test, and the repair of an interrupted save.
#include "quantlab/experiment/session.h"

#include <filesystem>

#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

// Accuracy in percent from an error, or null when not measured.
nlohmann::json accuracy(double error) { return std::isnan(error) ? nlohmann::json() : nlohmann::json(100.0 - error); }

// status.json's "best": the best epoch and its accuracies (from its errors).
nlohmann::json best_entry(int64_t epoch, double valid_error, double valid_top5_error, double train_error) {
  return {{"epoch", epoch},
          {"valid_accuracy", accuracy(valid_error)},
          {"valid_top5_accuracy", accuracy(valid_top5_error)},
          {"train_accuracy", accuracy(train_error)}};
}

// The same from a checkpoint's statistics (which keep no top-5 error).
nlohmann::json best_entry(const train::TrainingState& s) {
  return best_entry(s.epoch, s.stats[train::Statistic::kValidMetric], NAN, s.stats[train::Statistic::kTrainMetric]);
}

}  // namespace

Session::Session(train::Experiment& exp, const Logbook& book, int64_t ckpt_every, train::Statistic best_statistic)
    : exp_(exp), saves_(book.saves()), ckpt_every_(ckpt_every), best_statistic_(best_statistic) {
  const auto st = saves_.status();
  if (st.contains("best") && st["best"].is_object()) best_ = st["best"];
  if (st.contains("train_seconds") && st["train_seconds"].is_number())
    train_seconds_ = st["train_seconds"].get<double>();
}

void Session::on_epoch(const train::EpochRecord& r, const train::TrainingState& state,
                       const std::vector<torch::Tensor>& rng_ranks, const std::vector<torch::Tensor>& rng_cuda_ranks) {
  train_seconds_ += r.seconds;
  Checkpoint c = capture(exp_, state);
  c.rng_ranks = rng_ranks;
  c.rng_cuda_ranks = rng_cuda_ranks;
  saves_.write(saves_.last(), c);
  if (r.best) saves_.write(saves_.best(), c);
  if (ckpt_every_ > 0 && state.epoch % ckpt_every_ == 0) saves_.write(saves_.epoch(state.epoch), c);
  if (r.best) best_ = best_entry(r.epoch, r.valid.metric, r.valid.top5, r.train.metric);
  write_status(state);
}

void Session::on_diverged(int64_t epoch, const std::string& message) {
  auto st = saves_.status();
  st["diverged"] = {{"epoch", epoch}, {"message", message}};
  if (st.contains("epochs_done")) {  // a finished run resumed for more epochs is not finished now
    st["finished"] = false;
    st["max_epoch"] = exp_.max_epoch;
  }
  saves_.write_status(st);
}

void Session::on_test(const train::EpochStats& test, const std::string& what, int64_t epoch) {
  test_ = {{"weights", what},
           {"epoch", epoch},
           {"accuracy", accuracy(test.metric)},
           {"top5_accuracy", accuracy(test.top5)},
           {"loss", test.loss}};
  auto st = saves_.status();
  st["test"] = test_;
  saves_.write_status(st);
}

void Session::write_status(const train::TrainingState& state) {
  nlohmann::json status = {
      {"epochs_done", state.epoch},
      {"max_epoch", exp_.max_epoch},
      {"net_class", exp_.net_spec.cls},
      {"update_metric", train::statistic_name(best_statistic_)},
      {"best_epoch", state.best_epoch},
      {"best_value", std::isnan(state.best_value) ? nlohmann::json() : nlohmann::json(state.best_value)},
      {"best", best_},
      {"train_seconds", train_seconds_},  // the epochs' wall time, summed over the sessions
      {"finished", state.epoch >= exp_.max_epoch}};
  saves_.write_status(status);
}

std::vector<std::string> Session::repair(const Checkpoint& last) {
  std::vector<std::string> done;
  const auto st = saves_.status();
  if (st.value("epochs_done", int64_t{-1}) == last.state.epoch) return done;
  const std::string bytes = saves_.read_bytes(saves_.last());
  if (last.state.best_epoch == last.state.epoch && last.state.epoch > 0) {
    saves_.write_bytes(saves_.best(), bytes);
    done.push_back("best.ckpt");
    best_ = best_entry(last.state);  // the best epoch's accuracies: the last checkpoint's statistics
  } else if (!best_.is_object() && last.state.best_epoch > 0 && fs::exists(saves_.best())) {
    // status.json lost (damaged): the best epoch's accuracies from best.ckpt's statistics.
    try {
      const Checkpoint b = load_checkpoint(saves_.best());
      if (b.state.epoch == last.state.best_epoch) best_ = best_entry(b.state);
    } catch (const Error&) {
    }
  }
  const std::string snapshot = saves_.epoch(last.state.epoch);
  if (ckpt_every_ > 0 && last.state.epoch > 0 && last.state.epoch % ckpt_every_ == 0 && !fs::exists(snapshot)) {
    saves_.write_bytes(snapshot, bytes);
    done.push_back(config::epoch_file_name(last.state.epoch));
  }
  write_status(last.state);
  done.push_back("status.json");
  return done;
}

void Session::start_branch(const Saves& parent, const Checkpoint& start, const std::string& best) {
  Checkpoint c = start;
  if (!best.empty() && c.state.best_epoch != c.state.epoch) {
    saves_.copy_in(best, saves_.best());
    // A parent that trains meanwhile may have written a later best since it was chosen: then the
    // branch inherits none, and chooses its best epoch among its own.
    if (load_checkpoint(saves_.best()).state.epoch != c.state.best_epoch) {
      fs::remove(saves_.best());
      c.state.best_epoch = 0;
      c.state.best_value = NAN;
    }
  }
  saves_.write(saves_.last(), c);
  const nlohmann::json recorded = parent.status();
  if (recorded.contains("best") && recorded["best"].is_object() &&
      recorded["best"].value("epoch", int64_t{-1}) == c.state.best_epoch)
    saves_.write_status(nlohmann::json{{"best", recorded["best"]}});
  const nlohmann::json st = saves_.status();
  if (st.contains("best") && st["best"].is_object()) best_ = st["best"];
  repair(c);  // best.ckpt when the best epoch is the starting one, the epoch snapshot, status.json
}

}  // namespace quantlab::experiment
