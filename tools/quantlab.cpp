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
#include "quantlab/experiment/storage.h"
#include "quantlab/experiment/sweep.h"
#include "quantlab/export/export_run.h"
#include "quantlab/util/build_info.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"

namespace {

std::atomic<int> g_stop{0};

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

int run(const quantlab::LaunchOptions& o) {
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const quantlab::LaunchResult r = quantlab::launch(o, &g_stop, std::cout);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  if (r.interrupted_by == 0) return 0;
  std::cerr << "quantlab: interrupted by " << (r.interrupted_by == SIGTERM ? "SIGTERM" : "SIGINT")
            << "; the epoch in progress is abandoned, the checkpoints hold " << r.epochs_done
            << " completed epochs.\nresume with: " << quantlab::resume_command(o, r.exp_id) << std::endl;
  return 128 + r.interrupted_by;
}

// The absolute path of this program (for the processes a sweep starts).
std::string self_path(const char* argv0) {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(argv0) : p.string();
}

int run_sweep_command(const quantlab::LaunchOptions& o, const std::string& design_file, const std::string& name,
                      const std::vector<std::string>& grid, int64_t repeats, int64_t sample, int64_t seed,
                      int64_t max_units, bool yes, int parallel, int64_t unit, bool srun,
                      const std::vector<std::string>& command) {
  quantlab::SweepOptions s;
  s.parallel = parallel;
  if (unit > 0) s.unit = unit;
  s.srun = srun;
  s.command = command;
  s.launch = o;
  if (!design_file.empty()) s.design = quantlab::parse_design(quantlab::read_json_file(design_file), "");
  for (const auto& g : grid) s.design.factors.push_back(quantlab::parse_grid(g));
  if (!name.empty()) s.design.name = name;
  if (repeats > 0) s.design.repeats = repeats;
  if (sample >= 0) s.design.sample = sample;
  if (seed >= 0) s.design.seed = static_cast<uint64_t>(seed);
  s.max_units = max_units;
  s.yes = yes;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  const quantlab::SweepResult r = quantlab::run_sweep(s, &g_stop, std::cout);
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  std::cout << "sweep " << s.design.name << ": " << r.finished << " of " << r.units << " units finished"
            << (r.skipped ? " (" + std::to_string(r.skipped) + " before this run)" : std::string())
            << (r.failed ? ", " + std::to_string(r.failed) + " failed (their errors are in the record)" : std::string())
            << (r.elsewhere ? ", " + std::to_string(r.elsewhere) + " running in another process" : std::string())
            << std::endl;
  if (r.interrupted_by) {
    std::cerr << "quantlab: sweep stopped; run the same command again to resume it" << std::endl;
    return 128 + r.interrupted_by;
  }
  if (s.unit && r.elsewhere) return quantlab::kExitElsewhere;
  return r.failed ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  quantlab::reexec_with_runtime_environment(argv);
  CLI::App app{"QuantLab: train quantized neural networks with Additive Noise Annealing"};
  app.set_version_flag(
      "--version", [] { return quantlab::describe_build(quantlab::build_info()); },
      "What this QuantLab is built against: libtorch, CUDA, cuDNN, NCCL, its CUDA kernels");
  quantlab::LaunchOptions o;
  int64_t exp_id = -1;
  std::string load, mode = "train";
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
  app.add_option("--log_every", o.log_every, "Log the training loss to TensorBoard every N batches (0: per epoch only)")
      ->check(within(0, 1000000000));
  std::string config;
  app.add_option("--config", config, "Config file in <home>/<Problem>/ for a new experiment (default: config.json)");
  app.add_option("--set", o.overrides,
                 "PATH=VALUE: change the new experiment's config at a dotted path (treat.optimizer.params.lr=0.003; "
                 "+PATH=VALUE adds a key); repeatable, recorded in the experiment's config.json")
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
  int nproc = 0;
  app.add_option("--nproc", nproc, "Train with N processes on this machine (data parallel; docs/DISTRIBUTED.md)")
      ->check(within(1, 1024));
  app.add_option("--master_addr", o.master_addr,
                 "Distributed: the master's address (default: MASTER_ADDR, or SLURM's first node)");
  app.add_option("--master_port", o.master_port, "Distributed: the master's port (default: MASTER_PORT or 29500)")
      ->check(within(1, 65535));
  app.add_option("--dist_timeout", o.dist_timeout_s,
                 "Distributed: seconds a collective may wait for a rank (default 60)")
      ->check(within(1, 86400));
  std::string list_problem, list_home = ".", add_name, add_home = ".";
  CLI::App* list = app.add_subcommand("list", "One line per experiment of a problem");
  list->add_option("--problem", list_problem, "Problem folder")->required();
  list->add_option("--home", list_home, "Main folder (default: .)");
  quantlab::CompareOptions cmp;
  std::string cmp_ids;
  CLI::App* compare = app.add_subcommand(
      "compare", "One row per experiment: the config paths where they differ, best validation and test accuracy");
  compare->add_option("--problem", cmp.problem, "Problem folder")->required();
  compare->add_option("--ids", cmp_ids, "Experiments to compare, e.g. 1,3,5-8 (default: all)");
  compare->add_option("--sweep", cmp.sweep, "The experiments of this sweep");
  compare->add_option("--sort", cmp.sort, "exp (default), valid, test, epochs, time or a column's config path");
  compare->add_option("--format", cmp.format, "table (default), csv, markdown or json")
      ->check(CLI::IsMember({"table", "csv", "markdown", "json"}));
  compare->add_option("--home", cmp.home, "Main folder (default: .)");
  compare->add_option("--by", cmp.by,
                      "A column (a factor): one row per level with the mean accuracies (its main effect)");
  std::string diff_problem, diff_home = ".";
  int64_t diff_a = -1, diff_b = -1;
  CLI::App* diff = app.add_subcommand("diff", "The config paths where two experiments differ");
  diff->add_option("--problem", diff_problem, "Problem folder")->required();
  diff->add_option("a", diff_a, "An experiment")->required()->check(within(0, 999999999));
  diff->add_option("b", diff_b, "Another experiment")->required()->check(within(0, 999999999));
  diff->add_option("--home", diff_home, "Main folder (default: .)");
  std::string sw_design, sw_name;
  std::vector<std::string> sw_grid;
  int64_t sw_repeats = 0, sw_sample = -1, sw_seed = -1, sw_max = 100;
  bool sw_yes = false;
  CLI::App* sweep = app.add_subcommand(
      "sweep", "One experiment per unit of a design (a grid of config paths' levels); run again to resume");
  sweep->add_option("--design", sw_design,
                    "The design file (JSON: name, factors {PATH: [levels]}, repeats, sample, seed)");
  sweep->add_option("--grid", sw_grid, "PATH=a,b,c: a factor and its levels (repeatable; after the design's)")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  sweep->add_option("--name", sw_name, "The sweep's name (default: the design's)");
  sweep->add_option("--repeats", sw_repeats, "Each unit N times with other data seeds")->check(within(1, 1000));
  sweep->add_option("--sample", sw_sample, "A random sample of N units of the grid")->check(within(0, 1000000));
  sweep->add_option("--seed", sw_seed, "The sample's seed")->check(within(0, 1000000000));
  sweep->add_option("--max_units", sw_max, "More units than this need --yes (default 100)")->check(within(1, 1000000));
  sweep->add_flag("--yes", sw_yes, "Run however many units the design has");
  int sw_parallel = 1;
  int64_t sw_unit = 0;
  bool sw_srun = false;
  sweep->add_option("--parallel", sw_parallel, "Run K units at a time, each in a process with the cores / K threads")
      ->check(within(1, 1024));
  sweep->add_option("--unit", sw_unit, "Run this unit only (1-based; a SLURM array task: --unit=$SLURM_ARRAY_TASK_ID)")
      ->check(within(1, 1000000));
  sweep->add_flag("--srun", sw_srun, "Share the units among SLURM's tasks (srun -n K quantlab sweep ... --srun)");
  sweep->fallthrough();  // --problem, --topology, --threads, ... are the training flags
  CLI::App* problem = app.add_subcommand("problem", "Manage problems");
  CLI::App* add = problem->add_subcommand("add", "Create <home>/NAME/config.json and its storage folders");
  add->add_option("name", add_name, "Problem name")->required();
  add->add_option("--home", add_home, "Main folder (default: .)");
  problem->require_subcommand(1);
  quantlab::ExportOptions ex;
  CLI::App* exporter =
      app.add_subcommand("export", "Write a trained experiment as an integer model (or ONNX) and check its parity");
  exporter->add_option("--problem", ex.problem, "Problem folder")->required();
  exporter->add_option("--exp_id", ex.exp_id, "The experiment")->required()->check(within(0, 999999999));
  exporter->add_option("--load", ex.load, "Checkpoint: best (default), last or an epoch number");
  exporter->add_option("--format", ex.format, "qlm (the integer runtime's, default) or onnx")
      ->check(CLI::IsMember({"qlm", "onnx"}));
  exporter->add_option("--out", ex.out, "The file to write (default: <experiment>/export/<class>_<load>.<format>)");
  exporter->add_option("--home", ex.home, "Main folder (default: .)");
  exporter->add_option("--data", ex.data, "Folder with the problem's data files");
  exporter->add_option("--threads", ex.threads, "Threads of the parity check (default: all)")->check(within(0, 1024));
  bool no_check = false;
  exporter->add_flag("--no_check", no_check, "Skip the parity check");
  quantlab::InferOptions inf;
  CLI::App* infer =
      app.add_subcommand("infer", "Run an exported model on a problem's test set with the integer runtime");
  infer->add_option("--model", inf.model, "The model file")->required();
  infer->add_option("--problem", inf.problem, "Problem folder (its test set)");
  infer->add_option("--home", inf.home, "Main folder (default: .)");
  infer->add_option("--data", inf.data, "Folder with the test files (instead of --problem's)");
  infer->add_option("--threads", inf.threads, "Threads (default: all)")->check(within(0, 1024));
  infer->add_option("--labels", inf.labels_out, "Write the predicted labels to this file, one per line");
  std::string vp_images, vp_labels, vp_out;
  CLI::App* valprep = app.add_subcommand(
      "valprep", "Sort ImageNet's flat validation folder into <wnid>/ class folders (as valprep.sh)");
  valprep->add_option("--images", vp_images, "The flat folder of validation images")->required();
  valprep->add_option("--labels", vp_labels, "Labels: '<image> <wnid>' lines, LOC_val_solution.csv or valprep.sh")
      ->required();
  valprep->add_option("--out", vp_out, "Where the class folders go (default: --images itself)");
  CLI11_PARSE(app, argc, argv);
  if (exp_id >= 0) o.exp_id = exp_id;
  if (app.count("--config") > 0) o.config = config;
  if (!load.empty() || app.count("--load") > 0) o.load = load;
  o.mode = mode == "test" ? quantlab::LaunchMode::kTest : quantlab::LaunchMode::kTrain;
  if (std::getenv("QUANTLAB_LAUNCHER") && std::getenv("WORLD_SIZE")) o.nproc = std::atoi(std::getenv("WORLD_SIZE"));
  try {
    if (nproc > 1) {
      std::vector<std::string> args;  // this command line without --nproc
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--nproc") {
          ++i;
          continue;
        }
        if (a.rfind("--nproc=", 0) == 0) continue;
        args.push_back(a);
      }
      return quantlab::dist::run_local_processes(nproc, argv[0], args, o.dist_timeout_s, std::cerr);
    }
    if (*list) {
      quantlab::list_experiments(list_home, list_problem, std::cout);
      return 0;
    }
    if (*sweep) {
      std::vector<std::string> command{self_path(argv[0])};  // this command line without --parallel
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--parallel") {
          ++i;
          continue;
        }
        if (a.rfind("--parallel=", 0) != 0) command.push_back(a);
      }
      return run_sweep_command(o, sw_design, sw_name, sw_grid, sw_repeats, sw_sample, sw_seed, sw_max, sw_yes,
                               sw_parallel, sw_unit, sw_srun, command);
    }
    if (*compare) {
      if (!cmp_ids.empty()) cmp.ids = quantlab::parse_id_list(cmp_ids);
      quantlab::compare_experiments(cmp, std::cout);
      return 0;
    }
    if (*diff) {
      quantlab::diff_experiments(diff_home, diff_problem, diff_a, diff_b, std::cout);
      return 0;
    }
    if (*exporter) {
      ex.check = !no_check;
      quantlab::run_export(ex, std::cout);
      return 0;
    }
    if (*infer) {
      quantlab::run_infer(inf, std::cout);
      return 0;
    }
    if (*valprep) {
      std::cout << quantlab::data::valprep_report(
          quantlab::data::sort_validation_images(vp_images, vp_labels, vp_out.empty() ? vp_images : vp_out), vp_images,
          vp_out.empty() ? vp_images : vp_out);
      return 0;
    }
    if (*add) {
      for (const auto& line : quantlab::add_problem(quantlab::read_storage(add_home), add_name))
        std::cout << line << std::endl;
      return 0;
    }
    return run(o);
  } catch (const quantlab::Error& e) {
    std::cerr << "quantlab: error: " << e.what() << std::endl;
  } catch (const c10::Error& e) {
    std::cerr << "quantlab: error in libtorch: " << e.what_without_backtrace() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "quantlab: error: " << e.what() << std::endl;
  }
  return 1;
}
