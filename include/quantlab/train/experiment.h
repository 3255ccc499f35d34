// An experiment built from a config.json (the original's format):
//   indiv:    net {class, params, pretrained}, loss_function {class, params}
//   treat:    thermostat {params}, optimizer {class, params}, lr_scheduler {class, params,
//             step_metric}, data {augment, valid_fraction, bs_train, bs_valid, seed, pad, crop,
//             workers, scaled_decode}, max_epoch
//   protocol: update_metric, metric_period
// Everything is parsed and validated here, once, into typed values, before any data is read: a
// wrong key, type, class or quantizer throws a ConfigError naming the JSON path. Nothing reads the
// raw JSON afterwards (`config` is kept only to be copied into the experiment folder and shown).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quantlab/data/problem.h"
#include "quantlab/topology/network_spec.h"
#include "quantlab/train/loss.h"
#include "quantlab/train/lr_scheduler.h"
#include "quantlab/train/optimizer.h"
#include "quantlab/train/statistic.h"
#include "quantlab/train/thermostat.h"

namespace quantlab::train {

struct ProtocolOptions {
  Statistic update_metric = Statistic::kValidMetric;  // which statistic selects the best epoch
  int64_t metric_period = 1;  // the training metric is measured every N epochs (0: never), as the original
};

class Experiment {
 public:
  // `topology` (the --topology flag) must be the family of indiv.net.class; empty skips the check.
  Experiment(const nlohmann::json& config, const std::string& topology, torch::Device device);

  nlohmann::json config;  // the file as given: copied into the experiment folder, never read again
  std::string description;
  topology::NetworkSpec net_spec;
  data::DataOptions data;
  ProtocolOptions protocol;
  int64_t max_epoch = 0;
  torch::Device device;
  std::vector<std::string> notes;  // things the user should be told once (e.g. a thermostat with nothing to anneal)

  std::shared_ptr<topology::Network> net;
  std::unique_ptr<Thermostat> thermostat;  // null when the network has no ANA module
  Loss loss;
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::string optimizer_class;  // treat.optimizer.class
  std::unique_ptr<LrScheduler> lr_scheduler;
  std::string lr_schedule;  // schedule_identity(treat.lr_scheduler)
  double first_lr = 0.0;    // the rate the config gives the first epoch (the schedule's start)
};

}  // namespace quantlab::train
