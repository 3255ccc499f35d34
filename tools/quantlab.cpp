// quantlab: the command line. Parses flags, prepares the problem's storage, creates or opens the
// experiment, trains or tests, and reports. Every error becomes one message and a non-zero exit
// here, and only here.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include "quantlab/config/json_node.h"
#include "quantlab/data/problem.h"
#include "quantlab/data/valprep.h"
#include "quantlab/experiment/session.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/log/training_log.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"

namespace {

using namespace quantlab;

struct Flags {
  std::string problem, topology, load = "best", mode = "train", home = ".", device = "auto", data;
  std::string config = "config.json";
  int64_t exp_id = -1;
  int64_t ckpt_every = 50;
  int64_t log_every = 0;
  int threads = 0;
};

std::atomic<bool> g_stop{false};

extern "C" void on_signal(int sig) {
  if (g_stop.load()) {  // a second signal: stop now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop.store(true);
}

std::string resume_hint(const Flags& f, int64_t id) {
  return "quantlab --problem=" + f.problem + " --topology=" + f.topology + " --exp_id=" + std::to_string(id) +
         " --load=last" + (f.home != "." ? " --home=" + f.home : "");
}

void print_stats(const std::string& what, const EpochStats& s) {
  std::cout << what << ": loss " << std::fixed << std::setprecision(4) << s.loss << ", accuracy "
            << std::setprecision(2) << s.accuracy() << "% (" << s.samples << " images)" << std::endl;
  std::cout.unsetf(std::ios::floatfield);
}

int run(const Flags& f) {
  if (f.problem.empty() || f.topology.empty()) throw Error("--problem and --topology are required (see --help)");
  check_plain_name("--problem", f.problem);
  check_plain_name("--topology", f.topology);
  check_plain_name("--config", f.config);
  if (f.mode == "test" && f.exp_id < 0) throw Error("--mode=test needs --exp_id (the experiment to evaluate)");
  configure_runtime(f.threads);
  const torch::Device device = resolve_device(f.device);
  const Storage storage = read_storage(f.home);
  const ProblemPaths paths = prepare_problem(storage, f.problem);

  // Build (and so validate) the experiment before anything is created for it.
  nlohmann::json config;
  std::unique_ptr<Logbook> book;
  if (f.exp_id >= 0) {
    book = std::make_unique<Logbook>(Logbook::open(paths.logs, f.exp_id));
    config = book->config();
  } else {
    const std::string file = paths.dir + "/" + f.config;
    if (!std::filesystem::exists(file))
      throw IoError(file + ": no such file (each problem keeps its config in <home>/<Problem>/; `quantlab problem add " +
                    f.problem + "` makes one)");
    config = read_json_file(file);
  }
  std::cout << "quantlab: " << f.problem << "/" << f.topology << " on " << device << ", " << at::get_num_threads()
            << " threads; building the experiment..." << std::endl;
  Experiment exp(config, f.topology, device);

  // The data next: a missing or unreadable data set stops the run before an experiment is made.
  std::cout << "loading data..." << std::flush;
  const std::string dir = data::find_data_dir(f.home, f.problem, f.data);
  const data::ProblemData data = data::load_problem(dir, problem_options(exp.data));
  std::cout << " " << data.train_indices.size() << " training, " << data.valid_indices.size() << " validation, "
            << data.test->size() << " test images (" << data.format << ") from " << dir << std::endl;

  TrainingState state;
  if (!book) {
    book = std::make_unique<Logbook>(Logbook::create(paths.logs, config));
    std::cout << "experiment " << book->id() << ": " << book->dir() << std::endl;
    if (const int64_t n = apply_pretrained(exp, paths.logs))
      std::cout << "copied " << n << " pretrained tensors (indiv.net.pretrained)" << std::endl;
  } else {
    const bool fresh = f.mode == "train" && f.load == "last" && !std::filesystem::exists(book->saves() + "/last.ckpt");
    if (fresh) {
      std::cout << "experiment " << book->id() << " has no checkpoint yet: training it from epoch 1" << std::endl;
    } else {
      const std::string file = Session::checkpoint_file(*book, f.load);
      const Checkpoint c = load_checkpoint(file);
      restore(exp, c);
      state = c.state;
      std::cout << "experiment " << book->id() << ": loaded " << file << " (after epoch " << c.state.epoch << ")"
                << std::endl;
    }
  }


  Progress progress = Progress::on_stdout();
  TrainerOptions options;
  options.stop = &g_stop;
  options.log_every = f.log_every;
  TrainingLog* step_log = nullptr;
  options.on_step = [&step_log](int64_t step, double loss) {
    if (step_log) step_log->on_step(step, loss);
  };
  Trainer trainer(exp, data, progress, options);
  trainer.set_state(state);

  if (f.mode == "test") {
    print_stats("test (" + f.load + " checkpoint)", trainer.test());
    return 0;
  }
  Session session(exp, *book, f.ckpt_every);
  TrainingLog log(book->stats(), exp);
  log.on_start(state);
  step_log = &log;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  try {
    trainer.fit(exp.max_epoch, [&](const EpochRecord& r) {
      session.on_epoch(r, trainer.state());
      log.on_epoch(r);
    });
  } catch (const Interrupted& e) {
    std::cout << std::endl;
    std::cerr << "quantlab: " << e.what() << "; that epoch is abandoned, the checkpoints hold "
              << trainer.state().epoch << " completed epochs.\nresume with: " << resume_hint(f, book->id()) << std::endl;
    return 130;
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const std::string best = book->saves() + "/best.ckpt";
  if (std::filesystem::exists(best)) restore(exp, load_checkpoint(best));
  const TrainingState& s = trainer.state();
  print_stats("test with the weights of the best epoch (" + std::to_string(s.best_epoch + 1) + ", by " +
                  exp.protocol.update_metric + ")",
              trainer.test());
  return 0;
}

int run_list(const std::string& home, const std::string& problem) {
  check_plain_name("--problem", problem);
  const Storage storage = read_storage(home);
  const std::string logs = storage.home + "/" + problem + "/logs";
  const auto ids = Logbook::list(logs);
  if (ids.empty()) {
    std::cout << "no experiments in " << logs << std::endl;
    return 0;
  }
  std::cout << std::left << std::setw(8) << "exp" << std::setw(16) << "class" << std::setw(10) << "epochs"
            << std::setw(30) << "best (epoch)" << "state" << std::endl;
  for (int64_t id : ids) {
    const Logbook book = Logbook::open(logs, id);
    std::string cls = "?";
    try {
      cls = book.config()["indiv"]["net"]["class"].get<std::string>();
    } catch (const std::exception&) {
    }
    const auto st = Session::status(book);
    std::ostringstream epochs, best;
    std::string state = "not started";
    if (!st.empty()) {
      epochs << st.value("epochs_done", 0) << "/" << st.value("max_epoch", 0);
      best << st.value("update_metric", std::string("metric")) << " " << std::fixed << std::setprecision(2)
           << st.value("best_value", 0.0) << " @ " << st.value("best_epoch", 0);
      state = st.value("finished", false) ? "finished" : "stopped (resume with --load=last)";
    }
    std::cout << std::setw(8) << Logbook::folder_name(id) << std::setw(16) << cls << std::setw(10) << epochs.str()
              << std::setw(30) << best.str() << state << std::endl;
  }
  return 0;
}

int run_valprep(const std::string& images, const std::string& labels, const std::string& out) {
  const auto r = data::sort_validation_images(images, labels, out.empty() ? images : out);
  std::cout << "moved " << r.moved << " images into " << r.classes << " class folders under "
            << (out.empty() ? images : out);
  if (r.already_there > 0) std::cout << " (" << r.already_there << " were already there)";
  std::cout << std::endl;
  if (!r.unlisted.empty())
    std::cout << r.unlisted.size() << " files of " << images << " are not in the label file and stayed: "
              << r.unlisted.front() << (r.unlisted.size() > 1 ? ", ..." : "") << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  quantlab::reexec_with_passive_openmp(argv);
  CLI::App app{"QuantLab: train quantized neural networks with Additive Noise Annealing"};
  Flags f;
  app.add_option("--problem", f.problem, "Problem folder under --home, e.g. FashionMNIST");
  app.add_option("--topology", f.topology, "Topology family, e.g. MLP");
  app.add_option("--exp_id", f.exp_id, "Experiment to resume or test (its number)")->check(CLI::NonNegativeNumber);
  app.add_option("--load", f.load, "Checkpoint to load: best, last or an epoch number (default: best)");
  app.add_option("--mode", f.mode, "train or test")->check(CLI::IsMember({"train", "test"}));
  app.add_option("--ckpt_every", f.ckpt_every, "Keep a checkpoint every N epochs (default 50; 0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--log_every", f.log_every, "Log the training loss to TensorBoard every N batches (0: per epoch only)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--config", f.config, "Config file in <home>/<Problem>/ for a new experiment (default: config.json)");
  app.add_option("--home", f.home, "Main folder holding <Problem>/config.json (default: .)");
  app.add_option("--device", f.device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("--threads", f.threads, "Intra-op threads (default: all available cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--data", f.data, "Folder with the problem's data files (default: <home>/<Problem>/data)");
  std::string list_problem, list_home = ".", add_name, add_home = ".";
  CLI::App* list = app.add_subcommand("list", "One line per experiment of a problem");
  list->add_option("--problem", list_problem, "Problem folder")->required();
  list->add_option("--home", list_home, "Main folder (default: .)");
  CLI::App* problem = app.add_subcommand("problem", "Manage problems");
  CLI::App* add = problem->add_subcommand("add", "Create <home>/NAME/config.json and its storage folders");
  add->add_option("name", add_name, "Problem name")->required();
  add->add_option("--home", add_home, "Main folder (default: .)");
  problem->require_subcommand(1);
  std::string vp_images, vp_labels, vp_out;
  CLI::App* valprep = app.add_subcommand(
      "valprep", "Sort ImageNet's flat validation folder into <wnid>/ class folders (as valprep.sh)");
  valprep->add_option("--images", vp_images, "The flat folder of validation images")->required();
  valprep->add_option("--labels", vp_labels,
                      "Labels: '<image> <wnid>' lines, LOC_val_solution.csv or valprep.sh")->required();
  valprep->add_option("--out", vp_out, "Where the class folders go (default: --images itself)");
  CLI11_PARSE(app, argc, argv);
  try {
    if (*list) return run_list(list_home, list_problem);
    if (*valprep) return run_valprep(vp_images, vp_labels, vp_out);
    if (*add) {
      for (const auto& line : quantlab::add_problem(quantlab::read_storage(add_home), add_name)) std::cout << line << std::endl;
      return 0;
    }
    return run(f);
  } catch (const quantlab::Error& e) {
    std::cerr << "quantlab: error: " << e.what() << std::endl;
  } catch (const c10::Error& e) {
    std::cerr << "quantlab: error in libtorch: " << e.what_without_backtrace() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "quantlab: error: " << e.what() << std::endl;
  }
  return 1;
}
