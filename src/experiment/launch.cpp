// launch(): one run of the command line.
#include "quantlab/experiment/launch.h"

#include <filesystem>
#include <iostream>

#include "quantlab/config/json_node.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/checkpoint_ref.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/experiment/transfer.h"
#include "quantlab/log/training_log.h"
#include "quantlab/train/preflight.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "quantlab/util/strings.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

void check_flags(const LaunchOptions& o) {
  if (o.problem.empty() || o.topology.empty()) throw Error("--problem and --topology are required (see --help)");
  check_plain_name("--problem", o.problem);
  check_plain_name("--topology", o.topology);
  check_plain_name("--config", o.config);
  if (o.load && !o.exp_id) throw Error("--load needs --exp_id (the experiment whose checkpoint to load)");
  if (o.mode == LaunchMode::kTest && !o.exp_id) throw Error("--mode=test needs --exp_id (the experiment to evaluate)");
  if (o.branch && !o.exp_id) throw Error("--branch needs --exp_id (the experiment to branch from)");
  if (o.branch && o.mode == LaunchMode::kTest) throw Error("--branch applies to training, not to --mode=test");
  if (o.ckpt_every < 0 || o.log_every < 0) throw Error("--ckpt_every and --log_every take a number >= 0");
}

// Where a training launch on an existing experiment starts.
struct ResumePoint {
  bool fresh = false;  // no checkpoint at all: from epoch 1
  std::string file;    // else the checkpoint to load
  Checkpoint checkpoint;
  bool earlier = false;  // a later checkpoint exists (then only --branch may train from here)
  int64_t newest = 0;    // the newest usable epoch
  std::string newest_file;
};

std::string describe(const CheckpointInfo& c) {
  return fs::path(c.file).filename().string() + " (after epoch " + std::to_string(c.epoch) + ")";
}

std::string flag_for(const CheckpointRef& r) { return "--load=" + r.text(); }

ResumePoint choose_resume(const Logbook& book, const CheckpointRef& ref) {
  ResumePoint p;
  const std::string what = "experiment " + std::to_string(book.id());
  const std::string wanted = book.saves() + "/" + ref.file_name();
  if (ref.kind == CheckpointRef::Kind::kLast && fs::exists(wanted)) {
    try {
      p.checkpoint = load_checkpoint(wanted);
      p.file = wanted;
      return p;  // `last` is the newest state by construction
    } catch (const IoError& e) {
      const auto inv = Session::inventory(book);
      const CheckpointInfo* best = nullptr;
      for (const auto& c : inv)
        if (c.error.empty() && (!best || c.epoch > best->epoch)) best = &c;
      throw Error(std::string(e.what()) + "\n" + what +
                  (best ? ": the newest usable checkpoint is " + describe(*best) + "; resume from it with " +
                              flag_for(best->ref)
                        : ": no other checkpoint is usable; start a new experiment"));
    }
  }
  const auto inv = Session::inventory(book);
  const CheckpointInfo* newest = nullptr;
  for (const auto& c : inv)
    if (c.error.empty() && (!newest || c.epoch > newest->epoch)) newest = &c;
  if (ref.kind == CheckpointRef::Kind::kLast) {  // last.ckpt is missing
    const int64_t recorded = Session::status(book).value("epochs_done", int64_t{0});
    if (newest)
      throw Error(what + ": saves/last.ckpt is missing, but the experiment has trained" +
                  (recorded > 0 ? " (status.json: " + std::to_string(recorded) + " epochs)" : std::string()) +
                  "; starting over would overwrite its checkpoints. The newest usable checkpoint is " +
                  describe(*newest) + ": resume from it with " + flag_for(newest->ref));
    if (recorded > 0 || !inv.empty())
      throw Error(what + ": no usable checkpoint is left in " + book.saves() + " (" + Session::available(book) +
                  "), though it trained " + std::to_string(recorded) +
                  " epochs; start a new experiment (without --exp_id) instead of overwriting its history");
    p.fresh = true;
    return p;
  }
  p.file = Session::checkpoint_file(book, ref);
  p.checkpoint = load_checkpoint(p.file);
  if (p.checkpoint.original)
    throw Error(p.file + " is a checkpoint of the original QuantLab: --mode=test evaluates it, and indiv.net.pretrained "
                "({\"file\": {\"exp_id\": " + std::to_string(book.id()) + ", \"epoch\": \"" + ref.text() +
                "\"}}) starts a new experiment from its weights; it has no QuantLab training state to continue from");
  p.newest = newest ? newest->epoch : p.checkpoint.state.epoch;
  p.newest_file = newest ? fs::path(newest->file).filename().string() : ref.file_name();
  p.earlier = p.checkpoint.state.epoch < p.newest;
  return p;
}

// Progress lines on `out`, redrawn in place only when it is a terminal's standard output.
Progress progress_on(std::ostream& out) { return &out == &std::cout ? Progress::on_stdout() : Progress(out, false); }

void print_notes(const std::vector<std::string>& notes, std::ostream& out) {
  for (const auto& n : notes) out << "note: " << n << std::endl;
}

void print_test(std::ostream& out, const std::string& what, const EpochStats& s) {
  out << what << ": " << stats_text(s) << " (" << s.samples << " images)" << std::endl;
}

}  // namespace

std::string resume_command(const LaunchOptions& o, int64_t exp_id) {
  std::string cmd = "quantlab --problem=" + o.problem + " --topology=" + o.topology +
                    " --exp_id=" + std::to_string(exp_id) + " --load=last";
  if (o.home != ".") cmd += " --home=" + o.home;
  if (!o.data.empty()) cmd += " --data=" + o.data;
  if (o.ckpt_every != 50) cmd += " --ckpt_every=" + std::to_string(o.ckpt_every);
  if (o.log_every != 0) cmd += " --log_every=" + std::to_string(o.log_every);
  if (o.device != "auto") cmd += " --device=" + o.device;
  if (o.threads != 0) cmd += " --threads=" + std::to_string(o.threads);
  return cmd;
}

LaunchResult launch(const LaunchOptions& o, const std::atomic<int>* stop, std::ostream& out) {
  check_flags(o);
  const bool train = o.mode == LaunchMode::kTrain;
  const CheckpointRef ref = CheckpointRef::parse(o.load.value_or(train ? "last" : "best"), "--load");
  const Storage storage = read_storage(o.home);
  const ProblemPaths paths = problem_paths(storage, o.problem);
  configure_runtime(o.threads);
  if (o.threads > available_cores())
    out << "note: --threads=" << o.threads << " is more than the " << available_cores()
        << " cores this process may use; the extra threads only take turns" << std::endl;
  const torch::Device device = resolve_device(o.device);
  if (device.is_cpu()) {
    const std::string blas = blas_slow_path_note();
    if (!blas.empty()) out << "note: " << blas << std::endl;
  }

  // The experiment's config: its own copy when it exists, else the problem's.
  std::optional<Logbook> book;
  nlohmann::json config;
  if (o.exp_id) {
    book = Logbook::open(paths.logs, *o.exp_id);
    if (train) {
      book->lock();
      const auto removed = book->remove_partial_files();
      if (!removed.empty())
        out << "removed " << removed.size() << " partial file(s) a stopped run left: " << join(removed) << std::endl;
    }
    config = book->config();
  } else {
    const std::string file = paths.dir + "/" + o.config;
    if (!fs::exists(file))
      throw IoError(file +
                    ": no such file (each problem keeps its config in <home>/<Problem>/; `quantlab problem add " +
                    o.problem + "` makes one)");
    config = read_json_file(file);
  }
  out << "quantlab: " << o.problem << "/" << o.topology << " on " << device << ", " << at::get_num_threads()
      << " threads; building the experiment..." << std::endl;
  Experiment exp(config, o.topology, device);
  print_notes(exp.notes, out);

  // The data next: a missing or unreadable data set, or data that does not fit the network, stops
  // the run before an experiment is made.
  out << "loading data..." << std::flush;
  const std::string dir = data::find_data_dir(storage.home, o.problem, o.data);
  const data::ProblemData data = data::load_problem(dir, exp.data);
  out << " " << data.train_indices.size() << " training, " << data.valid_indices.size() << " validation, "
      << data.test->size() << " test images (" << data.format << ") from " << dir << std::endl;
  preflight(exp, data);

  LaunchResult result;
  TrainingState state;
  bool new_folder = false;
  if (!book) {
    prepare_storage(storage, paths);
    const auto removed = Logbook::remove_abandoned(paths.logs);
    if (!removed.empty())
      out << "removed " << removed.size() << " unfinished experiment folder(s) of stopped launches" << std::endl;
    book = Logbook::create(paths.logs, config);
    new_folder = true;
    out << "experiment " << book->id() << ": " << book->dir() << std::endl;
    if (const int64_t n = apply_pretrained(exp, paths))
      out << "copied " << n << " pretrained tensors (indiv.net.pretrained)" << std::endl;
  } else if (!train) {
    const std::string file = Session::checkpoint_file(*book, ref);
    const Checkpoint c = load_checkpoint(file);
    print_notes(c.notes, out);
    restore(exp, c);
    state = c.state;
    result.exp_id = book->id();
    result.epochs_done = state.epoch;
    Progress progress = progress_on(out);
    TrainerOptions topts;
    topts.out = &out;
    Trainer trainer(exp, data, progress, topts);
    trainer.set_state(state);
    result.tested = ref.file_name() + ", after epoch " + std::to_string(c.state.epoch);
    result.test = trainer.test();
    print_test(out, "test (" + result.tested + ")", *result.test);
    return result;
  } else {
    ResumePoint p = choose_resume(*book, ref);
    if (p.fresh) {
      out << "experiment " << book->id() << " has no checkpoint yet: training it from epoch 1" << std::endl;
    } else {
      print_notes(p.checkpoint.notes, out);
      const std::string from = fs::path(p.file).filename().string();
      if (p.earlier && !o.branch)
        throw Error("experiment " + std::to_string(book->id()) + " has trained " + std::to_string(p.newest) +
                    " epochs (" + p.newest_file + "); " + from + " is after epoch " +
                    std::to_string(p.checkpoint.state.epoch) +
                    ", and training from it here would overwrite the later checkpoints and history. Continue with "
                    "--load=last, or add --branch to train from " +
                    from + " in a new experiment that records this one as its parent");
      if (o.branch) {
        const nlohmann::json parent = {
            {"exp_id", book->id()}, {"checkpoint", from}, {"epoch", p.checkpoint.state.epoch}, {"dir", book->dir()}};
        const int64_t parent_id = book->id();
        book = Logbook::create(paths.logs, config, parent);
        new_folder = true;
        out << "experiment " << book->id() << ": " << book->dir() << ", branched from experiment " << parent_id
            << " at " << from << " (after epoch " << p.checkpoint.state.epoch << "); experiment " << parent_id
            << " is left as it is" << std::endl;
      } else {
        out << "experiment " << book->id() << ": continuing from " << p.file << " (after epoch "
            << p.checkpoint.state.epoch << ")" << std::endl;
      }
      restore(exp, p.checkpoint);
      state = p.checkpoint.state;
      if (!o.branch && ref.kind == CheckpointRef::Kind::kLast) {
        Session repairer(exp, *book, o.ckpt_every, exp.protocol.update_metric);
        const auto repaired = repairer.repair(p.checkpoint);
        if (!repaired.empty())
          out << "completed the save of epoch " << state.epoch << " that a stop interrupted: " << join(repaired)
              << std::endl;
      }
    }
  }
  result.exp_id = book->id();

  Progress progress = progress_on(out);
  TrainerOptions options;
  options.stop = stop;
  options.log_every = o.log_every;
  options.out = &out;
  TrainingLog* step_log = nullptr;
  options.on_step = [&step_log](int64_t step, double loss) {
    if (step_log) step_log->on_step(step, loss);
  };
  Trainer trainer(exp, data, progress, options);
  trainer.set_state(state);
  Session session(exp, *book, o.ckpt_every, trainer.best_statistic());
  TrainingLog log(book->stats(), exp);
  log.on_start(state, new_folder);
  step_log = &log;
  try {
    trainer.fit(exp.max_epoch, [&](const EpochRecord& r) {
      session.on_epoch(r, trainer.state());
      log.on_epoch(r);
    });
  } catch (const Interrupted& e) {
    out << std::endl;
    result.interrupted_by = e.signal;
    result.epochs_done = trainer.state().epoch;
    return result;
  }
  result.epochs_done = trainer.state().epoch;

  // The final test, with the weights of the best epoch when they were saved.
  const std::string best = book->saves() + "/best.ckpt";
  std::string what;
  int64_t tested_epoch = trainer.state().epoch;
  std::string weights = "last";
  if (fs::exists(best)) {
    const Checkpoint c = load_checkpoint(best);
    restore(exp, c);
    tested_epoch = c.state.epoch;
    weights = "best";
    what = "test with the weights of the best epoch (" + std::to_string(c.state.epoch) + ", by " +
           statistic_name(trainer.best_statistic()) + ")";
  } else {
    what = "test with the weights of the last epoch (" + std::to_string(tested_epoch) +
           "): no best.ckpt was saved (the best-epoch statistic was never measured)";
  }
  result.test = trainer.test();
  result.tested = what;
  session.on_test(*result.test, weights, tested_epoch);
  print_test(out, what, *result.test);
  return result;
}

}  // namespace quantlab
