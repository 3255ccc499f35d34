// Experiment folders and atomic writes.
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/util/error.h"
#include "quantlab/util/files.h"
#include "quantlab/util/process.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

// The number of an "expNNN" folder name, or -1.
// The number of an "expNNN" folder name, or -1. Only the names QuantLab makes count (exp005, not
// exp5 or exp0005), so one number is one folder.
int64_t parse_id(const std::string& name) {
  if (name.size() < 4 || name.compare(0, 3, "exp") != 0) return -1;
  int64_t id = 0;
  for (size_t i = 3; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || i - 3 > 15) return -1;
    id = id * 10 + (name[i] - '0');
  }
  return name == Logbook::folder_name(id) ? id : -1;
}

// A temporary file of write_file_atomically's (<name>.tmp.<PID>): the PID, else 0.
long temporary_pid(const std::string& name) {
  const auto at = name.rfind(".tmp.");
  if (at == std::string::npos || at == 0 || at + 5 == name.size()) return 0;
  long pid = 0;
  for (size_t i = at + 5; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || i - at > 14) return 0;
    pid = pid * 10 + (name[i] - '0');
  }
  return pid;
}

}  // namespace

std::string Logbook::folder_name(int64_t id) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "exp%03lld", static_cast<long long>(id));
  return buf;
}

std::vector<int64_t> Logbook::list(const std::string& logs_dir) {
  std::vector<int64_t> ids;
  std::error_code ec;
  // No logs folder yet: no experiments. A link to a drive that is not mounted, or a folder that
  // cannot be read, is not "no experiments".
  if (fs::is_symlink(fs::symlink_status(logs_dir, ec)) && !fs::exists(logs_dir, ec))
    throw IoError(logs_dir + " is a link to " + fs::read_symlink(logs_dir, ec).string() +
                  ", which does not exist (a drive that is not mounted?): its experiments cannot be read");
  fs::directory_iterator it(logs_dir, ec);
  if (ec == std::errc::no_such_file_or_directory) return ids;
  if (ec) throw IoError(logs_dir + ": cannot list its experiments (" + ec.message() + ")");
  for (; !ec && it != fs::directory_iterator(); it.increment(ec)) {
    const int64_t id = parse_id(it->path().filename().string());
    std::error_code entry;
    if (id >= 0 && it->is_directory(entry)) ids.push_back(id);
  }
  if (ec) throw IoError(logs_dir + ": cannot list its experiments (" + ec.message() + ")");  // stopped midway
  std::sort(ids.begin(), ids.end());
  return ids;
}

Logbook Logbook::create(const std::string& logs_dir, const nlohmann::json& config, const nlohmann::json& parent,
                        const std::function<void(const Logbook& hidden)>& fill) {
  // The folder is prepared complete and locked under a hidden name, then renamed to the first free
  // expNNN: rename() never replaces a non-empty folder, so simultaneous launches get different
  // numbers, and a kill at any moment leaves either a complete experiment or a hidden leftover.
  const std::string tmp = logs_dir + "/.new-exp-" + std::to_string(getpid()) + "-" +
                          std::to_string(std::chrono::steady_clock::now().time_since_epoch().count());
  std::error_code ec;
  fs::create_directories(tmp + "/saves", ec);
  if (!ec) fs::create_directories(tmp + "/stats", ec);
  if (ec) throw IoError(tmp + ": cannot create experiment folder (" + ec.message() + ")");
  auto lock = std::make_shared<ExperimentLock>(tmp, "the new experiment");
  try {
    write_file_atomically(tmp + "/config.json", config.dump(2) + "\n");
    if (!parent.is_null()) write_file_atomically(tmp + "/parent.json", parent.dump(2) + "\n");
    if (fill) fill(Logbook(0, tmp));
  } catch (...) {  // a full disk: nothing is left behind
    lock.reset();
    fs::remove_all(tmp, ec);
    throw;
  }
  const auto ids = list(logs_dir);
  for (int64_t id = ids.empty() ? 1 : ids.back() + 1;; ++id) {
    const std::string dir = logs_dir + "/" + folder_name(id);
    if (::rename(tmp.c_str(), dir.c_str()) == 0) {
      try {
        sync_folder(logs_dir);
      } catch (const IoError&) {  // not durable: not made
        lock.reset();
        fs::remove_all(dir, ec);
        throw;
      }
      Logbook book(id, dir);
      book.lock_ = std::move(lock);
      return book;
    }
    if (errno != EEXIST && errno != ENOTEMPTY) {
      const int err = errno;
      fs::remove_all(tmp, ec);
      throw IoError(dir + ": cannot create experiment folder (" + std::strerror(err) + ")");
    }
  }
}

Logbook Logbook::open(const std::string& logs_dir, int64_t id) {
  const auto ids = list(logs_dir);
  if (std::find(ids.begin(), ids.end(), id) == ids.end()) {
    const std::string known = join(ids, [](int64_t i) { return std::to_string(i); });
    throw Error("experiment " + std::to_string(id) + ": no such experiment in " + logs_dir +
                (known.empty() ? " (there are none yet)" : "; existing: " + known));
  }
  for (const auto& e : fs::directory_iterator(logs_dir))
    if (parse_id(e.path().filename().string()) == id) return Logbook(id, e.path().string());
  throw Error("experiment " + std::to_string(id) + ": vanished from " + logs_dir);
}

std::vector<std::string> Logbook::remove_abandoned(const std::string& logs_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(logs_dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind(".new-exp-", 0) != 0) continue;
    const long pid = std::strtol(n.c_str() + 9, nullptr, 10);
    // Alive here, or its lock held (by a process on another machine sharing the folder): in use.
    if (pid <= 0 || process_alive(pid) || ExperimentLock::holder(e.path().string()) != 0) continue;
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm) removed.push_back(n);
  }
  return removed;
}

void Logbook::lock() {
  if (!lock_) lock_ = std::make_shared<ExperimentLock>(dir_, "experiment " + std::to_string(id_));
}

Saves Logbook::saves() const { return Saves(dir_ + "/saves"); }

std::vector<std::string> Logbook::remove_partial_files() const {
  std::vector<std::string> removed;
  for (const std::string& dir : {dir_, saves().dir(), stats()}) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      const long pid = temporary_pid(n);  // only QuantLab's own: "notes.tmp.ipynb" is the user's
      if (pid <= 0 || !e.is_regular_file(ec) || process_alive(pid)) continue;
      std::error_code rm;
      if (fs::remove(e.path(), rm)) removed.push_back(n);
    }
  }
  return removed;
}

nlohmann::json Logbook::parent() const {
  const std::string file = dir_ + "/parent.json";
  std::error_code ec;
  if (!fs::exists(file, ec)) return nullptr;
  return config::read_json_file(file);
}

nlohmann::json Logbook::config() const {
  const std::string file = dir_ + "/config.json";
  std::error_code ec;
  if (!fs::exists(file, ec)) throw IoError(file + ": missing (the experiment's own copy of its config)");
  return config::read_json_file(file);
}

void write_file_atomically(const std::string& file, const std::string& text) {
  const std::string tmp = file + ".tmp." + std::to_string(getpid());
  ::unlink(tmp.c_str());  // a leftover of this PID, or a link put there: never written through
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0644);
  if (fd < 0) throw IoError(tmp + ": cannot create (" + std::strerror(errno) + ")");
  size_t done = 0;
  int err = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      err = errno;
      break;
    }
    done += static_cast<size_t>(n);
  }
  if (!err && ::fsync(fd) != 0) err = errno;
  if (::close(fd) != 0 && !err) err = errno;
  if (!err && ::rename(tmp.c_str(), file.c_str()) != 0) err = errno;
  if (err) {
    ::unlink(tmp.c_str());
    throw IoError(file + ": cannot write (" + std::strerror(err) + "); the previous version is unchanged");
  }
  sync_folder(fs::path(file).parent_path().string());
}

}  // namespace quantlab::experiment
