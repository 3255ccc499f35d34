// Storage roots, problem folders and their links.
#include "quantlab/experiment/storage.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "quantlab/config/json_node.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;

const char* const kFashionMnistPackage = "/usr/share/datasets/fashion-mnist";
const char* const kIdxFiles[] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                 "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};

std::string absolute(const std::string& home, const std::string& p) {
  return fs::path(p).is_absolute() ? p : (fs::path(home) / p).lexically_normal().string();
}

void make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec || !fs::is_directory(dir)) throw IoError(dir + ": cannot create folder (" + ec.message() + ")");
}

// Writes and removes a small file: a folder that cannot take it fails now, not after an epoch.
void probe_writable(const std::string& dir) {
  const std::string probe = dir + "/.quantlab-probe-" + std::to_string(getpid());
  {
    std::ofstream out(probe);
    out << "probe\n";
    out.flush();
    if (!out) {
      std::error_code ec;
      fs::remove(probe, ec);
      throw IoError(dir + ": not writable (check permissions and free space)");
    }
  }
  fs::remove(probe);
}

// <home>/<Problem>/<leaf> -> <root>/<Problem>/<leaf>, unless the user made it a folder of their own.
std::string link_into(const std::string& link, const std::string& target) {
  make_dirs(target);
  std::error_code ec;
  const auto st = fs::symlink_status(link, ec);
  if (fs::exists(st) && !fs::is_symlink(st)) {
    if (!fs::is_directory(st)) throw IoError(link + ": exists and is not a folder or a link");
    return link;  // a real folder: the user's choice
  }
  if (fs::is_symlink(st)) {
    if (fs::equivalent(link, target, ec)) return link;
    fs::remove(link);
  }
  fs::create_directory_symlink(target, link, ec);
  if (ec) throw IoError(link + ": cannot link to " + target + " (" + ec.message() + ")");
  return link;
}

const char* const kTemplate = R"({
  "description": "Ternary MLP trained with ANA. Edit the topology, schedule and data to your problem.",
  "indiv": {
    "net": {
      "class": "MLP",
      "params": {
        "capacity": 1,
        "quant_schemes": {
          "phi1_fc": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi1_act": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi2_fc": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi2_act": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi3_fc": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi3_act": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]],
          "phi4_fc": ["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]]
        }
      },
      "pretrained": null
    },
    "loss_function": {"class": "HingeLoss", "params": {"num_classes": 10}}
  },
  "treat": {
    "thermostat": {
      "params": {
        "noise_schemes": {
          "phi1_fc": {"stddev_start": [0.5, 0.5]}, "phi1_act": {"stddev_start": [0.5, 0.5]},
          "phi2_fc": {"stddev_start": [0.5, 0.5]}, "phi2_act": {"stddev_start": [0.5, 0.5]},
          "phi3_fc": {"stddev_start": [0.5, 0.5]}, "phi3_act": {"stddev_start": [0.5, 0.5]},
          "phi4_fc": {"stddev_start": [0.5, 0.5]}
        },
        "bindings": [
          {"maps": ["phi1"], "forward": {"class": "Linear", "params": {"t_start": 0, "t_decay": 10}}, "backward": {"class": "Constant", "params": {}}},
          {"maps": ["phi2"], "forward": {"class": "Linear", "params": {"t_start": 10, "t_decay": 10}}, "backward": {"class": "Constant", "params": {}}},
          {"maps": ["phi3"], "forward": {"class": "Linear", "params": {"t_start": 20, "t_decay": 10}}, "backward": {"class": "Constant", "params": {}}},
          {"maps": ["phi4"], "forward": {"class": "Linear", "params": {"t_start": 30, "t_decay": 10}}, "backward": {"class": "Constant", "params": {}}}
        ]
      }
    },
    "optimizer": {"class": "Adam", "params": {"lr": 1e-3}},
    "lr_scheduler": {"class": "HandScheduler", "params": {"schedule": {"45": 0.1}}},
    "data": {"augment": false, "valid_fraction": 0.1, "bs_train": 256, "bs_valid": 256},
    "max_epoch": 50
  },
  "protocol": {"update_metric": "valid_metric", "metric_period": 1}
}
)";

}  // namespace

void check_plain_name(const std::string& what, const std::string& name) {
  if (name.empty() || name[0] == '.' || name.find('/') != std::string::npos ||
      name.find('\\') != std::string::npos || name.find('\0') != std::string::npos)
    throw Error(what + "='" + name + "': expected a plain folder name (no '/', no leading '.')");
}

Storage read_storage(const std::string& home) {
  Storage s;
  s.home = fs::absolute(home).lexically_normal().string();
  if (!s.home.empty() && s.home.size() > 1 && s.home.back() == '/') s.home.pop_back();
  const std::string file = s.home + "/cfg/hard_storage.json";
  std::string data = "storage", logs = "storage";
  if (fs::exists(file)) {
    const nlohmann::json j = read_json_file(file);
    const JsonNode root(j, file);
    root.allow_keys({"data", "logs"});
    data = root.at("data").string();
    logs = root.at("logs").string();
  }
  s.data_root = absolute(s.home, data) + "/QuantLab";
  s.logs_root = absolute(s.home, logs) + "/QuantLab";
  return s;
}

ProblemPaths prepare_problem(const Storage& storage, const std::string& problem) {
  check_plain_name("--problem", problem);
  ProblemPaths p;
  p.dir = storage.home + "/" + problem;
  make_dirs(p.dir);
  p.data = link_into(p.dir + "/data", storage.data_root + "/" + problem + "/data");
  p.logs = link_into(p.dir + "/logs", storage.logs_root + "/" + problem + "/logs");
  probe_writable(p.logs);
  if (problem == "FashionMNIST" && fs::is_directory(kFashionMnistPackage) &&
      !fs::exists(p.data + "/train-images-idx3-ubyte") && !fs::exists(p.data + "/train-images-idx3-ubyte.gz")) {
    for (const char* f : kIdxFiles) {
      std::error_code ec;
      fs::create_symlink(std::string(kFashionMnistPackage) + "/" + f, p.data + "/" + f, ec);
    }
  }
  return p;
}

std::vector<std::string> add_problem(const Storage& storage, const std::string& name) {
  check_plain_name("problem name", name);
  const std::string config = storage.home + "/" + name + "/config.json";
  if (fs::exists(config)) throw Error(config + ": exists already; nothing was changed");
  const ProblemPaths p = prepare_problem(storage, name);
  std::ofstream(config) << kTemplate;
  if (!fs::exists(config)) throw IoError(config + ": cannot write");
  return {"created " + config + " (a ternary MLP for 28x28 images: edit it to your problem)",
          "data folder " + p.data + " -> " + fs::canonical(p.data).string(),
          "logs folder " + p.logs + " -> " + fs::canonical(p.logs).string(),
          "copy the data there: train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
          "t10k-labels-idx1-ubyte (optionally gzipped)",
          "then: quantlab --problem=" + name + " --topology=MLP"};
}

}  // namespace quantlab
