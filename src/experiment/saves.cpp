// Saves: the files of an experiment's saves/ folder.
#include "quantlab/experiment/saves.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {

namespace fs = std::filesystem;

std::string Saves::file(const config::CheckpointRef& ref) const {
  const std::string f = path(ref);
  if (fs::exists(f)) return f;
  // `last` is the highest epoch: the epoch snapshot when there is no last.ckpt (the original
  // QuantLab's folders keep only best.ckpt and epochNNNN.ckpt).
  const std::vector<int64_t> snapshots = epochs();
  if (ref.kind == config::CheckpointRef::Kind::kLast && !snapshots.empty())
    return path(config::CheckpointRef::at_epoch(snapshots.back()));
  const std::string have = available();
  if (have == "none")
    throw Error(f + ": no such checkpoint; the experiment has none yet (it has not completed an epoch)");
  throw Error(f + ": no such checkpoint; available in " + dir_ + ": " + have +
              (ref.kind == config::CheckpointRef::Kind::kBest
                   ? " (best.ckpt is written when the best-epoch statistic improves; choose another with --load=last "
                     "or --load=EPOCH)"
                   : " (choose one with --load=best, last or an epoch number)"));
}

std::vector<int64_t> Saves::epochs() const {
  std::vector<int64_t> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const int64_t n = config::epoch_of_file_name(e.path().filename().string());
    if (n >= 0) out.push_back(n);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<CheckpointInfo> Saves::inventory() const {
  std::vector<config::CheckpointRef> refs;
  for (const auto& r : {config::CheckpointRef::best(), config::CheckpointRef::last()})
    if (fs::exists(path(r))) refs.push_back(r);
  for (int64_t e : epochs()) refs.push_back(config::CheckpointRef::at_epoch(e));
  std::vector<CheckpointInfo> out;
  for (const auto& r : refs) {
    CheckpointInfo info;
    info.ref = r;
    info.file = path(r);
    try {
      info.epoch = load_checkpoint(info.file).state.epoch;
    } catch (const Error& e) {
      info.error = e.what();
    }
    out.push_back(info);
  }
  return out;
}

std::string Saves::available() const {
  std::vector<std::string> names;
  for (const char* n : {"best.ckpt", "last.ckpt"})
    if (fs::exists(dir_ + "/" + n)) names.push_back(n);
  for (int64_t e : epochs()) names.push_back(config::epoch_file_name(e));
  return names.empty() ? "none" : join(names);
}

namespace {

// A status as QuantLab writes it: an object whose fields, where present, have their types (one
// edited by hand to "epochs_done": "3" would stop every reader of it, list and compare included).
bool well_formed(const nlohmann::json& j) {
  if (!j.is_object()) return false;
  const auto is = [&](const char* key, bool (nlohmann::json::*type)() const noexcept) {
    return !j.contains(key) || (j[key].*type)();
  };
  const auto or_null = [&](const char* key, bool (nlohmann::json::*type)() const noexcept) {
    return is(key, type) || j[key].is_null();  // not yet measured
  };
  return is("epochs_done", &nlohmann::json::is_number_integer) && is("max_epoch", &nlohmann::json::is_number_integer) &&
         is("best_epoch", &nlohmann::json::is_number_integer) && is("train_seconds", &nlohmann::json::is_number) &&
         is("finished", &nlohmann::json::is_boolean) && is("net_class", &nlohmann::json::is_string) &&
         // update_metric: a number in the files of 2026-11-27
         (is("update_metric", &nlohmann::json::is_string) || is("update_metric", &nlohmann::json::is_number_integer)) &&
         or_null("best_value", &nlohmann::json::is_number) && or_null("best", &nlohmann::json::is_object) &&
         or_null("test", &nlohmann::json::is_object);
}

}  // namespace

nlohmann::json Saves::status() const {
  std::ifstream in(status_file());
  if (!in) return nlohmann::json::object();
  try {
    auto j = nlohmann::json::parse(in);
    return well_formed(j) ? j : nlohmann::json::object();
  } catch (const nlohmann::json::exception&) {  // not JSON, or a number beyond a double's range
    return nlohmann::json::object();
  }
}

bool Saves::status_damaged() const {
  std::error_code ec;
  if (!fs::exists(status_file(), ec)) return false;
  try {
    return !well_formed(config::read_json_file(status_file()));
  } catch (const Error&) {
    return true;
  }
}

nlohmann::json Saves::status_or_last() const {
  auto st = status();
  const std::string last_file = last(), file = status_file();
  std::error_code ec;
  if (!fs::exists(last_file, ec)) return st;
  if (st.contains("epochs_done") && fs::exists(file, ec) &&
      fs::last_write_time(file, ec) >= fs::last_write_time(last_file, ec))
    return st;
  try {
    const Checkpoint c = load_checkpoint(last_file);
    if (st.value("epochs_done", int64_t{-1}) != c.state.epoch) {
      st["epochs_done"] = c.state.epoch;
      // The accuracies of another best epoch than the checkpoint's are not shown beside its number
      // (list showed epoch 15 as the best with epoch 12's accuracy); the next start rewrites them.
      if (st.value("best_epoch", int64_t{-1}) != c.state.best_epoch) st.erase("best");
      st["best_epoch"] = c.state.best_epoch;
      st["net_class"] = c.net_class;
      st["stale"] = true;
    }
  } catch (const Error&) {
  }
  return st;
}

void Saves::write(const std::string& file, const Checkpoint& c) const { save_checkpoint(file, c); }

void Saves::write_bytes(const std::string& file, const std::string& bytes) const { write_file_atomically(file, bytes); }

void Saves::write_status(const nlohmann::json& status) const {
  write_file_atomically(status_file(), status.dump(2) + "\n");
}

void Saves::copy_in(const std::string& from, const std::string& file) const {
  write_file_atomically(file, read_bytes(from));  // a kill during the copy leaves no truncated file
}

std::string Saves::read_bytes(const std::string& file) const {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": cannot read");
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

}  // namespace quantlab::experiment
