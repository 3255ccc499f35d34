// Numbered experiments of a problem: <logs>/expNNN/ with config.json (the experiment's own copy,
// which every resume uses), saves/ (checkpoints) and stats/ (event files).
// IDs are allocated by renaming a prepared folder into place, which is atomic: launches at the
// same moment get different IDs, and a kill never leaves a half-made experiment.
// Folders are exp%03d and grow past 999 (exp1000); lookups and sorting go by the number.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace quantlab {

class Logbook {
 public:
  // A new experiment with the next free ID; `config` is written into it atomically.
  static Logbook create(const std::string& logs_dir, const nlohmann::json& config);
  // An existing experiment; an unknown ID throws Error listing the existing ones.
  static Logbook open(const std::string& logs_dir, int64_t id);

  // IDs of the experiments in `logs_dir`, ascending.
  static std::vector<int64_t> list(const std::string& logs_dir);
  static std::string folder_name(int64_t id);

  int64_t id() const { return id_; }
  const std::string& dir() const { return dir_; }
  std::string saves() const { return dir_ + "/saves"; }
  std::string stats() const { return dir_ + "/stats"; }
  nlohmann::json config() const;

 private:
  Logbook(int64_t id, std::string dir) : id_(id), dir_(std::move(dir)) {}
  int64_t id_;
  std::string dir_;
};

// Writes `text` to `file` through a temporary file in the same folder, flushed and renamed into
// place: readers see the old or the new content, never a mix. Throws IoError (disk full included)
// and leaves the old file untouched.
void write_file_atomically(const std::string& file, const std::string& text);

}  // namespace quantlab
