// launch(): one run of the command line, phase by phase (class Launch below); the checks and the
// data, and where training starts, are in launch_prepare.cpp and launch_start.cpp.
#include "quantlab/experiment/launch.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "launch_steps.h"
#include "quantlab/dist/communicator.h"
#include "quantlab/dist/group.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/config_diff.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/session.h"
#include "quantlab/log/training_log.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/error.h"
#include "quantlab/util/progress.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;
using launch_steps::Prepared;
using launch_steps::print_notes;
using launch_steps::Start;

// Progress lines on `out`, redrawn in place only when it is a terminal's standard output.
Progress progress_on(std::ostream& out) { return &out == &std::cout ? Progress::on_stdout() : Progress(out, false); }

void print_test(std::ostream& out, const std::string& what, const train::EpochStats& s) {
  out << what << ": " << train::stats_text(s) << " (" << s.samples << " images)" << std::endl;
}

// This process's CPU generator state, and its GPU's, for checkpoints of data-parallel runs.
torch::Tensor cpu_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }
torch::Tensor device_rng_state(const torch::Device& device) {
  return at::globalContext().defaultGenerator(device).get_state();
}

// Every rank's generator: restored from a checkpoint of as many processes, else drawn apart from
// rank 0's (which keeps the single-process stream) by the seed, the rank and the epoch.
void set_rank_generator(const dist::Communicator& comm, const Checkpoint* c, const train::Experiment& exp,
                        int64_t epoch, std::ostream& out) {
  if (c && static_cast<int>(c->rng_ranks.size()) == comm.world_size()) {
    try {                                                        // libtorch's own checks of a state edited by hand
      at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
      gen.set_state(c->rng_ranks[static_cast<size_t>(comm.rank())]);
      if (exp.device.is_cuda() && static_cast<int>(c->rng_cuda_ranks.size()) == comm.world_size()) {
        at::Generator gpu = at::globalContext().defaultGenerator(exp.device);  // this rank's GPU's
        gpu.set_state(c->rng_cuda_ranks[static_cast<size_t>(comm.rank())]);
      }
    } catch (const c10::Error& e) {
      const std::string why = e.what_without_backtrace();
      throw Error("the checkpoint's generator state of rank " + std::to_string(comm.rank()) + " cannot be restored (" +
                  first_line(why) + ")");
    }
    return;
  }
  if (c && comm.rank() == 0)
    out << "note: resuming with " << comm.world_size() << " processes from a checkpoint of "
        << std::max<size_t>(1, c->rng_ranks.size()) << ": the run goes on, but it is not bit-identical to one that "
        << "keeps the number of processes" << std::endl;
  if (comm.rank() != 0)
    torch::manual_seed(exp.data.seed * 1000003ULL + static_cast<uint64_t>(comm.rank()) * 7919ULL +
                       static_cast<uint64_t>(epoch));
}

// One launch, phase by phase: the checks and the data (prepare), where to start (decided by the
// owner), the restored state shared by every rank, then the test alone or the training and its
// final test. Rank 0 (or the only process) owns the experiment folder and the console.
class Launch {
 public:
  Launch(const LaunchOptions& o, const std::atomic<int>* stop, std::ostream& console)
      : o_(o),
        stop_(stop),
        train_(o.mode == LaunchMode::kTrain),
        ref_(config::CheckpointRef::parse(o.load.value_or(train_ ? "last" : "best"), "--load")),
        env_(o.standalone ? std::nullopt : dist::environment_from_process({o.master_addr, o.master_port})),
        owner_(!env_ || env_->rank == 0),
        out_(owner_ ? console : silent_),
        p_(launch_steps::prepare(o, env_, train_, ref_, out_)),
        group_(env_, p_.device, std::chrono::seconds(o.dist_timeout_s), std::chrono::seconds(o.dist_start_timeout_s),
               out_) {}

  LaunchResult run() {
    const Start start = train_ ? agree_start() : Start{p_.test_checkpoint, false};
    result_.owner = owner_;
    if (env_ && (env_->source == "torchrun" || env_->source == "SLURM")) result_.launcher = env_->source;
    if (start.stopped != 0) {  // during the start-up, before a new experiment or branch was made
      result_.interrupted_by = start.stopped;
      return result_;
    }
    const train::TrainingState state = restore_start(start);
    result_.exp_id = p_.book->id();
    result_.epochs_done = state.epoch;
    result_.owner = owner_;
    return train_ ? train_then_test(start, state) : test_only(start, state);
  }

 private:
  // The owner decides (its error reaches the others too); the others open what it chose.
  Start agree_start() {
    Start start;
    const bool same = same_training_everywhere();
    const auto decided = nlohmann::json::parse(group_.decided_by_owner("start", [&] {
      if (!same) return nlohmann::json{{"differ", true}, {"training", training_settings()}}.dump();
      // A stop during the start-up (reading the data can take minutes) ends a launch that would
      // make a new experiment before it makes anything. (A branch is made, with its starting
      // point, and resumes from there; a resumed experiment stops at its first batch.)
      const int signal = stop_ ? stop_->load() : 0;
      if (signal != 0 && !p_.book) return nlohmann::json{{"stopped", signal}}.dump();
      start = launch_steps::start_as_owner(o_, p_, ref_, out_);
      const std::string ckpt = start.checkpoint.empty() ? "" : fs::path(start.checkpoint).filename().string();
      return nlohmann::json{{"exp_id", p_.book->id()}, {"checkpoint", ckpt}, {"training", training_settings()}}.dump();
    }));
    if (decided.contains("stopped")) return Start{"", false, decided["stopped"].get<int>()};
    if (decided.contains("differ")) {
      if (!owner_) check_same_training(decided["training"]);  // a rank that differs names what
      throw Error("rank " + std::to_string(env_->rank) +
                  ": another rank would train with other settings than rank 0 (that rank names them); nothing was "
                  "made. Every rank must see the same config.json and get the same arguments");
    }
    if (!owner_) {
      p_.book = Logbook::open(p_.paths.logs, decided["exp_id"].get<int64_t>());
      const std::string ckpt = decided["checkpoint"].get<std::string>();
      if (!ckpt.empty()) start.checkpoint = p_.book->saves().dir() + "/" + ckpt;
    }
    return start;
  }

  // What every rank must train with alike: the config it built its experiment from (the problem's
  // config.json and --set, or the experiment's) and the flags that change the computation.
  nlohmann::json training_settings() const {
    return {{"config", p_.exp->config},
            {"amp", o_.amp},
            {"deterministic", o_.deterministic},
            {"channels_last", o_.channels_last}};
  }

  // Whether every rank's training_settings are rank 0's (a digest of each, gathered before rank 0
  // makes anything).
  bool same_training_everywhere() {
    if (!env_) return true;
    const nlohmann::json s = training_settings();
    const std::string text = nlohmann::json{
        {"config", config_leaves(s["config"])},
        {"amp", s["amp"]},
        {"deterministic", s["deterministic"]},
        {"channels_last",
         s["channels_last"]}}.dump();
    uint64_t h = 1469598103934665603ULL;  // FNV-1a: the same on every machine and build
    for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
    const auto all = group_.gather(torch::tensor({static_cast<int64_t>(h)}, torch::kLong));
    return std::all_of(all.begin(), all.end(), [&](const torch::Tensor& t) { return torch::equal(t, all[0]); });
  }

  // A rank whose settings differ from rank 0's stops naming them: it trained on silently with
  // another rate, or failed in gloo or with "did not answer in time" (a config edited on one
  // machine, another --set, another --exp_id).
  void check_same_training(const nlohmann::json& owners) const {
    const nlohmann::json mine = training_settings();
    std::string what;
    for (const auto& d : config_differences(owners["config"], mine["config"]))
      what += (what.empty() ? "" : ", ") + d.path + " " + (d.in_a ? value_text(d.a) : "absent") + " on rank 0, " +
              (d.in_b ? value_text(d.b) : "absent") + " here";
    for (const char* flag : {"amp", "deterministic", "channels_last"})
      if (owners[flag] != mine[flag])
        what += (what.empty() ? "" : ", ") + std::string("--") + flag +
                (mine[flag].get<bool>() ? " here" : " on rank 0") + " only";
    if (!what.empty())
      throw Error("rank " + std::to_string(env_->rank) + " would train with other settings than rank 0: " + what +
                  ". Every rank must see the same config.json and get the same arguments");
  }

  // The start's checkpoint into the experiment, the same weights on every rank, each rank's
  // generator.
  train::TrainingState restore_start(const Start& start) {
    train::TrainingState state;
    std::optional<Checkpoint> restored;
    if (!start.checkpoint.empty()) {
      // Every rank reads it (a large checkpoint on a slow shared file system: the start-up
      // timeout, not the next collective's).
      group_.done_by_every_rank("read " + fs::path(start.checkpoint).filename().string(), [&] {
        if (!fs::exists(start.checkpoint))
          throw IoError(start.checkpoint +
                        ": not readable on this machine; every process resuming an experiment reads "
                        "its checkpoint, so the experiment folder must be on a file system they all share");
        restored = load_checkpoint(start.checkpoint);
      });
      if (!train_) print_notes(restored->notes, out_);
      try {
        const std::vector<std::string> notes = restore(*p_.exp, *restored, train_);
        if (train_) print_notes(notes, out_);
      } catch (const IoError&) {
        throw;
      } catch (const Error& e) {
        throw Error(start.checkpoint + ": " + e.what());
      }
      state = restored->state;
    }
    group_.share_state(*p_.exp->net);  // the same weights everywhere (transfer, restore, initialisation)
    if (dist::Communicator* comm = group_.communicator()) {
      try {
        set_rank_generator(*comm, restored ? &*restored : nullptr, *p_.exp, state.epoch, out_);
      } catch (const c10::Error&) {
        throw;
      } catch (const Error& e) {
        if (!restored) throw;
        throw Error(start.checkpoint + ": " + e.what());
      }
    } else if (train_ && restored && restored->rng_ranks.size() > 1) {
      out_ << "note: resuming with 1 process from a checkpoint of " << restored->rng_ranks.size()
           << ": the run goes on, but it is not bit-identical to one that keeps the number of processes" << std::endl;
    }
    return state;
  }

  train::TrainerOptions trainer_options() {
    train::TrainerOptions options;
    options.stop = stop_;
    options.log_every = o_.log_every;
    options.out = &out_;
    options.comm = group_.communicator();
    return options;
  }

  LaunchResult test_only(const Start& start, const train::TrainingState& state) {
    train::Trainer trainer(*p_.exp, p_.data, progress_, trainer_options());
    trainer.set_state(state);
    result_.tested = start.checkpoint.empty() ? ""
                                              : fs::path(start.checkpoint).filename().string() + ", after epoch " +
                                                    std::to_string(state.epoch);
    try {
      result_.test = trainer.test();
    } catch (const train::Interrupted& e) {  // nothing to save: the experiment is as it was
      out_ << std::endl;
      result_.interrupted_by = e.signal;
      return result_;
    }
    print_test(out_, "test (" + result_.tested + ")", *result_.test);
    return result_;
  }

  LaunchResult train_then_test(const Start& start, const train::TrainingState& state) {
    std::unique_ptr<log::TrainingLog> log;
    train::TrainerOptions options = trainer_options();
    options.on_step = [&log](int64_t step, double loss) {
      if (log) log->on_step(step, loss);
    };
    train::Trainer trainer(*p_.exp, p_.data, progress_, options);
    trainer.set_state(state);
    std::unique_ptr<Session> session;
    if (owner_) {
      session = std::make_unique<Session>(*p_.exp, *p_.book, o_.ckpt_every, trainer.best_statistic());
      log = std::make_unique<log::TrainingLog>(p_.book->stats(), *p_.exp);
      log->on_start(state, start.new_folder);
    }
    PhaseTimes& times = result_.times;
    times.start_up = seconds_since(started_);
    try {
      trainer.fit(p_.exp->max_epoch, [&](const train::EpochRecord& r) {
        const auto t0 = std::chrono::steady_clock::now();
        const std::vector<torch::Tensor> rngs = group_.gather(cpu_rng_state());
        const std::vector<torch::Tensor> gpu_rngs =
            p_.device.is_cuda() ? group_.gather(device_rng_state(p_.device)) : std::vector<torch::Tensor>{};
        // The saves may outlast a collective's wait: the others wait for them on the store.
        // The record before the checkpoints: a kill between the two then leaves an epoch that the
        // resume repeats, and its session restart replaces the record in TensorBoard; the other
        // way round, the resume started after an epoch that no file recorded.
        group_.done_by_owner("epoch " + std::to_string(r.epoch), [&] {
          if (log) log->on_epoch(r);
          if (session) session->on_epoch(r, trainer.state(), rngs, gpu_rngs);
        });
        times.train += r.seconds - r.valid_seconds;
        times.validation += r.valid_seconds;
        times.checkpoints += seconds_since(t0);
      });
    } catch (const train::Interrupted& e) {
      out_ << std::endl;
      result_.interrupted_by = e.signal;
      result_.epochs_done = trainer.state().epoch;
      return result_;
    } catch (const train::Diverged& e) {
      out_ << std::endl;
      try {  // for list and compare; a failure to write it (a full disk) does not hide the advice
        if (session) session->on_diverged(e.epoch, e.what());
      } catch (const std::exception&) {
      }
      throw diverged(e, trainer.state().epoch);
    }
    result_.epochs_done = trainer.state().epoch;
    const auto t_test = std::chrono::steady_clock::now();
    final_test(trainer, session.get(), log.get());
    times.test = seconds_since(t_test);
    char line[200];
    std::snprintf(
        line, sizeof line,
        "times: start-up %.1f s | train %.1f s | validation %.1f s | checkpoints and logs %.1f s | test %.1f s",
        times.start_up, times.train, times.validation, times.checkpoints, times.test);
    out_ << line << std::endl;
    return result_;
  }

  Error diverged(const train::Diverged& e, int64_t done) const {
    // An optimizer eps of 0 divides 0 by 0 for a parameter whose gradients are all 0 (the weights
    // of an image border that is always black): the rate is not the setting to change then.
    const nlohmann::json::json_pointer eps("/treat/optimizer/params/eps");
    const bool no_eps =
        p_.exp->config.contains(eps) && p_.exp->config[eps].is_number() && p_.exp->config[eps].get<double>() == 0.0;
    return Error(std::string(e.what()) + ". Stopped; nothing of epoch " + std::to_string(e.epoch) + " was saved" +
                 (done > 0 ? ", and " + p_.book->saves().last() + " (after epoch " + std::to_string(done) +
                                 ") is the last good state"
                           : "") +
                 ". Change the settings in " + p_.book->dir() + "/config.json (" +
                 (no_eps ? "e.g. treat.optimizer.params.eps above 0, such as 1e-8: at 0 a parameter whose gradients "
                           "are all 0 divides 0 by 0; or a lower treat.optimizer.params.lr"
                         : "e.g. a lower treat.optimizer.params.lr") +
                 "), then resume with: " + resume_command(o_, p_.book->id(), result_.launcher));
  }

  // The final test, with the weights of the best epoch when they were saved (rank 0 reads them and
  // gives them to the others).
  void final_test(train::Trainer& trainer, Session* session, log::TrainingLog* log) {
    const std::string best = p_.book->saves().best();
    const bool have_best = group_.owners_flag(owner_ && fs::exists(best));
    std::string what, weights = "last";
    int64_t tested_epoch = trainer.state().epoch;
    double best_valid_accuracy = std::nan("");
    if (have_best) {
      group_.done_by_owner("read best.ckpt", [&] {  // the others wait up to the start-up timeout
        const Checkpoint c = load_checkpoint(best);
        restore(*p_.exp, c, false);  // its weights: a branch's inherited best may hold another optimizer
        tested_epoch = c.state.epoch;
        best_valid_accuracy = 100.0 - c.state.stats[train::Statistic::kValidMetric];
      });
      group_.share_state(*p_.exp->net);
      weights = "best";
      what = "test with the weights of the best epoch (" + std::to_string(tested_epoch) + ", by " +
             train::statistic_name(trainer.best_statistic()) + ")";
    } else {
      what = "test with the weights of the last epoch (" + std::to_string(tested_epoch) +
             "): no best.ckpt was saved (the best-epoch statistic was never measured)";
    }
    try {
      result_.test = trainer.test();
    } catch (const train::Interrupted& e) {
      out_ << std::endl
           << "the final test was stopped; the training is complete and saved (" << what << "): --mode=test measures it"
           << std::endl;
      result_.interrupted_by = e.signal;
      result_.test.reset();
      return;
    }
    result_.tested = what;
    if (session) session->on_test(*result_.test, weights, tested_epoch);
    if (log) log->on_test(*result_.test, best_valid_accuracy, tested_epoch);
    print_test(out_, what, *result_.test);
  }

  static double seconds_since(std::chrono::steady_clock::time_point t) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
  }

  const std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();  // first: before p_
  const LaunchOptions& o_;
  const std::atomic<int>* stop_;
  const bool train_;
  const config::CheckpointRef ref_;
  const std::optional<dist::Environment> env_;
  const bool owner_;
  std::ostream silent_{nullptr};
  std::ostream& out_;
  Prepared p_;
  dist::Group group_;
  Progress progress_ = progress_on(out_);
  LaunchResult result_;
};

}  // namespace

LaunchResult launch(const LaunchOptions& o, const std::atomic<int>* stop, std::ostream& console) {
  launch_steps::check_flags(o);
  return Launch(o, stop, console).run();
}

}  // namespace quantlab::experiment
