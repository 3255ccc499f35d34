// The experiment table of `quantlab list`.
#include "quantlab/experiment/listing.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <ostream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/util/error.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

std::string pct(const nlohmann::json& v) {
  if (!v.is_number()) return "-";
  std::ostringstream s;
  s << std::fixed << std::setprecision(2) << v.get<double>() << "%";
  return s.str();
}

// "diverged in epoch 3 (...)": the state of an experiment whose training stopped on a non-finite loss.
std::string diverged_text(const nlohmann::json& st, int64_t id) {
  const nlohmann::json& d = st["diverged"];
  const int64_t epoch =
      d.is_object() && d.contains("epoch") && d["epoch"].is_number_integer() ? d["epoch"].get<int64_t>() : 0;
  return "diverged in epoch " + std::to_string(epoch) +
         " (change its config.json, e.g. a lower rate, and resume with " + "--exp_id=" + std::to_string(id) + ")";
}

}  // namespace

void list_experiments(const std::string& home, const std::string& problem, std::ostream& out) {
  check_plain_name("--problem", problem);
  const Storage storage = read_storage(home);
  const ProblemPaths paths = problem_paths(storage, problem);  // an unknown problem is an error naming the known
  const std::string logs = paths.logs;
  const auto ids = Logbook::list(logs);
  if (ids.empty()) {
    out << "no experiments in " << logs << std::endl;
    return;
  }
  out << std::left << std::setw(8) << "exp" << std::setw(22) << "class" << std::setw(11) << "epochs" << std::setw(11)
      << "best epoch" << std::setw(11) << "valid acc" << std::setw(11) << "valid top5" << std::setw(11) << "test acc"
      << "state" << std::endl;
  for (int64_t id : ids) {
    const Logbook book = Logbook::open(logs, id);
    const Saves saves = book.saves();
    const bool damaged = saves.status_damaged();
    const auto st = saves.status_or_last();
    std::string cls = st.value("net_class", std::string());
    if (cls.empty()) {
      try {
        cls = book.config().at("indiv").at("net").at("class").get<std::string>();  // display only
      } catch (const std::exception&) {
        cls = "?";
      }
    }
    std::string epochs = "-", best = "-", valid = "-", top5 = "-", test = "-", state = "not started";
    if (st.contains("epochs_done")) {
      epochs = std::to_string(st.value("epochs_done", 0)) + "/" +
               (st.contains("max_epoch") ? std::to_string(st.value("max_epoch", 0)) : std::string("?"));
      if (st.value("best_epoch", 0) > 0) best = std::to_string(st.value("best_epoch", 0));
      if (st.contains("best") && st["best"].is_object()) {
        valid = pct(st["best"].value("valid_accuracy", nlohmann::json()));
        top5 = pct(st["best"].value("valid_top5_accuracy", nlohmann::json()));
      }
      if (st.contains("test") && st["test"].is_object()) test = pct(st["test"].value("accuracy", nlohmann::json()));
      std::error_code ec;
      const bool has_last = fs::exists(saves.last(), ec);
      state = st.value("finished", false) ? "finished"
              : has_last                  ? "stopped (resume with --exp_id=" + std::to_string(id) + ")"
                                          : "stopped; saves/last.ckpt is missing (--exp_id=" + std::to_string(id) +
                               " names the checkpoints that remain)";
      if (!st.value("finished", false) && st.contains("diverged")) state = diverged_text(st, id);
      if (damaged)
        state += "; saves/status.json is damaged (the figures are last.ckpt's; the next start rewrites it)";
      else if (st.value("stale", false))
        state += "; status.json lags its last checkpoint";
    } else if (damaged) {
      state = "saves/status.json is damaged";
    } else if (st.contains("diverged")) {
      state = diverged_text(st, id);
    }
    const long holder = ExperimentLock::holder(book.dir());
    if (holder != 0) state = "running" + (holder > 0 ? " (PID " + std::to_string(holder) + ")" : std::string());
    out << std::setw(8) << Logbook::folder_name(id) << std::setw(22) << cls << std::setw(11) << epochs << std::setw(11)
        << best << std::setw(11) << valid << std::setw(11) << top5 << std::setw(11) << test << state << std::endl;
  }
}

}  // namespace quantlab::experiment
