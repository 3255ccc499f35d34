// quantlab: the command line. Parses flags, calls the library (experiment/launch.h,
// experiment/listing.h, experiment/storage.h, data/valprep.h) and reports: every error becomes one
// message and a non-zero exit here, and only here.
#include <CLI/CLI.hpp>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <iostream>

#include "quantlab/config/json_node.h"
#include "quantlab/data/valprep.h"
#include "quantlab/dist/local_launcher.h"
#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/listing.h"
#include "quantlab/experiment/resume.h"
#include "quantlab/experiment/storage.h"
#include "quantlab/experiment/sweep.h"
#include "quantlab/export/export_run.h"
#include "quantlab/util/build_info.h"
#include "quantlab/util/error.h"
#include "quantlab/util/progress.h"
#include "quantlab/util/runtime.h"

namespace {

std::atomic<int> g_stop{0};

// A message to stderr in one piece: the ranks of a data-parallel run share the launcher's stderr.
void report(const std::string& message) { quantlab::write_line(std::cerr, message); }

extern "C" void on_signal(int sig) {
  if (g_stop.load() != 0) {  // a second signal: stop now
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
  g_stop.store(sig);
}

// An integer flag in [lo, hi], with a message that names the range in plain numbers.
CLI::Validator within(int64_t lo, int64_t hi) {
  return CLI::Validator(
      [lo, hi](std::string& text) -> std::string {
        try {
          size_t used = 0;
          const long long v = std::stoll(text, &used);
          if (used == text.size() && v >= lo && v <= hi) return "";
        } catch (const std::exception&) {
        }
        return "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " + text;
      },
      "INT in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
}

// The signal handlers that raise g_stop, for the life of one run.
class StopOnSignal {
 public:
  StopOnSignal() {
    std::signal(SIGINT, on_signal);
    std::signal(SIGTERM, on_signal);
  }
  ~StopOnSignal() {
    std::signal(SIGINT, SIG_DFL);
    std::signal(SIGTERM, SIG_DFL);
  }
};

// The absolute path of this program (for the processes a sweep starts).
std::string self_path(const char* argv0) {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}

// This command line without `flag` and its value (--nproc 4, --nproc=4).
std::vector<std::string> args_without(int argc, char** argv, const std::string& flag) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == flag) {
      ++i;
      continue;
    }
    if (a.rfind(flag + "=", 0) != 0) args.push_back(a);
  }
  return args;
}

// Each command below declares its flags on the app and runs once they are parsed.

// The main command: train or test one experiment (and the flags a sweep's units share).
struct TrainCommand {
  quantlab::experiment::LaunchOptions o;
  int64_t exp_id = -1;
  std::string load, mode = "train", config;
  int nproc = 0;

  void declare(CLI::App& app) {
    app.add_option("--problem", o.problem, "Problem folder under --home, e.g. FashionMNIST");
    app.add_option("--topology", o.topology, "Topology family, e.g. MLP");
    app.add_option("--exp_id", exp_id, "Experiment to resume or test (its number)")->check(within(0, 999999999));
    app.add_option("--load", load,
                   "Checkpoint to load: best, last or an epoch number (default: last to train, best to test)");
    app.add_option("--mode", mode, "train or test")->check(CLI::IsMember({"train", "test"}));
    app.add_flag("--branch", o.branch,
                 "Train from --load's checkpoint in a new experiment that records this one as its parent");
    app.add_option("--ckpt_every", o.ckpt_every, "Keep a checkpoint every N epochs (default 50; 0: none)")
        ->check(within(0, 1000000));
    app.add_option("--log_every", o.log_every,
                   "Log the training loss to TensorBoard every N batches (0: per epoch only)")
        ->check(within(0, 1000000000));
    app.add_option("--config", config, "Config file in <home>/<Problem>/ for a new experiment (default: config.json)");
    app.add_option("--set", o.overrides,
                   "PATH=VALUE: change the new experiment's config (a sweep's: every unit's) at a dotted path "
                   "(treat.optimizer.params.lr=0.003; +PATH=VALUE adds a key); repeatable, recorded in the "
                   "experiment's config.json")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    app.add_option("--home", o.home, "Main folder holding <Problem>/config.json (default: .)");
    app.add_option("--device", o.device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
    app.add_option("--threads", o.threads, "Intra-op threads (default: all available cores)")->check(within(0, 1024));
    app.add_flag("--amp", o.amp,
                 "Mixed precision: convolutions and matrix products in bfloat16, ANA, batch norm and the loss in "
                 "float32 (docs/GPU.md)");
    app.add_flag("--channels_last", o.channels_last,
                 "Convolutional networks in channels-last layout on CUDA too (always on the CPU; docs/GPU.md)");
    app.add_flag("--deterministic", o.deterministic,
                 "Deterministic algorithms (cuDNN without autotuning): a resumed GPU run repeats bit for bit");
    app.add_option("--data", o.data, "Folder with the problem's data files (default: <home>/<Problem>/data)");
    app.add_option("--nproc", nproc, "Train with N processes on this machine (data parallel; docs/DISTRIBUTED.md)")
        ->check(within(1, 1024));
    app.add_option("--master_addr", o.master_addr,
                   "Distributed: the master's address (default: MASTER_ADDR, or SLURM's first node)");
    app.add_option("--master_port", o.master_port, "Distributed: the master's port (default: MASTER_PORT or 29500)")
        ->check(within(1, 65535));
    app.add_option("--dist_timeout", o.dist_timeout_s,
                   "Distributed: seconds a collective may wait for a rank (default 60)")
        ->check(within(1, 86400));
    app.add_option("--dist_start_timeout", o.dist_start_timeout_s,
                   "Distributed: seconds the ranks may take to start (data loading) and to wait for rank 0's "
                   "checkpoints (default 900)")
        ->check(within(1, 86400));
  }

  // The parsed flags into `o`.
  void finish(const CLI::App& app) {
    if (exp_id >= 0) o.exp_id = exp_id;
    if (app.count("--config") > 0) o.config = config;
    if (!load.empty() || app.count("--load") > 0) o.load = load;
    o.mode = mode == "test" ? quantlab::experiment::LaunchMode::kTest : quantlab::experiment::LaunchMode::kTrain;
    if (std::getenv("QUANTLAB_LAUNCHER") && std::getenv("WORLD_SIZE")) o.nproc = std::atoi(std::getenv("WORLD_SIZE"));
  }

  // --nproc=N: this command line without --nproc, in N processes.
  int run_processes(int argc, char** argv) const {
    return quantlab::dist::run_local_processes(nproc, argv[0], args_without(argc, argv, "--nproc"), o.dist_timeout_s,
                                               std::cerr);
  }

  int run() const {
    quantlab::experiment::LaunchResult r;
    {
      StopOnSignal handlers;
      r = quantlab::experiment::launch(o, &g_stop, std::cout);
    }
    if (r.interrupted_by == 0) return 0;
    const std::string by = r.interrupted_by == SIGTERM ? "SIGTERM" : "SIGINT";
    if (!r.owner) return 128 + r.interrupted_by;  // the other ranks of a data-parallel run leave it to rank 0
    if (o.mode == quantlab::experiment::LaunchMode::kTest)
      report("quantlab: the test was stopped by " + by + "; the experiment is as it was");
    else if (r.exp_id < 0)
      report("quantlab: interrupted by " + by +
             " during the start-up, before the experiment was made; nothing was made");
    else
      report("quantlab: interrupted by " + by + "; the epoch in progress is abandoned, the checkpoints hold " +
             std::to_string(r.epochs_done) +
             " completed epochs.\nresume with: " + quantlab::experiment::resume_command(o, r.exp_id, r.launcher));
    return 128 + r.interrupted_by;
  }
};

struct ListCommand {
  std::string problem, home = ".";
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand("list", "One line per experiment of a problem");
    cmd->add_option("--problem", problem, "Problem folder")->required();
    cmd->add_option("--home", home, "Main folder (default: .)");
  }
  int run() const {
    quantlab::experiment::list_experiments(home, problem, std::cout);
    return 0;
  }
};

struct CompareCommand {
  quantlab::experiment::CompareOptions cmp;
  std::string ids;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand(
        "compare", "One row per experiment: the config paths where they differ, best validation and test accuracy");
    cmd->add_option("--problem", cmp.problem, "Problem folder")->required();
    cmd->add_option("--ids", ids, "Experiments to compare, e.g. 1,3,5-8 (default: all)");
    cmd->add_option("--sweep", cmp.sweep, "The experiments of this sweep");
    cmd->add_option("--sort", cmp.sort, "exp (default), valid, test, epochs, time or a column's config path");
    cmd->add_option("--format", cmp.format, "table (default), csv, markdown or json")
        ->check(CLI::IsMember({"table", "csv", "markdown", "json"}));
    cmd->add_option("--home", cmp.home, "Main folder (default: .)");
    cmd->add_option("--by", cmp.by,
                    "A column (a factor): one row per level with the mean accuracies (its main effect)");
  }
  int run() {
    if (!ids.empty()) cmp.ids = quantlab::experiment::parse_id_list(ids);
    quantlab::experiment::compare_experiments(cmp, std::cout);
    return 0;
  }
};

struct DiffCommand {
  std::string problem, home = ".";
  int64_t a = -1, b = -1;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand("diff", "The config paths where two experiments differ");
    cmd->add_option("--problem", problem, "Problem folder")->required();
    cmd->add_option("a", a, "An experiment")->required()->check(within(0, 999999999));
    cmd->add_option("b", b, "Another experiment")->required()->check(within(0, 999999999));
    cmd->add_option("--home", home, "Main folder (default: .)");
  }
  int run() const {
    quantlab::experiment::diff_experiments(home, problem, a, b, std::cout);
    return 0;
  }
};

struct SweepCommand {
  std::string design, name;
  std::vector<std::string> grid;
  int64_t repeats = 0, sample = -1, seed = -1, max_units = 100, unit = 0;
  bool yes = false, srun = false;
  int parallel = 1;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand(
        "sweep", "One experiment per unit of a design (a grid of config paths' levels); run again to resume");
    cmd->add_option("--design", design,
                    "The design file (JSON: name, factors {PATH: [levels]}, repeats, sample, seed)");
    cmd->add_option("--grid", grid, "PATH=a,b,c: a factor and its levels (repeatable; after the design's)")
        ->expected(1)
        ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
    cmd->add_option("--name", name, "The sweep's name (default: the design's; needed without --design)");
    cmd->add_option("--repeats", repeats, "Each unit N times with other data seeds")->check(within(1, 1000));
    cmd->add_option("--sample", sample, "A random sample of N units of the grid")->check(within(0, 1000000));
    cmd->add_option("--seed", seed, "The sample's seed")->check(within(0, 1000000000));
    cmd->add_option("--max_units", max_units, "More units than this need --yes (default 100)")
        ->check(within(1, 1000000));
    cmd->add_flag("--yes", yes, "Run however many units the design has");
    cmd->add_option("--parallel", parallel, "Run K units at a time, each in a process with the cores / K threads")
        ->check(within(1, 1024));
    cmd->add_option("--unit", unit, "Run this unit only (1-based; a SLURM array task: --unit=$SLURM_ARRAY_TASK_ID)")
        ->check(within(1, 1000000));
    cmd->add_flag("--srun", srun, "Share the units among SLURM's tasks (srun -n K quantlab sweep ... --srun)");
    cmd->fallthrough();  // --problem, --topology, --threads, ... are the training flags
    cmd->footer(
        "The units' training flags go with it: --problem, --topology, --config, --set, --home, --data, --threads, "
        "--device and the rest of `quantlab --help`.");
  }

  // `training`: the units' flags; the units run this command line without --parallel.
  int run(const quantlab::experiment::LaunchOptions& training, int argc, char** argv) const {
    quantlab::experiment::SweepOptions s;
    s.parallel = parallel;
    if (unit > 0) s.unit = unit;
    s.srun = srun;
    s.command = {self_path(argv[0])};
    for (const auto& a : args_without(argc, argv, "--parallel")) s.command.push_back(a);
    s.launch = training;
    if (!design.empty()) s.design = quantlab::experiment::read_design(design);
    for (const auto& g : grid) s.design.factors.push_back(quantlab::experiment::parse_grid(g));
    if (!name.empty()) s.design.name = name;
    if (repeats > 0) s.design.repeats = repeats;
    if (sample >= 0) s.design.sample = sample;
    if (seed >= 0) s.design.seed = static_cast<uint64_t>(seed);
    if (seed >= 0 && s.design.sample == 0)
      throw quantlab::Error("--seed=" + std::to_string(seed) +
                            ": the seed of a sample (--sample=N); without one every unit of the grid runs");
    s.max_units = max_units;
    s.yes = yes;
    quantlab::experiment::SweepResult r;
    {
      StopOnSignal handlers;
      r = quantlab::experiment::run_sweep(s, &g_stop, std::cout);
    }
    std::cout << "sweep " << s.design.name << ": " << r.finished << " of " << r.units << " units finished"
              << (r.skipped ? " (" + std::to_string(r.skipped) + " before this run)" : std::string())
              << (r.failed ? ", " + std::to_string(r.failed) + " failed (their errors are in the record)"
                           : std::string())
              << (r.elsewhere ? ", " + std::to_string(r.elsewhere) + " running in another process" : std::string())
              << std::endl;
    if (r.interrupted_by) {
      report("quantlab: sweep stopped; run the same command again to resume it");
      return 128 + r.interrupted_by;
    }
    if (s.unit && r.elsewhere) return quantlab::experiment::kExitElsewhere;
    return r.failed ? 1 : 0;
  }
};

struct ProblemAddCommand {
  std::string name, home = ".";
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    CLI::App* problem = app.add_subcommand("problem", "Manage problems");
    cmd = problem->add_subcommand("add", "Create <home>/NAME/config.json and its storage folders");
    cmd->add_option("name", name, "Problem name")->required();
    cmd->add_option("--home", home, "Main folder (default: .)");
    problem->require_subcommand(1);
  }
  int run() const {
    for (const auto& line : quantlab::experiment::add_problem(quantlab::experiment::read_storage(home), name))
      std::cout << line << std::endl;
    return 0;
  }
};

struct ExportCommand {
  quantlab::export_::ExportOptions ex;
  bool no_check = false;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand("export", "Write a trained experiment as an integer model (or ONNX) and check its parity");
    cmd->add_option("--problem", ex.problem, "Problem folder")->required();
    cmd->add_option("--exp_id", ex.exp_id, "The experiment")->required()->check(within(0, 999999999));
    cmd->add_option("--load", ex.load, "Checkpoint: best (default), last or an epoch number");
    cmd->add_option("--format", ex.format, "qlm (the integer runtime's, default) or onnx")
        ->check(CLI::IsMember({"qlm", "onnx"}));
    cmd->add_option("--out", ex.out, "The file to write (default: <experiment>/export/<class>_<load>.<format>)");
    cmd->add_option("--home", ex.home, "Main folder (default: .)");
    cmd->add_option("--data", ex.data, "Folder with the problem's data files");
    cmd->add_option("--threads", ex.threads, "Threads of the parity check (default: all)")->check(within(0, 1024));
    cmd->add_flag("--no_check", no_check, "Skip the parity check");
  }
  int run() {
    ex.check = !no_check;
    quantlab::export_::run_export(ex, std::cout);
    return 0;
  }
};

struct InferCommand {
  quantlab::export_::InferOptions inf;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand("infer", "Run an exported model on a problem's test set with the integer runtime");
    cmd->add_option("--model", inf.model, "The model file")->required();
    cmd->add_option("--problem", inf.problem, "Problem folder (its test set)");
    cmd->add_option("--home", inf.home, "Main folder (default: .)");
    cmd->add_option("--data", inf.data, "Folder with the test files (instead of --problem's)");
    cmd->add_option("--threads", inf.threads, "Threads (default: all)")->check(within(0, 1024));
    cmd->add_option("--labels", inf.labels_out, "Write the predicted labels to this file, one per line");
  }
  int run() const {
    quantlab::export_::run_infer(inf, std::cout);
    return 0;
  }
};

struct ValprepCommand {
  std::string images, labels, out;
  CLI::App* cmd = nullptr;

  void declare(CLI::App& app) {
    cmd = app.add_subcommand("valprep",
                             "Sort ImageNet's flat validation folder into <wnid>/ class folders (as valprep.sh)");
    cmd->add_option("--images", images, "The flat folder of validation images")->required();
    cmd->add_option("--labels", labels, "Labels: '<image> <wnid>' lines, LOC_val_solution.csv or valprep.sh")
        ->required();
    cmd->add_option("--out", out, "Where the class folders go (default: --images itself)");
  }
  int run() const {
    const std::string to = out.empty() ? images : out;
    std::cout << quantlab::data::valprep_report(quantlab::data::sort_validation_images(images, labels, to), images, to);
    return 0;
  }
};

}  // namespace

int main(int argc, char** argv) {
  quantlab::reexec_with_runtime_environment(argv);
  CLI::App app{"QuantLab: train quantized neural networks with Additive Noise Annealing"};
  app.set_version_flag(
      "--version", [] { return quantlab::describe_build(quantlab::build_info()); },
      "What this QuantLab is built against: libtorch, CUDA, cuDNN, NCCL, its CUDA kernels");
  TrainCommand train;
  ListCommand list;
  CompareCommand compare;
  DiffCommand diff;
  SweepCommand sweep;
  ProblemAddCommand add;
  ExportCommand exporter;
  InferCommand infer;
  ValprepCommand valprep;
  train.declare(app);
  list.declare(app);
  compare.declare(app);
  diff.declare(app);
  sweep.declare(app);
  add.declare(app);
  exporter.declare(app);
  infer.declare(app);
  valprep.declare(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;  // --help and --version: 0; a command line it cannot parse: 2
  }
  train.finish(app);
  try {
    if (train.nproc > 1) {
      // --nproc starts the training in several processes; a subcommand would run in each of them.
      for (const CLI::App* sub : app.get_subcommands())
        throw quantlab::Error("--nproc applies to training, not to `quantlab " + sub->get_name() + "`" +
                              (sub->get_name() == "sweep" ? " (--parallel=K runs its units in K processes)" : ""));
      return train.run_processes(argc, argv);
    }
    if (*list.cmd) return list.run();
    if (*sweep.cmd) return sweep.run(train.o, argc, argv);
    if (*compare.cmd) return compare.run();
    if (*diff.cmd) return diff.run();
    if (*exporter.cmd) return exporter.run();
    if (*infer.cmd) return infer.run();
    if (*valprep.cmd) return valprep.run();
    if (*add.cmd) return add.run();
    return train.run();
  } catch (const quantlab::Error& e) {
    report(std::string("quantlab: error: ") + e.what());
  } catch (const c10::Error& e) {
    report(std::string("quantlab: error in libtorch: ") + e.what_without_backtrace());
  } catch (const std::exception& e) {
    report(std::string("quantlab: error: ") + e.what());
  }
  return 1;
}
