// Numbered experiments of a problem: <logs>/expNNN/ with config.json (the experiment's own copy,
// which every resume uses), saves/ (checkpoints), stats/ (event files), parent.json (only for an
// experiment branched from another one's checkpoint) and .lock (lock.h).
// IDs are allocated by renaming a prepared folder into place, which is atomic: launches at the
// same moment get different IDs, and a kill never leaves a half-made experiment (only a hidden
// .new-exp-<pid>-* folder, removed by the next launch once its process is gone).
// Folders are exp%03d and grow past 999 (exp1000); lookups and sorting go by the number.
#pragma once

#include <nlohmann/json.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "quantlab/experiment/lock.h"

namespace quantlab::experiment {

class Saves;

class Logbook {
 public:
  // A new experiment with the next free ID, locked by this process (the lock is taken before the
  // folder gets its number, so no other process can open it first). `config` is written into it
  // atomically; a non-null `parent` is written as parent.json; `fill`, when given, writes what
  // else the experiment must hold from its first moment (a branch's starting checkpoint) into the
  // folder while it is still hidden: when it throws, nothing is made.
  static Logbook create(const std::string& logs_dir, const nlohmann::json& config,
                        const nlohmann::json& parent = nullptr,
                        const std::function<void(const Logbook& hidden)>& fill = nullptr);
  // An existing experiment, not locked; an unknown ID throws Error listing the existing ones.
  static Logbook open(const std::string& logs_dir, int64_t id);

  // IDs of the experiments in `logs_dir`, ascending.
  static std::vector<int64_t> list(const std::string& logs_dir);
  static std::string folder_name(int64_t id);
  // Removes .new-exp-<pid>-* folders of processes that no longer run; returns their names.
  static std::vector<std::string> remove_abandoned(const std::string& logs_dir);

  // Takes the experiment's exclusive lock for the life of this Logbook and its copies; throws
  // Error naming the process that holds it.
  void lock();
  bool locked() const { return lock_ != nullptr; }

  int64_t id() const { return id_; }
  const std::string& dir() const { return dir_; }
  Saves saves() const;  // saves/: the checkpoints and status.json (saves.h)
  std::string stats() const { return dir_ + "/stats"; }
  nlohmann::json config() const;
  // parent.json, or null.
  nlohmann::json parent() const;

  // Removes the temporary files (*.tmp.<pid>) that killed processes left in the experiment's
  // folders; returns their names. Call with the lock held.
  std::vector<std::string> remove_partial_files() const;

 private:
  Logbook(int64_t id, std::string dir) : id_(id), dir_(std::move(dir)) {}
  int64_t id_;
  std::string dir_;
  std::shared_ptr<ExperimentLock> lock_;
};

// Writes `text` to `file` through a temporary file in the same folder (`file`.tmp.<pid>), flushed
// and renamed into place: readers see the old or the new content, never a mix. Throws IoError
// (disk full included) and leaves the old file untouched.
void write_file_atomically(const std::string& file, const std::string& text);

}  // namespace quantlab::experiment
