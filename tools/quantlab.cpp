// quantlab: the command line. Parses flags, builds the experiment from <home>/<Problem>/config.json,
// trains and reports; every error becomes one message and a non-zero exit here, and only here.
#include <CLI/CLI.hpp>

#include <csignal>
#include <filesystem>
#include <iostream>

#include "quantlab/config/json_node.h"
#include "quantlab/data/problem.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"

namespace {

struct Flags {
  std::string problem, topology, exp_id, load = "best", mode = "train", home = ".", device = "auto", data;
  std::string config = "config.json";
  int64_t ckpt_every = 0;
  int threads = 0;
};

void check_name(const std::string& flag, const std::string& name) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      name.find('\\') != std::string::npos)
    throw quantlab::Error(flag + "='" + name + "': expected a plain folder name (no '/', no leading '.')");
}

int run(const Flags& f) {
  using namespace quantlab;
  check_name("--problem", f.problem);
  check_name("--topology", f.topology);
  check_name("--config", f.config);
  if (!f.exp_id.empty() || f.mode != "train")
    throw Error("--exp_id and --mode=test need stored experiments, which this version does not keep yet: "
                "run without them to train a new experiment and print its test accuracy");
  configure_runtime(f.threads);
  const torch::Device device = resolve_device(f.device);

  const std::string config_file = f.home + "/" + f.problem + "/" + f.config;
  if (!std::filesystem::exists(config_file))
    throw IoError(config_file + ": no such file (each problem keeps its config.json in <home>/<Problem>/; "
                  "--home sets <home>, now '" + f.home + "')");
  std::cout << "quantlab: " << f.problem << "/" << f.topology << " from " << config_file << " on "
            << device << ", " << at::get_num_threads() << " threads" << std::endl;
  Experiment exp(read_json_file(config_file), f.topology, device);

  std::cout << "loading data..." << std::flush;
  const std::string dir = data::find_idx_data_dir(f.home, f.problem, f.data);
  const data::ProblemData data = data::load_idx_problem(dir, exp.data.valid_fraction, exp.data.seed);
  std::cout << " " << data.split.train.size() << " training, " << data.split.valid.size() << " validation, "
            << data.test.size() << " test images from " << dir << std::endl;

  Progress progress = Progress::on_stdout();
  Trainer trainer(exp, data, progress);
  trainer.fit(0, exp.max_epoch);
  trainer.restore_best();
  const EpochStats t = trainer.test();
  std::cout << "test accuracy " << std::fixed << std::setprecision(2) << t.accuracy() << "% (loss "
            << std::setprecision(4) << t.loss << ") with the weights of the best epoch by "
            << exp.protocol.update_metric << ": epoch " << trainer.best_epoch() + 1 << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  quantlab::reexec_with_passive_openmp(argv);
  CLI::App app{"QuantLab: train quantized neural networks with Additive Noise Annealing"};
  Flags f;
  app.add_option("--problem", f.problem, "Problem (data set) folder under --home, e.g. FashionMNIST")->required();
  app.add_option("--topology", f.topology, "Topology family, e.g. MLP")->required();
  app.add_option("--exp_id", f.exp_id, "Experiment to resume");
  app.add_option("--load", f.load, "Checkpoint to load: best, last or an epoch number");
  app.add_option("--mode", f.mode, "train or test")->check(CLI::IsMember({"train", "test"}));
  app.add_option("--ckpt_every", f.ckpt_every, "Checkpoint every N epochs")->check(CLI::NonNegativeNumber);
  app.add_option("--config", f.config, "Config file name inside <home>/<Problem>/ (default: config.json)");
  app.add_option("--home", f.home, "Main folder holding <Problem>/config.json (default: .)");
  app.add_option("--device", f.device, "cpu, cuda or auto")->check(CLI::IsMember({"cpu", "cuda", "auto"}));
  app.add_option("--threads", f.threads, "Intra-op threads (default: all available cores)")->check(CLI::NonNegativeNumber);
  app.add_option("--data", f.data, "Folder with the problem's data files (default: <home>/<Problem>/data)");
  CLI11_PARSE(app, argc, argv);
  try {
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
