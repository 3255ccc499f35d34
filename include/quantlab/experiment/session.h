// The bookkeeping of one run (the original's protocol): checkpoints after every epoch, the best
// one, periodic snapshots and a small status file, and finding the checkpoint --load names.
//   saves/last.ckpt          after every epoch ("last" is the highest epoch, never a file time)
//   saves/best.ckpt          when protocol.update_metric improves
//   saves/epochNNNN.ckpt     every --ckpt_every epochs (NNNN = epochs completed)
//   saves/status.json        epochs done, best epoch and value, finished: for `quantlab list`
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/logbook.h"

namespace quantlab {

class Session {
 public:
  Session(Experiment& exp, const Logbook& book, int64_t ckpt_every);

  // Called after each epoch by the trainer.
  void on_epoch(const EpochRecord& r, const TrainingState& state);

  // The file --load=best|last|N names in `book`; throws Error naming it and listing the
  // checkpoints that exist when it does not.
  static std::string checkpoint_file(const Logbook& book, const std::string& load);

  // Reads saves/status.json (an empty object when there is none).
  static nlohmann::json status(const Logbook& book);

 private:
  Experiment& exp_;
  const Logbook& book_;
  int64_t ckpt_every_;
};

// Copies the tensors of a checkpoint whose names start with one of `prefixes` (all when empty)
// into `exp`'s network: indiv.net.pretrained = {"exp_id": N, "epoch": "best"|"last"|N,
// "prefixes": [...]} or {"file": PATH, "prefixes": [...]}. Returns how many tensors were copied.
int64_t apply_pretrained(Experiment& exp, const std::string& logs_dir);

}  // namespace quantlab
