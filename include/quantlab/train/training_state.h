// What a training run carries and reports, apart from the loop that produces it: one pass's
// statistics, an epoch's record, the state saved in checkpoints, and the two ways an epoch ends
// early. The checkpoint, the bookkeeping and the logs read these without the loop's own headers
// (batch loader, data parallelism).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>

#include "quantlab/train/statistic.h"
#include "quantlab/util/error.h"

namespace quantlab::train {

// One pass over a set. With no sample seen, every value is NaN.
struct EpochStats {
  double loss = NAN;    // mean over samples
  double metric = NAN;  // top-1 classification error, %; NaN when not measured
  double top5 = NAN;    // top-5 error, %, for problems that report it (ImageNet); else NaN
  int64_t samples = 0;
  double data_wait_s = 0.0;  // time the loop waited for batches (0 when the loader keeps ahead)
  double accuracy() const { return 100.0 - metric; }
  double top5_accuracy() const { return 100.0 - top5; }
};

struct EpochRecord {
  int64_t epoch = 0;  // 1-based
  EpochStats train, valid;
  double lr = 0.0;             // the rate the epoch trained with
  double seconds = 0.0;        // the whole epoch: training and validation
  double valid_seconds = 0.0;  // its validation
  bool best = false;           // improved the best-epoch statistic
};

// What the loop itself carries from epoch to epoch (saved in checkpoints).
struct TrainingState {
  int64_t epoch = 0;        // epochs completed
  int64_t best_epoch = 0;   // 1-based epoch with the best statistic; 0 before any
  double best_value = NAN;  // its value
  EpochStatistics stats;    // the last epoch's four statistics
};

// Thrown between two batches when the stop flag is raised (SIGINT, SIGTERM): the epoch is abandoned.
class Interrupted : public Error {
 public:
  Interrupted(int64_t epoch, int signal)
      : Error("interrupted during epoch " + std::to_string(epoch)), epoch(epoch), signal(signal) {}
  int64_t epoch;  // 1-based, not completed
  int signal;     // the flag's value: the signal that raised it
};

// Thrown when a training step's loss is NaN or infinite: the weights that step produced are no
// longer usable, and the epoch is abandoned before anything is saved. On the CPU every step is
// checked as it ends; on a GPU the check rides on the reads the loop makes anyway (progress lines,
// the epoch's end), so the step named is exact but the stop may come a few steps later.
class Diverged : public Error {
 public:
  // `where`: "" (this process), or "on another process" (a data-parallel run's other rank).
  Diverged(int64_t epoch, int64_t step, int64_t steps, double loss, const std::string& where = "")
      : Error("epoch " + std::to_string(epoch) + ", step " + std::to_string(step) + " of " + std::to_string(steps) +
              ": the training loss " + (where.empty() ? "" : where + " ") + "is " +
              (std::isnan(loss) ? "NaN" : "infinite") +
              "; the training diverged (a learning rate too high, a schedule or optimizer setting out of range, "
              "a loss whose weights are all zero)"),
        epoch(epoch),
        step(step) {}
  int64_t epoch;  // 1-based, not completed
  int64_t step;   // 1-based step of the epoch whose loss was not finite
};

// "loss 0.1234 acc 95.10%" (with "top5 ..%" when measured; "-" for what was not measured).
std::string stats_text(const EpochStats& s);

}  // namespace quantlab::train
