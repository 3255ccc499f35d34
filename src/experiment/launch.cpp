// launch(): one run of the command line.
#include "quantlab/experiment/launch.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>

#include "quantlab/config/json_node.h"
#include "quantlab/config/overrides.h"
#include "quantlab/dist/communicator.h"
#include "quantlab/dist/group.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/topology/layout.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/experiment/transfer.h"
#include "quantlab/log/training_log.h"
#include "quantlab/train/preflight.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/build_info.h"
#include "quantlab/util/cpu_features.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

namespace fs = std::filesystem;

void check_flags(const LaunchOptions& o) {
  if (o.problem.empty() || o.topology.empty()) throw Error("--problem and --topology are required (see --help)");
  check_plain_name("--problem", o.problem);
  check_plain_name("--topology", o.topology);
  if (o.config) check_plain_name("--config", *o.config);
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
}

// Progress lines on `out`, redrawn in place only when it is a terminal's standard output.
Progress progress_on(std::ostream& out) { return &out == &std::cout ? Progress::on_stdout() : Progress(out, false); }

void print_notes(const std::vector<std::string>& notes, std::ostream& out) {
  for (const auto& n : notes) out << "note: " << n << std::endl;
}

void print_test(std::ostream& out, const std::string& what, const train::EpochStats& s) {
  out << what << ": " << train::stats_text(s) << " (" << s.samples << " images)" << std::endl;
}

// This process's CPU generator state, for checkpoints of data-parallel runs.
torch::Tensor cpu_rng_state() { return at::detail::getDefaultCPUGenerator().get_state(); }

// Everything checked before anything is created, on every rank alike.
struct Prepared {
  Storage storage;
  ProblemPaths paths;
  torch::Device device = torch::kCPU;
  std::optional<Logbook> book;  // the experiment of --exp_id
  nlohmann::json config;
  std::unique_ptr<train::Experiment> exp;
  data::ProblemData data;
};

Prepared prepare(const LaunchOptions& o, const std::optional<dist::Environment>& env, bool train, std::ostream& out) {
  Prepared p;
  p.storage = read_storage(o.home);
  p.paths = problem_paths(p.storage, o.problem);
  int threads = o.threads;
  if (threads == 0 && env) threads = std::max(1, available_cores() / env->local_world_size);  // the cores shared
  configure_runtime(threads);
  if (o.threads > available_cores())
    out << "note: --threads=" << o.threads << " is more than the " << available_cores()
        << " cores this process may use; the extra threads only take turns" << std::endl;
  p.device = resolve_device(o.device);
  if (env && p.device.is_cuda()) p.device = torch::Device(torch::kCUDA, static_cast<int16_t>(env->local_rank));
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
  } else {
    const std::string file = p.paths.dir + "/" + o.config.value_or("config.json");
    if (!fs::exists(file))
      throw IoError(file +
                    ": no such file (each problem keeps its config in <home>/<Problem>/; `quantlab problem add " +
                    o.problem + "` makes one)");
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
  return p;
}

// Where training starts: decided by rank 0 (or the only process).
struct Start {
  std::string checkpoint;  // the file to restore ("" for a new experiment or one without a checkpoint)
  bool new_folder = false;
};

// A new experiment: the pretrained tensors first (a wrong indiv.net.pretrained stops the launch
// before it makes anything), then the folder.
Start create_experiment(Prepared& p, std::ostream& out) {
  const int64_t copied = apply_pretrained(*p.exp, p.paths);
  prepare_storage(p.storage, p.paths);
  const auto removed = Logbook::remove_abandoned(p.paths.logs);
  if (!removed.empty())
    out << "removed " << removed.size() << " unfinished experiment folder(s) of stopped launches" << std::endl;
  p.book = Logbook::create(p.paths.logs, p.config);
  out << "experiment " << p.book->id() << ": " << p.book->dir() << std::endl;
  if (copied) out << "copied " << copied << " pretrained tensors (indiv.net.pretrained)" << std::endl;
  return {"", true};
}

// The file of `parent` holding the weights of the best epoch up to `c` (the branch's inherited
// best): `c`'s own file when that epoch is its own, else the parent's best.ckpt or epoch snapshot
// of that epoch; "" when none is kept.
std::string inherited_best(const Saves& parent, const Checkpoint& c, const std::string& c_file) {
  const int64_t epoch = c.state.best_epoch;
  if (epoch <= 0) return "";
  if (epoch == c.state.epoch) return c_file;
  for (const std::string& f : {parent.best(), parent.epoch(epoch)}) {
    if (!fs::exists(f)) continue;
    try {
      if (load_checkpoint(f).state.epoch == epoch) return f;
    } catch (const Error&) {
    }
  }
  return "";
}

// --branch: a new experiment that starts from `r` and records the experiment of `p.book` as its
// parent, which is left as it is.
Start branch_from(const LaunchOptions& o, Prepared& p, const ResumePoint& r, std::ostream& out) {
  const std::string from = fs::path(r.file).filename().string();
  const nlohmann::json parent = {
      {"exp_id", p.book->id()}, {"checkpoint", from}, {"epoch", r.checkpoint.state.epoch}, {"dir", p.book->dir()}};
  const Logbook parent_book = *p.book;
  Checkpoint c = r.checkpoint;
  const std::string best = inherited_best(parent_book.saves(), c, r.file);
  if (best.empty() && c.state.best_epoch > 0) {
    out << "note: no checkpoint of experiment " << parent_book.id() << " holds the weights of its best epoch up to "
        << "here (" << c.state.best_epoch << "): the branch chooses its best epoch among its own" << std::endl;
    c.state.best_epoch = 0;
    c.state.best_value = NAN;
  }
  p.book = Logbook::create(p.paths.logs, p.config, parent);
  Session(*p.exp, *p.book, o.ckpt_every, p.exp->protocol.update_metric).start_branch(parent_book.saves(), c, best);
  out << "experiment " << p.book->id() << ": " << p.book->dir() << ", branched from experiment " << parent_book.id()
      << " at " << from << " (after epoch " << r.checkpoint.state.epoch << "); experiment " << parent_book.id()
      << " is left as it is" << std::endl;
  return {p.book->saves().last(), true};
}

// Training goes on in the experiment of `p.book` from `r`; the save of its epoch that a stop
// interrupted is completed first.
Start continue_from(const LaunchOptions& o, Prepared& p, const config::CheckpointRef& ref, const ResumePoint& r,
                    std::ostream& out) {
  out << "experiment " << p.book->id() << ": continuing from " << r.file << " (after epoch " << r.checkpoint.state.epoch
      << ")" << std::endl;
  if (ref.kind == config::CheckpointRef::Kind::kLast) {
    // last.ckpt older than the recorded history: replaced by hand (a rollback). Training from it
    // here would overwrite the later best.ckpt and history; a branch keeps them.
    const int64_t recorded = p.book->saves().status().value("epochs_done", int64_t{-1});
    if (recorded > r.checkpoint.state.epoch)
      throw Error("experiment " + std::to_string(p.book->id()) + ": saves/last.ckpt is after epoch " +
                  std::to_string(r.checkpoint.state.epoch) + ", but status.json records " + std::to_string(recorded) +
                  " epochs (was last.ckpt replaced by an earlier checkpoint?); training from it here would "
                  "overwrite the later history. Train from it in a new experiment with --load=last --branch, or "
                  "put the newer last.ckpt back");
    const auto repaired = Session(*p.exp, *p.book, o.ckpt_every, p.exp->protocol.update_metric).repair(r.checkpoint);
    if (!repaired.empty())
      out << "completed the save of epoch " << r.checkpoint.state.epoch
          << " that a stop interrupted: " << join(repaired) << std::endl;
  }
  return {r.file, false};
}

// Rank 0: creates the experiment, or opens, locks, cleans and resumes it (never rewinding silently).
Start start_as_owner(const LaunchOptions& o, Prepared& p, const config::CheckpointRef& ref, std::ostream& out) {
  if (!p.book) return create_experiment(p, out);
  p.book->lock();
  const auto removed = p.book->remove_partial_files();
  if (!removed.empty())
    out << "removed " << removed.size() << " partial file(s) a stopped run left: " << join(removed) << std::endl;
  const ResumePoint r = choose_resume(*p.book, ref);
  if (r.fresh) {
    out << "experiment " << p.book->id() << " has no checkpoint yet: training it from epoch 1" << std::endl;
    return {};
  }
  print_notes(r.checkpoint.notes, out);
  if (r.earlier && !o.branch) {
    const std::string from = fs::path(r.file).filename().string();
    throw Error("experiment " + std::to_string(p.book->id()) + " has trained " + std::to_string(r.newest) +
                " epochs (" + r.newest_file + "); " + from + " is after epoch " +
                std::to_string(r.checkpoint.state.epoch) +
                ", and training from it here would overwrite the later checkpoints and history. Continue with "
                "--load=last, or add --branch to train from " +
                from + " in a new experiment that records this one as its parent");
  }
  return o.branch ? branch_from(o, p, r, out) : continue_from(o, p, ref, r, out);
}

// Every rank's generator: restored from a checkpoint of as many processes, else drawn apart from
// rank 0's (which keeps the single-process stream) by the seed, the rank and the epoch.
void set_rank_generator(const dist::Communicator& comm, const Checkpoint* c, const train::Experiment& exp,
                        int64_t epoch, std::ostream& out) {
  if (c && static_cast<int>(c->rng_ranks.size()) == comm.world_size()) {
    at::Generator gen = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
    gen.set_state(c->rng_ranks[static_cast<size_t>(comm.rank())]);
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
        p_(prepare(o, env_, train_, out_)),
        group_(env_, p_.device, std::chrono::seconds(o.dist_timeout_s), out_) {}

  LaunchResult run() {
    const Start start = train_ ? agree_start() : Start{p_.book->saves().file(ref_), false};
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
    const auto decided = nlohmann::json::parse(group_.decided_by_owner("start", [&] {
      start = start_as_owner(o_, p_, ref_, out_);
      const std::string ckpt = start.checkpoint.empty() ? "" : fs::path(start.checkpoint).filename().string();
      return nlohmann::json{{"exp_id", p_.book->id()}, {"checkpoint", ckpt}}.dump();
    }));
    if (!owner_) {
      p_.book = Logbook::open(p_.paths.logs, decided["exp_id"].get<int64_t>());
      const std::string ckpt = decided["checkpoint"].get<std::string>();
      if (!ckpt.empty()) start.checkpoint = p_.book->saves().dir() + "/" + ckpt;
    }
    return start;
  }

  // The start's checkpoint into the experiment, the same weights on every rank, each rank's
  // generator.
  train::TrainingState restore_start(const Start& start) {
    train::TrainingState state;
    std::optional<Checkpoint> restored;
    if (!start.checkpoint.empty()) {
      if (!fs::exists(start.checkpoint))
        throw IoError(start.checkpoint +
                      ": not readable on this machine; every process resuming an experiment reads "
                      "its checkpoint, so the experiment folder must be on a file system they all share");
      restored = load_checkpoint(start.checkpoint);
      if (!train_) print_notes(restored->notes, out_);
      restore(*p_.exp, *restored);
      state = restored->state;
    }
    group_.share_state(*p_.exp->net);  // the same weights everywhere (transfer, restore, initialisation)
    if (dist::Communicator* comm = group_.communicator()) {
      set_rank_generator(*comm, restored ? &*restored : nullptr, *p_.exp, state.epoch, out_);
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
    result_.test = trainer.test();
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
        if (session) session->on_epoch(r, trainer.state(), rngs);
        if (log) log->on_epoch(r);
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
    return Error(std::string(e.what()) + ". Stopped; nothing of epoch " + std::to_string(e.epoch) + " was saved" +
                 (done > 0 ? ", and " + p_.book->saves().last() + " (after epoch " + std::to_string(done) +
                                 ") is the last good state"
                           : "") +
                 ". Change the settings in " + p_.book->dir() +
                 "/config.json (e.g. a lower treat.optimizer.params.lr), then resume with: " +
                 resume_command(o_, p_.book->id()));
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
      if (owner_) {
        const Checkpoint c = load_checkpoint(best);
        restore(*p_.exp, c);
        tested_epoch = c.state.epoch;
        best_valid_accuracy = 100.0 - c.state.stats[train::Statistic::kValidMetric];
      }
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
  check_flags(o);
  return Launch(o, stop, console).run();
}

}  // namespace quantlab::experiment
