// Building an experiment from its config.
#include "quantlab/train/experiment.h"

#include <algorithm>

#include "quantlab/config/json_node.h"
#include "quantlab/core/integer_grid.h"
#include "quantlab/nn/ana_site.h"
#include "quantlab/train/ana_fold.h"

namespace quantlab::train {
namespace {

bool has_ana_modules(torch::nn::Module& net) {
  for (const auto& m : net.modules(false))
    if (dynamic_cast<nn::AnaSite*>(m.get())) return true;
  return false;
}

// Levels that are no whole numbers of one step within 8 bits train, but `quantlab export` refuses
// them: said when training starts rather than after it, one note per reason.
void note_levels_the_export_refuses(torch::nn::Module& net, std::vector<std::string>& notes) {
  std::vector<std::pair<std::string, std::string>> reasons;  // (why, modules), in module order
  for (const auto& item : net.named_modules("", false)) {
    const auto* site = dynamic_cast<nn::AnaSite*>(item.value().get());
    if (!site) continue;
    const core::Quantizer& q = site->scheme().quantizer;
    double step = 0;
    std::vector<int8_t> ints;
    const std::string why = core::on_grid(std::vector<double>(q.levels.begin(), q.levels.end()), q.scale, step, ints);
    if (why.empty()) continue;
    auto it = std::find_if(reasons.begin(), reasons.end(), [&](const auto& r) { return r.first == why; });
    if (it == reasons.end())
      reasons.emplace_back(why, item.key());
    else
      it->second += ", " + item.key();
  }
  for (const auto& [why, modules] : reasons)
    notes.push_back("the levels of " + modules + " cannot be integers: " + why +
                    ". Training is not affected, but `quantlab export` will refuse this network");
}

data::ImageAugment parse_augment(const config::JsonNode& d) {
  if (!d.has("augment")) return data::ImageAugment::kNone;
  const config::JsonNode a = d.at("augment");
  if (a.json().is_string()) {
    const std::string kind = a.string();
    if (kind == "torchvision") return data::ImageAugment::kTorchvision;
    if (kind == "torchvision2") return data::ImageAugment::kTorchvision2;
    a.fail("expected true, false, \"torchvision\" or \"torchvision2\"");
  }
  return a.boolean() ? data::ImageAugment::kOriginal : data::ImageAugment::kNone;
}

data::DataOptions parse_data(const config::JsonNode& d) {
  d.allow_keys({"augment", "valid_fraction", "bs_train", "bs_valid", "seed", "split_seed", "pad", "crop", "workers",
                "scaled_decode"});
  data::DataOptions o;
  o.augment = parse_augment(d);
  o.valid_fraction = d.number("valid_fraction", 0.1);
  if (!(o.valid_fraction >= 0.0 && o.valid_fraction < 1.0))
    d.at("valid_fraction").fail("expected a fraction in [0, 1)");
  o.bs_train = d.integer("bs_train", 256);
  o.bs_valid = d.integer("bs_valid", 64);
  if (o.bs_train < 1) d.at("bs_train").fail("expected a positive batch size");
  if (o.bs_valid < 1) d.at("bs_valid").fail("expected a positive batch size");
  o.pad = d.integer("pad", 0);
  if (o.pad < 0 || o.pad > 1024) d.at("pad").fail("expected a number of pixels in [0, 1024]");
  const int64_t seed = d.integer("seed", 0);
  if (seed < 0) d.at("seed").fail("expected a non-negative integer");
  o.seed = static_cast<uint64_t>(seed);
  const int64_t split_seed = d.integer("split_seed", 1234);
  if (split_seed < 0) d.at("split_seed").fail("expected a non-negative integer");
  o.split_seed = static_cast<uint64_t>(split_seed);
  o.crop = d.integer("crop", 224);
  if (o.crop < 1 || o.crop > 256)
    d.at("crop").fail("expected a crop side in [1, 256] pixels (images are resized to 256 first)");
  o.scaled_decode = d.boolean("scaled_decode", false);
  o.workers = d.integer("workers", 0);
  if (o.workers < 0 || o.workers > 256)
    d.at("workers").fail("expected a number of threads in [0, 256] (0: one per core)");
  return o;
}

ProtocolOptions parse_protocol(const config::JsonNode& p) {
  p.allow_keys({"update_metric", "metric_period"});
  ProtocolOptions o;
  if (p.has("update_metric")) o.update_metric = parse_statistic(p.at("update_metric"));
  o.metric_period = p.integer("metric_period", 1);
  if (o.metric_period < 0)
    p.at("metric_period").fail("expected a non-negative integer (0: never measure the training metric)");
  if (o.metric_period == 0 && o.update_metric == Statistic::kTrainMetric)
    p.at("metric_period").fail("update_metric is train_metric, which metric_period 0 never measures");
  return o;
}

// indiv.loss_function, or indiv.net.loss_function (the original's baseline template).
config::JsonNode loss_node(const config::JsonNode& indiv) {
  const config::JsonNode net = indiv.at("net");
  if (indiv.has("loss_function") && net.has("loss_function"))
    indiv.fail("give loss_function once: in indiv or in indiv.net, not both");
  return net.has("loss_function") ? net.at("loss_function") : indiv.at("loss_function");
}

}  // namespace

Experiment::Experiment(const nlohmann::json& cfg, const std::string& topology, torch::Device dev)
    : config(cfg), device(dev) {
  const config::JsonNode root(config, "");
  root.allow_keys({"description", "indiv", "treat", "protocol", "overrides", "sweep"});
  description = root.string("description", "");
  if (root.has("overrides")) root.at("overrides").strings();  // the record of --set (config/overrides.h)
  if (root.has("sweep")) root.at("sweep").expect_object();    // the unit of a sweep (experiment/sweep.h)
  const config::JsonNode indiv = root.at("indiv");
  indiv.allow_keys({"net", "loss_function"});
  const config::JsonNode treat = root.at("treat");
  treat.allow_keys({"thermostat", "optimizer", "lr_scheduler", "data", "max_epoch"});

  net_spec = topology::parse_network_spec(indiv.at("net"), topology);
  data = parse_data(treat.at("data"));
  protocol = parse_protocol(root.at("protocol"));
  max_epoch = treat.at("max_epoch").integer();
  if (max_epoch < 1 || max_epoch > 1000000) treat.at("max_epoch").fail("expected a number of epochs in [1, 1000000]");

  torch::manual_seed(data.seed);  // weight initialisation and the random strategy: reproducible runs
  net = topology::build_network(net_spec);
  loss = make_loss(loss_node(indiv));
  const bool quantized = has_ana_modules(*net);
  note_levels_the_export_refuses(*net, notes);
  if (treat.has("thermostat")) {
    if (quantized) {
      thermostat = std::make_unique<Thermostat>(*net, treat.at("thermostat"));
    } else {
      notes.push_back(net_spec.cls + " is a float network: it has nothing to anneal, so treat.thermostat is ignored");
    }
  } else if (quantized) {
    treat.fail("missing \"thermostat\": the network has ANA modules whose noise must be scheduled");
  }
  net->to(device);
  optimizer = make_optimizer(treat.at("optimizer"), net->parameters());
  fold_ana_backward(*net, *optimizer);  // Adam's step takes the weights' ANA backward (ana_fold.h)
  static const nlohmann::json kNull;
  const config::JsonNode schedule =
      treat.has("lr_scheduler") ? treat.at("lr_scheduler") : config::JsonNode(kNull, "treat.lr_scheduler");
  lr_scheduler = make_lr_scheduler(schedule, {get_lr(*optimizer), max_epoch});
  lr_schedule = schedule_identity(schedule);
  first_lr = lr_scheduler->initial_lr(get_lr(*optimizer));  // CyclicLR, OneCycleLR: their own start
  set_lr(*optimizer, first_lr);
  optimizer_class = treat.at("optimizer").at("class").string();
  if (const auto m = lr_scheduler->momentum_at(0)) set_momentum(*optimizer, *m);
}

}  // namespace quantlab::train
