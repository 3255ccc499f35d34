// Session: checkpoints of a run, their lookup and repair, and status.json.
#include "quantlab/experiment/session.h"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

// Epoch numbers of the saves/epochNNNN.ckpt files, ascending.
std::vector<int64_t> epoch_files(const std::string& saves) {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(saves, ec)) {
    const int64_t n = epoch_of_file_name(e.path().filename().string());
    if (n >= 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string read_bytes(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot read");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

// Accuracy in percent from an error, or null when not measured.
nlohmann::json accuracy(double error) { return std::isnan(error) ? nlohmann::json() : nlohmann::json(100.0 - error); }

}  // namespace

Session::Session(Experiment& exp, const Logbook& book, int64_t ckpt_every, Statistic best_statistic)
    : exp_(exp), book_(book), ckpt_every_(ckpt_every), best_statistic_(best_statistic) {
  const auto st = status(book);
  if (st.contains("best") && st["best"].is_object()) best_ = st["best"];
  if (st.contains("train_seconds") && st["train_seconds"].is_number())
    train_seconds_ = st["train_seconds"].get<double>();
}

void Session::on_epoch(const EpochRecord& r, const TrainingState& state, const std::vector<torch::Tensor>& rng_ranks) {
  train_seconds_ += r.seconds;
  Checkpoint c = capture(exp_, state);
  c.rng_ranks = rng_ranks;
  const std::string saves = book_.saves();
  save_checkpoint(saves + "/last.ckpt", c);
  if (r.best) save_checkpoint(saves + "/best.ckpt", c);
  if (ckpt_every_ > 0 && state.epoch % ckpt_every_ == 0) save_checkpoint(saves + "/" + epoch_file_name(state.epoch), c);
  if (r.best)
    best_ = {{"epoch", r.epoch},
             {"valid_accuracy", accuracy(r.valid.metric)},
             {"valid_top5_accuracy", accuracy(r.valid.top5)},
             {"train_accuracy", accuracy(r.train.metric)}};
  write_status(state);
}

void Session::on_test(const EpochStats& test, const std::string& what, int64_t epoch) {
  test_ = {{"weights", what},
           {"epoch", epoch},
           {"accuracy", accuracy(test.metric)},
           {"top5_accuracy", accuracy(test.top5)},
           {"loss", test.loss}};
  auto st = status(book_);
  st["test"] = test_;
  write_file_atomically(book_.saves() + "/status.json", st.dump(2) + "\n");
}

void Session::write_status(const TrainingState& state) {
  nlohmann::json status = {
      {"epochs_done", state.epoch},
      {"max_epoch", exp_.max_epoch},
      {"net_class", exp_.net_spec.cls},
      {"update_metric", statistic_name(best_statistic_)},
      {"best_epoch", state.best_epoch},
      {"best_value", std::isnan(state.best_value) ? nlohmann::json() : nlohmann::json(state.best_value)},
      {"best", best_},
      {"train_seconds", train_seconds_},  // the epochs' wall time, summed over the sessions
      {"finished", state.epoch >= exp_.max_epoch}};
  write_file_atomically(book_.saves() + "/status.json", status.dump(2) + "\n");
}

std::vector<std::string> Session::repair(const Checkpoint& last) {
  std::vector<std::string> done;
  const auto st = status(book_);
  if (st.value("epochs_done", int64_t{-1}) == last.state.epoch) return done;
  const std::string saves = book_.saves();
  const std::string bytes = read_bytes(saves + "/last.ckpt");
  if (last.state.best_epoch == last.state.epoch && last.state.epoch > 0) {
    write_file_atomically(saves + "/best.ckpt", bytes);
    done.push_back("best.ckpt");
    // The best epoch's accuracies are those of the last checkpoint's statistics.
    best_ = {{"epoch", last.state.epoch},
             {"valid_accuracy", accuracy(last.state.stats[Statistic::kValidMetric])},
             {"valid_top5_accuracy", nullptr},
             {"train_accuracy", accuracy(last.state.stats[Statistic::kTrainMetric])}};
  }
  const std::string snapshot = saves + "/" + epoch_file_name(last.state.epoch);
  if (ckpt_every_ > 0 && last.state.epoch > 0 && last.state.epoch % ckpt_every_ == 0 && !fs::exists(snapshot)) {
    write_file_atomically(snapshot, bytes);
    done.push_back(epoch_file_name(last.state.epoch));
  }
  write_status(last.state);
  done.push_back("status.json");
  return done;
}

std::string Session::available(const Logbook& book) {
  const std::string saves = book.saves();
  std::vector<std::string> names;
  for (const char* n : {"best.ckpt", "last.ckpt"})
    if (fs::exists(saves + "/" + n)) names.push_back(n);
  for (int64_t e : epoch_files(saves)) names.push_back(epoch_file_name(e));
  return names.empty() ? "none" : join(names);
}

std::string Session::checkpoint_file(const Logbook& book, const CheckpointRef& ref) {
  const std::string file = book.saves() + "/" + ref.file_name();
  if (!fs::exists(file))
    throw Error(file + ": no such checkpoint; available in " + book.saves() + ": " + available(book));
  return file;
}

std::vector<CheckpointInfo> Session::inventory(const Logbook& book) {
  std::vector<CheckpointRef> refs;
  for (const auto& r : {CheckpointRef::best(), CheckpointRef::last()})
    if (fs::exists(book.saves() + "/" + r.file_name())) refs.push_back(r);
  for (int64_t e : epoch_files(book.saves())) refs.push_back(CheckpointRef::at_epoch(e));
  std::vector<CheckpointInfo> out;
  for (const auto& r : refs) {
    CheckpointInfo info;
    info.ref = r;
    info.file = book.saves() + "/" + r.file_name();
    try {
      info.epoch = load_checkpoint(info.file).state.epoch;
    } catch (const Error& e) {
      info.error = e.what();
    }
    out.push_back(info);
  }
  return out;
}

nlohmann::json Session::status(const Logbook& book) {
  std::ifstream in(book.saves() + "/status.json");
  if (!in) return nlohmann::json::object();
  try {
    auto j = nlohmann::json::parse(in);
    return j.is_object() ? j : nlohmann::json::object();
  } catch (const nlohmann::json::parse_error&) {
    return nlohmann::json::object();
  }
}

}  // namespace quantlab
