// A run of the command line, as a library call: create or resume an experiment, train it, test
// it, and say what was done. tools/quantlab.cpp only parses flags into LaunchOptions and reports;
// tests call launch() directly, and the distributed launcher reuses it.
// Everything that can be checked is checked before anything is created: flags, the main folder,
// the problem, the config, the data, and that the network fits the data (train/preflight.h).
// Training an existing experiment takes its lock (experiment/lock.h), cleans what a killed run left
// behind, and never replaces a later state silently: without --load it continues from `last`;
// from an earlier checkpoint it refuses unless --branch asks for a new experiment.
// In a data-parallel run every rank prepares alike; rank 0 alone creates or resumes the experiment
// (and tells the others which, or its error), writes checkpoints, events and the console.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "quantlab/train/training_state.h"

namespace quantlab::experiment {

enum class LaunchMode { kTrain, kTest };

// The command line's flags, typed (defaults as the command line's).
struct LaunchOptions {
  std::string problem, topology;
  std::string home = ".";
  std::optional<int64_t> exp_id;
  std::optional<std::string> load;  // best | last | EPOCH; default: last to train, best to test
  LaunchMode mode = LaunchMode::kTrain;
  bool branch = false;                 // train from --load's checkpoint in a new experiment
  std::optional<std::string> config;   // --config: a new experiment's config file (default config.json)
  std::vector<std::string> overrides;  // --set PATH=VALUE, in order (config/overrides.h)
  std::string device = "auto";
  std::string data;  // --data: the data folder (default: the problem's own)
  int64_t ckpt_every = 50;
  int64_t log_every = 0;
  int threads = 0;
  bool amp = false;            // --amp: convolutions and matrix products in bfloat16 (docs/GPU.md)
  bool deterministic = false;  // --deterministic: deterministic algorithms (util/runtime.h)
  bool channels_last = false;  // --channels_last: convolutions in channels-last on CUDA too
  // Data parallel (dist/environment.h: the run is one of several processes when torchrun, SLURM or
  // `quantlab --nproc` set the environment): the master when it must be given, the collective
  // timeout, and the number of local processes (for the resume command).
  std::string master_addr;
  int master_port = 0;
  int dist_timeout_s = 60;
  int dist_start_timeout_s = 900;  // the start-up and rank 0's checkpoints, which the others wait for
  int nproc = 0;
  bool standalone = false;  // one process whatever the environment says (a sweep's unit under srun)
  // Called with a new experiment's number once its folder is made, before its first epoch (a sweep
  // records its unit's experiment there, so that it is known while it trains).
  std::function<void(int64_t)> on_created;
};

// Where a training launch's time went, in seconds; printed after its final test.
struct PhaseTimes {
  double start_up = 0.0;     // from launch() to the first epoch: data, network, checkpoint restore
  double train = 0.0;        // the training passes, all epochs
  double validation = 0.0;   // the validation passes, all epochs
  double checkpoints = 0.0;  // after each epoch: checkpoints, status and logs written
  double test = 0.0;         // the final test, the best weights loaded
};

struct LaunchResult {
  int64_t exp_id = -1;
  int64_t epochs_done = 0;
  std::optional<train::EpochStats> test;  // the final test (or --mode=test)
  std::string tested;                     // which weights it used, in words
  int interrupted_by = 0;                 // the signal that stopped training, 0 when it was not stopped
  bool owner = true;                      // rank 0 or the only process: the one that speaks for the run
  std::string launcher;                   // "torchrun" or "SLURM" when one started the processes
  PhaseTimes times;                       // of a training launch
};

// Runs one launch. `stop`, when given, is polled between batches (a signal number, 0 = go on).
// Progress and notes go to `out`. Throws Error (and its kinds) on anything the user must fix.
LaunchResult launch(const LaunchOptions& options, const std::atomic<int>* stop, std::ostream& out);

}  // namespace quantlab::experiment
