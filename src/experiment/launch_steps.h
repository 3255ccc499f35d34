// The first two phases of launch() (launch.cpp): the checks and the data every rank prepares alike
// (launch_prepare.cpp), and where training starts, which the owner decides (launch_start.cpp).
// Private to src/experiment: the public entry point is quantlab/experiment/launch.h.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/data/problem.h"
#include "quantlab/dist/environment.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"

namespace quantlab::experiment::launch_steps {

// The flags alone, before anything is read: contradictions and missing companions.
void check_flags(const LaunchOptions& o);

void print_notes(const std::vector<std::string>& notes, std::ostream& out);

// --branch of an experiment without a checkpoint.
Error nothing_to_branch(int64_t exp_id);

// Everything checked before anything is created, on every rank alike.
struct Prepared {
  Storage storage;
  ProblemPaths paths;
  torch::Device device = torch::kCPU;
  std::optional<Logbook> book;  // the experiment of --exp_id
  std::string test_checkpoint;  // --mode=test: the file of --load, found before the data are read
  nlohmann::json config;
  std::unique_ptr<train::Experiment> exp;
  data::ProblemData data;
};

// The main folder, the runtime and device, the config (with --set), the network, the data, and
// the preflight check that they fit; the run's first line and notes on `out`.
// `ref`: the checkpoint of --load (or its default: last to train, best to test).
Prepared prepare(const LaunchOptions& o, const std::optional<dist::Environment>& env, bool train,
                 const config::CheckpointRef& ref, std::ostream& out);

// Where training starts: decided by rank 0 (or the only process).
struct Start {
  std::string checkpoint;  // the file to restore ("" for a new experiment or one without a checkpoint)
  bool new_folder = false;
  int stopped = 0;  // the signal that stopped the launch before it made a new experiment (nothing made)
};

// Rank 0: creates the experiment, or opens, locks, cleans and resumes it (never rewinding silently).
Start start_as_owner(const LaunchOptions& o, Prepared& p, const config::CheckpointRef& ref, std::ostream& out);

}  // namespace quantlab::experiment::launch_steps
