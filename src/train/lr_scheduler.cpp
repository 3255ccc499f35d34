// The lr scheduler registry.
#include "quantlab/train/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "quantlab/util/registry.h"

namespace quantlab {

void LrScheduler::load_state(const std::vector<double>& state) {
  if (!state.empty()) throw Error("lr scheduler: the checkpoint holds state for another scheduler class");
}

namespace {

class Constant : public LrScheduler {
 public:
  double lr_for_epoch(int64_t, double lr, double) override { return lr; }
};

// Any schedule that is a pure function of the epoch: lr = base * factor(epoch).
class Pure : public LrScheduler {
 public:
  Pure(double base, std::function<double(int64_t)> factor) : base_(base), factor_(std::move(factor)) {}
  double lr_for_epoch(int64_t e, double, double) override { return base_ * factor_(e); }

 private:
  double base_;
  std::function<double(int64_t)> factor_;
};

class ReduceOnPlateau : public LrScheduler {
 public:
  explicit ReduceOnPlateau(const JsonNode& p) {
    p.allow_keys({"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps", "verbose"});
    const std::string mode = p.string("mode", "min");
    if (mode != "min" && mode != "max") p.at("mode").fail("expected \"min\" or \"max\"");
    maximize_ = mode == "max";
    factor_ = p.number("factor", 0.1);
    if (!(factor_ > 0 && factor_ < 1)) p.at("factor").fail("expected a factor in (0, 1)");
    if (p.has("min_lr") && !(p.at("min_lr").number() >= 0)) p.at("min_lr").fail("expected a non-negative rate");
    patience_ = p.integer("patience", 10);
    threshold_ = p.number("threshold", 1e-4);
    const std::string tm = p.string("threshold_mode", "rel");
    if (tm != "rel" && tm != "abs") p.at("threshold_mode").fail("expected \"rel\" or \"abs\"");
    relative_ = tm == "rel";
    cooldown_ = p.integer("cooldown", 0);
    min_lr_ = p.number("min_lr", 0.0);
    eps_ = p.number("eps", 1e-8);
    best_ = maximize_ ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }

  std::vector<double> state() const override {
    return {best_, static_cast<double>(bad_), static_cast<double>(cooling_)};
  }
  void load_state(const std::vector<double>& s) override {
    if (s.size() != 3) throw Error("ReduceLROnPlateau: the checkpoint holds state for another scheduler class");
    best_ = s[0];
    bad_ = static_cast<int64_t>(s[1]);
    cooling_ = static_cast<int64_t>(s[2]);
  }

  double lr_for_epoch(int64_t, double lr, double metric) override {
    if (better(metric)) {
      best_ = metric;
      bad_ = 0;
    } else {
      ++bad_;
    }
    if (cooling_ > 0) {
      --cooling_;
      bad_ = 0;
    }
    if (bad_ > patience_) {
      const double next = std::max(lr * factor_, min_lr_);
      cooling_ = cooldown_;
      bad_ = 0;
      if (lr - next > eps_) return next;
    }
    return lr;
  }

 private:
  bool better(double m) const {
    if (std::isinf(best_)) return true;
    const double margin = relative_ ? std::abs(best_) * threshold_ : threshold_;
    return maximize_ ? m > best_ + margin : m < best_ - margin;
  }
  bool maximize_ = false, relative_ = true;
  double factor_ = 0.1, threshold_ = 1e-4, min_lr_ = 0, eps_ = 1e-8, best_ = 0;
  int64_t patience_ = 10, cooldown_ = 0, bad_ = 0, cooling_ = 0;
};

using SchedulerFactory = std::function<std::unique_ptr<LrScheduler>(const JsonNode&, double)>;

// A registry entry: how to build the schedule, and whether it is stepped with an epoch statistic
// (then `step_metric` is required).
struct SchedulerEntry {
  SchedulerFactory build;
  bool reads_statistic = false;
};

// A multiplicative factor or gamma: positive and finite, so the rate stays positive.
double positive_factor(const JsonNode& n) {
  const double v = n.number();
  if (!(v > 0.0) || !std::isfinite(v))
    n.fail("expected a positive factor (the learning rate must stay positive), got " + n.json().dump());
  return v;
}

double positive_factor(const JsonNode& p, const char* key, double fallback) {
  return p.has(key) ? positive_factor(p.at(key)) : fallback;
}

std::unique_ptr<LrScheduler> hand(const JsonNode& p, double base) {
  p.allow_keys({"schedule"});
  const JsonNode s = p.at("schedule");
  std::map<int64_t, double> table;
  for (const auto& key : s.keys()) {
    char* end = nullptr;
    const long e = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || e < 0) s.at(key).fail("keys must be epoch numbers");
    table[e] = positive_factor(s.at(key));
  }
  return std::make_unique<Pure>(base, [table](int64_t e) {
    double f = 1.0;
    for (const auto& kv : table)
      if (kv.first <= e) f = kv.second;
    return f;
  });
}

std::unique_ptr<LrScheduler> step(const JsonNode& p, double base) {
  p.allow_keys({"step_size", "gamma"});
  const int64_t size = p.at("step_size").integer();
  if (size < 1) p.at("step_size").fail("expected a positive integer");
  const double gamma = positive_factor(p, "gamma", 0.1);
  return std::make_unique<Pure>(base, [=](int64_t e) { return std::pow(gamma, e / size); });
}

std::unique_ptr<LrScheduler> multi_step(const JsonNode& p, double base) {
  p.allow_keys({"milestones", "gamma"});
  auto milestones = p.at("milestones").integers();
  for (int64_t m : milestones)
    if (m < 1) p.at("milestones").fail("expected positive epoch numbers");
  std::sort(milestones.begin(), milestones.end());
  const double gamma = positive_factor(p, "gamma", 0.1);
  return std::make_unique<Pure>(base, [=](int64_t e) {
    const auto passed = std::upper_bound(milestones.begin(), milestones.end(), e) - milestones.begin();
    return std::pow(gamma, static_cast<double>(passed));
  });
}

std::unique_ptr<LrScheduler> cosine(const JsonNode& p, double base) {
  p.allow_keys({"T_max", "eta_min"});
  const int64_t t_max = p.at("T_max").integer();
  if (t_max < 1) p.at("T_max").fail("expected a positive integer");
  const double eta_min = p.number("eta_min", 0.0);
  if (!(eta_min >= 0.0)) p.at("eta_min").fail("expected a non-negative rate");
  // Closed form of PyTorch's CosineAnnealingLR, as a factor of the base rate.
  return std::make_unique<Pure>(base, [=](int64_t e) {
    const double lr = eta_min + (base - eta_min) * (1 + std::cos(M_PI * e / t_max)) / 2;
    return lr / base;
  });
}

std::unique_ptr<LrScheduler> exponential(const JsonNode& p, double base) {
  p.allow_keys({"gamma"});
  const double gamma = positive_factor(p.at("gamma"));
  return std::make_unique<Pure>(base, [=](int64_t e) { return std::pow(gamma, static_cast<double>(e)); });
}

const Registry<SchedulerEntry>& scheduler_registry() {
  static const Registry<SchedulerEntry> r = [] {
    Registry<SchedulerEntry> reg("lr scheduler");
    reg.add("HandScheduler", {hand}).add("StepLR", {step}).add("MultiStepLR", {multi_step});
    reg.add("ExponentialLR", {exponential});
    reg.add("CosineAnnealingLR", {cosine}).add("CosineAnnealing", {cosine});
    reg.add("ReduceLROnPlateau",
            {[](const JsonNode& p, double) { return std::make_unique<ReduceOnPlateau>(p); }, true});
    return reg;
  }();
  return r;
}

}  // namespace

std::unique_ptr<LrScheduler> make_lr_scheduler(const JsonNode& spec, double base_lr) {
  if (spec.is_null()) return std::make_unique<Constant>();
  spec.allow_keys({"class", "params", "step_metric", "update_stat"});
  const JsonNode cls = spec.at("class");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const JsonNode params = spec.has("params") ? spec.at("params") : JsonNode(kEmpty, spec.path() + ".params");
  const SchedulerEntry& entry = scheduler_registry().at(cls.string(), cls.path());
  auto sched = entry.build(params, base_lr);
  if (entry.reads_statistic) {
    const char* key = spec.has("step_metric") ? "step_metric" : "update_stat";  // the 2019 name
    if (!spec.has(key)) spec.fail(cls.string() + " needs \"step_metric\" (e.g. \"valid_metric\")");
    sched->set_step_metric(parse_statistic(spec.at(key)));
  }
  return sched;
}

}  // namespace quantlab
