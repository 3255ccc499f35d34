// Which checkpoint of an experiment a user means: --load=best|last|EPOCH, and the "epoch" of
// indiv.net.pretrained. Parsed once from the text; the file name follows from it.
//   best -> saves/best.ckpt   last -> saves/last.ckpt   12 -> saves/epoch0012.ckpt
#pragma once

#include <cstdint>
#include <string>

namespace quantlab::config {

struct CheckpointRef {
  enum class Kind { kBest, kLast, kEpoch };
  Kind kind = Kind::kLast;
  int64_t epoch = 0;  // kEpoch: the number of epochs completed (>= 1)

  static CheckpointRef best() { return {Kind::kBest, 0}; }
  static CheckpointRef last() { return {Kind::kLast, 0}; }
  static CheckpointRef at_epoch(int64_t e) { return {Kind::kEpoch, e}; }

  // "best", "last" or a positive epoch number; anything else throws Error naming `what` (the
  // flag or JSON path the text came from).
  static CheckpointRef parse(const std::string& text, const std::string& what);

  std::string text() const;       // "best", "last", "12"
  std::string file_name() const;  // "best.ckpt", "last.ckpt", "epoch0012.ckpt"
  bool operator==(const CheckpointRef& o) const { return kind == o.kind && epoch == o.epoch; }
};

// "epoch0012.ckpt" for 12 epochs completed (at least four digits, more past 9999).
std::string epoch_file_name(int64_t epochs_done);

// The epoch of an "epochNNNN.ckpt" name, or -1 for any other name.
int64_t epoch_of_file_name(const std::string& name);

}  // namespace quantlab::config
