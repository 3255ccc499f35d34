// launch()'s first phase (launch_steps.h): the flags, the runtime, the config, the network and the
// data, all checked before anything is created.
#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "launch_steps.h"
#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/topology/layout.h"
#include "quantlab/train/preflight.h"
#include "quantlab/util/build_info.h"
#include "quantlab/util/cpu_features.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"

namespace quantlab::experiment::launch_steps {

namespace fs = std::filesystem;

void check_flags(const LaunchOptions& o) {
  if (o.problem.empty() || o.topology.empty()) throw Error("--problem and --topology are required (see --help)");
  check_plain_name("--problem", o.problem);
  check_plain_name("--topology", o.topology);
  if (o.config) check_plain_name("--config", *o.config, "file name in <home>/<Problem>/, such as config_vgg.json");
  if (o.config && o.exp_id)
    throw Error("--config=" + *o.config + " names the config of a new experiment; experiment " +
                std::to_string(*o.exp_id) + (o.branch ? " and its branches train" : " trains") +
                " with its own copy, logs/" + Logbook::folder_name(*o.exp_id) + "/config.json (edit it there)");
  if (!o.overrides.empty() && o.exp_id && !o.branch)
    throw Error("--set " + o.overrides.front() + ": --set changes the config of a new experiment or of a --branch; " +
                "experiment " + std::to_string(*o.exp_id) + " trains with its own copy, logs/" +
                Logbook::folder_name(*o.exp_id) + "/config.json (edit it there, or add --branch to train a copy with " +
                "the change)");
  if (o.load && !o.exp_id) throw Error("--load needs --exp_id (the experiment whose checkpoint to load)");
  if (o.mode == LaunchMode::kTest && !o.exp_id) throw Error("--mode=test needs --exp_id (the experiment to evaluate)");
  if (o.branch && !o.exp_id) throw Error("--branch needs --exp_id (the experiment to branch from)");
  if (o.branch && o.mode == LaunchMode::kTest) throw Error("--branch applies to training, not to --mode=test");
  if (o.ckpt_every < 0 || o.log_every < 0) throw Error("--ckpt_every and --log_every take a number >= 0");
  if (o.dist_timeout_s < 1) throw Error("--dist_timeout takes a number of seconds >= 1");
  if (o.dist_start_timeout_s < 1) throw Error("--dist_start_timeout takes a number of seconds >= 1");
}

Error nothing_to_branch(int64_t exp_id) {
  return Error("experiment " + std::to_string(exp_id) +
               " has no checkpoint yet (it has not completed an epoch): there is nothing to branch from");
}

void print_notes(const std::vector<std::string>& notes, std::ostream& out) {
  for (const auto& n : notes) out << "note: " << n << std::endl;
}

namespace {

// The threads of one of several processes without --threads: the cores they share, or under SLURM
// with --cpus-per-task the task's own (its cores are not shared with the node's other tasks).
int default_threads(const dist::Environment& env) {
  if (env.source == "SLURM")
    if (const char* per_task = std::getenv("SLURM_CPUS_PER_TASK")) {
      const int n = std::atoi(per_task);
      if (n > 0) return std::min(n, available_cores());
    }
  return std::max(1, available_cores() / env.local_world_size);
}

}  // namespace

Prepared prepare(const LaunchOptions& o, const std::optional<dist::Environment>& env, bool train,
                 const config::CheckpointRef& ref, std::ostream& out) {
  Prepared p;
  p.storage = read_storage(o.home);
  p.paths = problem_paths(p.storage, o.problem);
  int threads = o.threads;
  if (threads == 0 && env) threads = default_threads(*env);
  configure_runtime(threads);
  if (o.threads > available_cores())
    out << "note: --threads=" << o.threads << " is more than the " << available_cores()
        << " cores this process may use; the extra threads only take turns" << std::endl;
  p.device = resolve_device(o.device);
  // GPU LOCAL_RANK of the node's; a process that sees a single GPU (SLURM's --gpus-per-task=1, a
  // CUDA_VISIBLE_DEVICES per process) takes that one.
  if (env && p.device.is_cuda()) {
    const int seen = static_cast<int>(torch::cuda::device_count());
    if (seen > 1 && env->local_rank >= seen)
      throw Error("local rank " + std::to_string(env->local_rank) + " of " + std::to_string(env->local_world_size) +
                  " on this machine, which has " + std::to_string(seen) +
                  " GPUs: one process per GPU (fewer processes per node, or --device=cpu)");
    p.device = torch::Device(torch::kCUDA, static_cast<int16_t>(seen == 1 ? 0 : env->local_rank));
  }
  configure_device_math(p.device, o.deterministic);
  topology::set_cuda_channels_last(o.channels_last);
  if (p.device.is_cpu()) {
    const std::string blas = blas_slow_path_note(), chose = blas_choice_note();
    if (!blas.empty()) out << "note: " << blas << std::endl;
    if (!chose.empty()) out << "note: " << chose << std::endl;
  }
  // The experiment's config: its own copy when it exists, else the problem's.
  if (o.exp_id) {
    p.book = Logbook::open(p.paths.logs, *o.exp_id);
    p.config = p.book->config();
    // The checkpoint to test, or the named one to train from, found before the data are read
    // (minutes on ImageNet). (`last` is chosen after the lock: a stopped save may be completed.)
    if (!train)
      p.test_checkpoint = p.book->saves().file(ref);
    else if (ref.kind != config::CheckpointRef::Kind::kLast)
      (void)p.book->saves().file(ref);
    else if (o.branch && p.book->saves().available() == "none" &&
             p.book->saves().status().value("epochs_done", int64_t{0}) == 0)  // (trained, then emptied: later)
      throw nothing_to_branch(*o.exp_id);
  } else {
    const std::string file = p.paths.dir + "/" + o.config.value_or("config.json");
    if (!fs::exists(file)) {
      // The problem's configs when it has a folder; else how to make one.
      std::vector<std::string> configs;
      std::error_code ec;
      for (const auto& e : fs::directory_iterator(p.paths.dir, ec))
        if (e.path().extension() == ".json" && e.is_regular_file(ec)) configs.push_back(e.path().filename().string());
      std::sort(configs.begin(), configs.end());
      std::string have;
      for (const auto& c : configs) have += (have.empty() ? "" : ", ") + c;
      throw IoError(file + ": no such file (" +
                    (!configs.empty() ? "the configs of " + o.problem + ": " + have + "; --config=NAME picks one"
                                      : "each problem keeps its config in <home>/<Problem>/; `quantlab problem add " +
                                            o.problem + "` makes one") +
                    ")");
    }
    p.config = config::read_json_file(file);
  }
  config::apply_overrides(p.config, o.overrides);  // checked here; the parser below checks the result
  out << "quantlab: " << o.problem << "/" << o.topology << " on " << p.device << ", " << at::get_num_threads()
      << " threads" << (env ? ", " + std::to_string(env->world_size) + " processes (" + env->source + ")" : "")
      << (o.amp ? ", bfloat16 products (--amp" +
                      (p.device.is_cpu() ? "; this CPU: " + cpu_features().bf16_summary() : std::string()) + ")"
                : "")
      << (o.deterministic ? ", deterministic" : "") << " (" << build_summary(build_info())
      << "); building the experiment..." << std::endl;
  if (o.amp && p.device.is_cpu() && !cpu_amp_note(cpu_features()).empty())
    out << "note: " << cpu_amp_note(cpu_features()) << std::endl;
  p.exp = std::make_unique<train::Experiment>(p.config, o.topology, p.device);
  p.exp->net->set_mixed_precision(o.amp);
  print_notes(p.exp->notes, out);
  if (env && train && p.exp->data.bs_train % env->world_size != 0)
    throw ConfigError("treat.data.bs_train: " + std::to_string(p.exp->data.bs_train) + " is not a multiple of the " +
                      std::to_string(env->world_size) + " processes; each process takes an equal share of every batch");
  // The data next: a missing or unreadable data set, or data that does not fit the network, stops
  // the run before an experiment is made.
  out << "loading data..." << std::flush;
  const std::string dir =
      data::find_data_dir(p.storage.home, o.problem, o.data, p.storage.data_root + "/" + o.problem + "/data");
  p.data = data::load_problem(dir, p.exp->data);
  out << " " << p.data.train_indices.size() << " training, " << p.data.valid_indices.size() << " validation, "
      << p.data.test->size() << " test images (" << p.data.format << ") from " << dir << std::endl;
  train::preflight(*p.exp, p.data);
  if (train)
    train::check_training_batches(*p.exp, static_cast<int64_t>(p.data.train_indices.size()), env ? env->world_size : 1,
                                  p.data.format != "image folders");
  return p;
}

}  // namespace quantlab::experiment::launch_steps
