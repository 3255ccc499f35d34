// Building an experiment from its config.
#include "quantlab/train/experiment.h"

#include "quantlab/config/json_node.h"
#include "quantlab/nn/ana_site.h"

namespace quantlab {
namespace {

bool has_ana_modules(torch::nn::Module& net) {
  for (const auto& m : net.modules(false))
    if (dynamic_cast<nn::AnaSite*>(m.get())) return true;
  return false;
}

DataOptions parse_data(const JsonNode& d) {
  d.allow_keys({"augment", "valid_fraction", "bs_train", "bs_valid", "seed", "pad", "crop", "workers",
                "scaled_decode"});
  DataOptions o;
  if (d.has("augment") && d.at("augment").json().is_string()) {
    o.augment_kind = d.at("augment").string();
    if (o.augment_kind != "torchvision" && o.augment_kind != "torchvision2")
      d.at("augment").fail("expected true, false, \"torchvision\" or \"torchvision2\"");
    o.augment = true;
  } else {
    o.augment = d.boolean("augment", false);
  }
  o.valid_fraction = d.number("valid_fraction", 0.1);
  if (!(o.valid_fraction >= 0.0 && o.valid_fraction < 1.0))
    d.at("valid_fraction").fail("expected a fraction in [0, 1)");
  o.bs_train = d.integer("bs_train", 256);
  o.bs_valid = d.integer("bs_valid", 64);
  if (o.bs_train < 1) d.at("bs_train").fail("expected a positive batch size");
  if (o.bs_valid < 1) d.at("bs_valid").fail("expected a positive batch size");
  o.pad = d.integer("pad", 0);
  if (o.pad < 0) d.at("pad").fail("expected a non-negative number of pixels");
  const int64_t seed = d.integer("seed", 0);
  if (seed < 0) d.at("seed").fail("expected a non-negative integer");
  o.seed = static_cast<uint64_t>(seed);
  o.crop = d.integer("crop", 224);
  if (o.crop < 1 || o.crop > 256) d.at("crop").fail("expected a crop side in [1, 256] pixels (images are resized to 256 first)");
  o.scaled_decode = d.boolean("scaled_decode", false);
  o.workers = d.integer("workers", 0);
  if (o.workers < 0) d.at("workers").fail("expected a non-negative number of threads (0: one per core)");
  return o;
}

ProtocolOptions parse_protocol(const JsonNode& p) {
  p.allow_keys({"update_metric", "metric_period"});
  ProtocolOptions o;
  o.update_metric = p.string("update_metric", "valid_metric");
  if (o.update_metric != "valid_metric" && o.update_metric != "valid_loss" &&
      o.update_metric != "train_metric" && o.update_metric != "train_loss")
    p.at("update_metric").fail("expected one of valid_metric, valid_loss, train_metric, train_loss");
  o.metric_period = p.integer("metric_period", 1);
  if (o.metric_period < 1) p.at("metric_period").fail("expected a positive integer");
  return o;
}

}  // namespace

data::ProblemOptions problem_options(const DataOptions& d) {
  data::ProblemOptions o;
  o.valid_fraction = d.valid_fraction;
  o.seed = d.seed;
  o.pad = d.pad;
  o.augment = d.augment;
  o.augment_kind = d.augment_kind;
  o.crop = d.crop;
  o.scaled_decode = d.scaled_decode;
  return o;
}

Experiment::Experiment(const nlohmann::json& cfg, const std::string& topology, torch::Device dev)
    : config(cfg), device(dev) {
  const JsonNode root(config, "");
  root.allow_keys({"description", "indiv", "treat", "protocol"});
  description = root.string("description", "");
  const JsonNode indiv = root.at("indiv");
  indiv.allow_keys({"net", "loss_function"});
  const JsonNode treat = root.at("treat");
  treat.allow_keys({"thermostat", "optimizer", "lr_scheduler", "data", "max_epoch"});

  data = parse_data(treat.at("data"));
  protocol = parse_protocol(root.at("protocol"));
  max_epoch = treat.at("max_epoch").integer();
  if (max_epoch < 1) treat.at("max_epoch").fail("expected a positive number of epochs");

  torch::manual_seed(data.seed);  // weight initialisation and the random strategy: reproducible runs
  net = build_network(indiv.at("net"), topology);
  loss = make_loss(indiv.at("loss_function"));
  const bool quantized = has_ana_modules(*net);
  if (treat.has("thermostat")) {
    if (!quantized) treat.at("thermostat").fail("this network has no ANA module to anneal; remove the thermostat");
    thermostat = std::make_unique<Thermostat>(*net, treat.at("thermostat"));
  } else if (quantized) {
    treat.fail("missing \"thermostat\": the network has ANA modules whose noise must be scheduled");
  }
  net->to(device);
  optimizer = make_optimizer(treat.at("optimizer"), net->parameters());
  static const nlohmann::json kNull;
  lr_scheduler = make_lr_scheduler(treat.has("lr_scheduler") ? treat.at("lr_scheduler")
                                                             : JsonNode(kNull, "treat.lr_scheduler"),
                                   get_lr(*optimizer));
}

}  // namespace quantlab
