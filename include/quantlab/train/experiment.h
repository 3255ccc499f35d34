// An experiment built from a config.json (the original's format):
//   indiv:    net {class, params, pretrained}, loss_function {class, params}
//   treat:    thermostat {params}, optimizer {class, params}, lr_scheduler {class, params,
//             step_metric}, data {augment, valid_fraction, bs_train, bs_valid, seed, pad, crop,
//             workers, scaled_decode}, max_epoch
//   protocol: update_metric, metric_period
// Everything is parsed and validated here, before any data is read: a wrong key, type, class or
// quantizer throws a ConfigError naming the JSON path.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "quantlab/data/problem.h"
#include "quantlab/topology/network.h"
#include "quantlab/train/loss.h"
#include "quantlab/train/lr_scheduler.h"
#include "quantlab/train/optimizer.h"
#include "quantlab/train/thermostat.h"

namespace quantlab {

struct DataOptions {
  bool augment = false;
  std::string augment_kind;  // image folders: "" (the original's, from `true`), "torchvision", "torchvision2"
  double valid_fraction = 0.1;
  int64_t bs_train = 256;
  int64_t bs_valid = 64;
  int64_t pad = 0;    // zero pixels around each image (2: Fashion-MNIST's 28x28 to VGG's 32x32)
  uint64_t seed = 0;  // of the validation split, the per-epoch shuffles and libtorch's generator
  int64_t crop = 224;   // image folders: side of the training and validation crops
  int64_t workers = 0;  // threads building batches; 0: as many as the machine has cores
  bool scaled_decode = false;  // image folders: decode JPEGs at a reduced DCT scale where possible
};

// What load_problem needs of the data options.
data::ProblemOptions problem_options(const DataOptions& d);

struct ProtocolOptions {
  std::string update_metric = "valid_metric";  // which statistic selects the best epoch
  int64_t metric_period = 1;
};

class Experiment {
 public:
  // `topology` (the --topology flag) must be the family of indiv.net.class; empty skips the check.
  Experiment(const nlohmann::json& config, const std::string& topology, torch::Device device);

  nlohmann::json config;
  std::string description;
  DataOptions data;
  ProtocolOptions protocol;
  int64_t max_epoch = 0;
  torch::Device device;

  std::shared_ptr<Network> net;
  std::unique_ptr<Thermostat> thermostat;  // null when the network has no ANA module
  LossFn loss;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::unique_ptr<LrScheduler> lr_scheduler;
};

}  // namespace quantlab
