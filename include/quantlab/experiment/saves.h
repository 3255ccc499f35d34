// An experiment's saves/ folder, and the one place that names, finds, reads and writes its files:
//   saves/last.ckpt          after every epoch ("last" is the highest epoch, never a file time)
//   saves/best.ckpt          when the best-epoch statistic improves
//   saves/epochNNNN.ckpt     every --ckpt_every epochs (NNNN = epochs completed)
//   saves/status.json        epochs done, the best epoch and its accuracy, the test accuracy once
//                            known, finished: what `quantlab list` shows
// Every write is atomic (a temporary file in the folder, flushed and renamed into place). What is
// written when belongs to the run's bookkeeping (session.h); Logbook::saves() gives the folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/experiment/checkpoint.h"

namespace quantlab::experiment {

// A checkpoint file of an experiment and what loading it found.
struct CheckpointInfo {
  std::string file;
  config::CheckpointRef ref;
  int64_t epoch = -1;  // epochs completed; -1 when unusable
  std::string error;   // why it is unusable ("" when usable)
};

class Saves {
 public:
  explicit Saves(std::string dir) : dir_(std::move(dir)) {}

  const std::string& dir() const { return dir_; }
  std::string last() const { return dir_ + "/last.ckpt"; }
  std::string best() const { return dir_ + "/best.ckpt"; }
  std::string epoch(int64_t epochs_done) const { return dir_ + "/" + config::epoch_file_name(epochs_done); }
  std::string status_file() const { return dir_ + "/status.json"; }
  // The file `ref` names, whether or not it exists.
  std::string path(const config::CheckpointRef& ref) const { return dir_ + "/" + ref.file_name(); }

  // The file `ref` names (`last`: last.ckpt, or the highest epochNNNN.ckpt where there is none, as
  // in the original's folders); throws Error naming it and listing the checkpoints that exist when
  // there is none.
  std::string file(const config::CheckpointRef& ref) const;
  // Epoch numbers of the epochNNNN.ckpt files, ascending.
  std::vector<int64_t> epochs() const;
  // Every checkpoint file (best, last, epochNNNN), loaded to learn its epoch.
  std::vector<CheckpointInfo> inventory() const;
  // "best.ckpt, last.ckpt, epoch0002.ckpt" or "none".
  std::string available() const;

  // status.json (an empty object when there is none, it is unreadable, or a field of its own has
  // another type than QuantLab writes).
  nlohmann::json status() const;
  // Whether status.json is there but unreadable or so mistyped (damaged by hand or by a full disk).
  bool status_damaged() const;
  // status.json, or what last.ckpt says when status.json is missing or older (a kill between the
  // two): then "stale" is true.
  nlohmann::json status_or_last() const;

  void write(const std::string& file, const Checkpoint& c) const;
  void write_bytes(const std::string& file, const std::string& bytes) const;
  void write_status(const nlohmann::json& status) const;
  // A copy of `from` (a file of another experiment) as `file`; throws IoError naming both.
  void copy_in(const std::string& from, const std::string& file) const;
  // The contents of `file`; throws IoError when it cannot be read.
  std::string read_bytes(const std::string& file) const;

 private:
  std::string dir_;
};

}  // namespace quantlab::experiment
