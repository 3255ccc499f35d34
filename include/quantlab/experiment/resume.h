// Where a training launch on an existing experiment starts, so that a later state is never
// replaced silently (docs/RELIABILITY.md §2): `last` (the default) is the newest state; a missing
// `last.ckpt` next to other checkpoints is refused, naming the newest usable one and the --load
// that resumes from it; an earlier checkpoint (best, an epoch) is marked `earlier` when a later one
// exists, and only --branch may train from it.
#pragma once

#include <string>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/experiment/logbook.h"

namespace quantlab::experiment {

struct ResumePoint {
  bool fresh = false;  // no checkpoint at all: from epoch 1
  std::string file;    // else the checkpoint to load
  Checkpoint checkpoint;
  bool earlier = false;  // a later checkpoint exists (then only --branch may train from here)
  int64_t newest = 0;    // the newest usable epoch
  std::string newest_file;
};

// Throws Error with what to do when `ref` cannot or must not be trained from.
ResumePoint choose_resume(const Logbook& book, const config::CheckpointRef& ref);

struct LaunchOptions;  // launch.h

// The command that resumes experiment `exp_id` with the same data, device and settings; under an
// outside launcher (`launcher`: "torchrun" or "SLURM", dist::Environment::source) with it, so that
// the resume keeps the number of processes.
std::string resume_command(const LaunchOptions& options, int64_t exp_id, const std::string& launcher = "");

}  // namespace quantlab::experiment
