// The lr scheduler registry.
#include "quantlab/train/lr_scheduler.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>

#include "quantlab/util/registry.h"

namespace quantlab::train {

void LrScheduler::load_state(const std::vector<double>& state) {
  if (!state.empty()) throw Error("lr scheduler: the checkpoint holds state for another scheduler class");
}

namespace {

class Constant : public LrScheduler {
 public:
  double lr_for_epoch(int64_t, double lr, double) override { return lr; }
  std::optional<double> lr_at(int64_t, double first_lr) const override { return first_lr; }
};

// A schedule that is a pure function of the number of epochs done: the rate (and momentum) the
// next epoch trains with.
class Pure : public LrScheduler {
 public:
  using Fn = std::function<double(int64_t)>;
  explicit Pure(Fn lr, Fn momentum = {}) : lr_(std::move(lr)), momentum_(std::move(momentum)) {}
  double initial_lr(double) const override { return lr_(0); }
  double lr_for_epoch(int64_t e, double, double) override { return lr_(e); }
  std::optional<double> lr_at(int64_t e, double) const override { return lr_(e); }
  std::optional<double> momentum_at(int64_t e) const override {
    return momentum_ ? std::optional<double>(momentum_(e)) : std::nullopt;
  }

 private:
  Fn lr_, momentum_;
};

// PyTorch's ReduceLROnPlateau.
class ReduceOnPlateau : public LrScheduler {
 public:
  explicit ReduceOnPlateau(const config::JsonNode& p) {
    p.allow_keys({"mode", "factor", "patience", "threshold", "threshold_mode", "cooldown", "min_lr", "eps", "verbose"});
    const std::string mode = p.string("mode", "min");
    if (mode != "min" && mode != "max") p.at("mode").fail("expected \"min\" or \"max\"");
    maximize_ = mode == "max";
    factor_ = p.number("factor", 0.1);
    if (!(factor_ > 0 && factor_ < 1)) p.at("factor").fail("expected a factor in (0, 1)");
    patience_ = p.integer("patience", 10);
    if (patience_ < 0) p.at("patience").fail("expected a non-negative number of epochs");
    threshold_ = p.number("threshold", 1e-4);
    const std::string tm = p.string("threshold_mode", "rel");
    if (tm != "rel" && tm != "abs") p.at("threshold_mode").fail("expected \"rel\" or \"abs\"");
    relative_ = tm == "rel";
    cooldown_ = p.integer("cooldown", 0);
    if (cooldown_ < 0) p.at("cooldown").fail("expected a non-negative number of epochs");
    if (p.has("min_lr")) {
      const config::JsonNode m = p.at("min_lr");
      min_lr_ = m.is_array() ? (m.size() == 1 ? m.at(0).number() : -1.0) : m.number();
      if (!(min_lr_ >= 0)) m.fail("expected a non-negative rate (one, for QuantLab's one parameter group)");
    }
    eps_ = p.number("eps", 1e-8);
    if (!(eps_ >= 0)) p.at("eps").fail("expected a non-negative change of rate");
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

  std::optional<double> lr_at(int64_t, double) const override { return std::nullopt; }
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
      if (lr - next > eps_ && next > 0) return next;  // never a rate of 0 (a factor of 1e-300)
    }
    return lr;
  }

 private:
  bool better(double m) const {
    if (relative_) return maximize_ ? m > best_ * (1.0 + threshold_) : m < best_ * (1.0 - threshold_);
    return maximize_ ? m > best_ + threshold_ : m < best_ - threshold_;
  }
  bool maximize_ = false, relative_ = true;
  double factor_ = 0.1, threshold_ = 1e-4, min_lr_ = 0, eps_ = 1e-8, best_ = 0;
  int64_t patience_ = 10, cooldown_ = 0, bad_ = 0, cooling_ = 0;
};

using SchedulerFactory = std::function<std::unique_ptr<LrScheduler>(const config::JsonNode&, const ScheduleContext&)>;

// A registry entry: how to build the schedule, and whether it is stepped with an epoch statistic
// (then `step_metric` is required).
struct SchedulerEntry {
  SchedulerFactory build;
  bool reads_statistic = false;
};

// A multiplicative factor or gamma: positive and finite, so the rate stays positive.
double positive_factor(const config::JsonNode& n) {
  const double v = n.number();
  if (!(v > 0.0) || !std::isfinite(v))
    n.fail("expected a positive factor (the learning rate must stay positive), got " + n.json().dump());
  return v;
}

double positive_factor(const config::JsonNode& p, const char* key, double fallback) {
  return p.has(key) ? positive_factor(p.at(key)) : fallback;
}

double positive_rate(const config::JsonNode& p, const char* key) {
  const config::JsonNode n = p.at(key);
  const double v = n.is_array() && n.size() == 1 ? n.at(0).number() : n.number();
  if (!(v > 0.0) || !std::isfinite(v)) n.fail("expected a positive learning rate, got " + n.json().dump());
  return v;
}

void no_last_epoch(const config::JsonNode& p) {
  if (p.has("last_epoch") && p.at("last_epoch").integer() != -1)
    p.at("last_epoch").fail("only -1 (a new schedule) is supported; a resumed run restores its schedule itself");
}

std::unique_ptr<LrScheduler> hand(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"schedule", "last_epoch"});
  no_last_epoch(p);
  const config::JsonNode s = p.at("schedule");
  std::map<int64_t, double> table;
  for (const auto& key : s.keys()) {
    char* end = nullptr;
    const long e = std::strtol(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || e < 0) s.at(key).fail("keys must be epoch numbers");
    // The original compares str(epoch) with the key: "0700" or "+700" never applied there.
    if (std::to_string(e) != key)
      s.at(key).fail("write the epoch as the original reads it: \"" + std::to_string(e) +
                     "\" (the original compares "
                     "the key with str(epoch), and never applies \"" +
                     key + "\")");
    table[e] = positive_factor(s.at(key));
  }
  const double base = c.base_lr;
  return std::make_unique<Pure>([table, base](int64_t e) {
    double f = 1.0;
    for (const auto& kv : table)
      if (kv.first <= e) f = kv.second;
    return base * f;
  });
}

std::unique_ptr<LrScheduler> step(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"step_size", "gamma", "last_epoch", "verbose"});
  no_last_epoch(p);
  const int64_t size = p.at("step_size").integer();
  if (size < 1) p.at("step_size").fail("expected a positive integer");
  const double gamma = positive_factor(p, "gamma", 0.1), base = c.base_lr;
  return std::make_unique<Pure>([=](int64_t e) { return base * std::pow(gamma, static_cast<double>(e / size)); });
}

std::unique_ptr<LrScheduler> multi_step(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"milestones", "gamma", "last_epoch", "verbose"});
  no_last_epoch(p);
  auto milestones = p.at("milestones").integers();
  for (int64_t m : milestones)
    if (m < 1) p.at("milestones").fail("expected positive epoch numbers");
  std::sort(milestones.begin(), milestones.end());
  const double gamma = positive_factor(p, "gamma", 0.1), base = c.base_lr;
  return std::make_unique<Pure>([=](int64_t e) {
    const auto passed = std::upper_bound(milestones.begin(), milestones.end(), e) - milestones.begin();
    return base * std::pow(gamma, static_cast<double>(passed));  // a repeated milestone counts twice, as PyTorch's
  });
}

std::unique_ptr<LrScheduler> exponential(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"gamma", "last_epoch", "verbose"});
  no_last_epoch(p);
  const double gamma = positive_factor(p.at("gamma")), base = c.base_lr;
  return std::make_unique<Pure>([=](int64_t e) { return base * std::pow(gamma, static_cast<double>(e)); });
}

std::unique_ptr<LrScheduler> cosine(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"T_max", "eta_min", "last_epoch", "verbose"});
  no_last_epoch(p);
  const int64_t t_max = p.at("T_max").integer();
  if (t_max < 1) p.at("T_max").fail("expected a positive integer");
  const double eta_min = p.number("eta_min", 0.0), base = c.base_lr;
  if (!(eta_min >= 0.0)) p.at("eta_min").fail("expected a non-negative rate");
  // The closed form of PyTorch's recursive CosineAnnealingLR (equal up to rounding).
  return std::make_unique<Pure>([=](int64_t e) {
    return eta_min + (base - eta_min) * (1 + std::cos(M_PI * static_cast<double>(e) / static_cast<double>(t_max))) / 2;
  });
}

// The momentum a cycling schedule drives, when asked to (PyTorch's cycle_momentum).
struct MomentumCycle {
  bool on = true;
  double base = 0.8, max = 0.9;
};

MomentumCycle momentum_cycle(const config::JsonNode& p, double base, double max) {
  MomentumCycle m{p.boolean("cycle_momentum", true), p.number("base_momentum", base), p.number("max_momentum", max)};
  if (m.on && !(m.base >= 0 && m.base < 1 && m.max >= 0 && m.max < 1))
    p.fail("base_momentum and max_momentum must be in [0, 1)");
  return m;
}

std::unique_ptr<LrScheduler> cyclic(const config::JsonNode& p, const ScheduleContext&) {
  p.allow_keys({"base_lr", "max_lr", "step_size_up", "step_size_down", "mode", "gamma", "scale_mode", "cycle_momentum",
                "base_momentum", "max_momentum", "last_epoch", "verbose"});
  no_last_epoch(p);
  const double base_lr = positive_rate(p, "base_lr"), max_lr = positive_rate(p, "max_lr");
  const double up = static_cast<double>(p.integer("step_size_up", 2000));
  const double down = p.has("step_size_down") ? static_cast<double>(p.at("step_size_down").integer()) : up;
  if (up < 1 || down < 0) p.fail("step_size_up must be >= 1 and step_size_down >= 0");
  const std::string mode = p.string("mode", "triangular");
  if (mode != "triangular" && mode != "triangular2" && mode != "exp_range")
    p.at("mode").fail(
        "expected \"triangular\", \"triangular2\" or \"exp_range\" (a Python scale_fn cannot be given in JSON)");
  const double gamma = positive_factor(p, "gamma", 1.0);
  const std::string scale_mode = p.string("scale_mode", mode == "exp_range" ? "iterations" : "cycle");
  if (scale_mode != "cycle" && scale_mode != "iterations")
    p.at("scale_mode").fail("expected \"cycle\" or \"iterations\"");
  const MomentumCycle m = momentum_cycle(p, 0.8, 0.9);
  const double total = up + down, ratio = up / total;
  // PyTorch's get_lr at last_epoch = e: where in the cycle, and how far up.
  auto shape = [=](int64_t e, double* height) {
    const double cycle = std::floor(1.0 + static_cast<double>(e) / total);
    const double x = 1.0 + static_cast<double>(e) / total - cycle;
    *height = x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
    const double arg = scale_mode == "cycle" ? cycle : static_cast<double>(e);
    if (mode == "triangular") return 1.0;
    if (mode == "triangular2") return 1.0 / std::pow(2.0, arg - 1.0);
    return std::pow(gamma, arg);
  };
  Pure::Fn momentum;
  if (m.on)
    momentum = [=](int64_t e) {
      double h = 0;
      const double s = shape(e, &h);
      return m.max - (m.max - m.base) * h * s;
    };
  return std::make_unique<Pure>(
      [=](int64_t e) {
        double h = 0;
        const double s = shape(e, &h);
        return base_lr + (max_lr - base_lr) * h * s;
      },
      momentum);
}

std::unique_ptr<LrScheduler> one_cycle(const config::JsonNode& p, const ScheduleContext& c) {
  p.allow_keys({"max_lr", "total_steps", "epochs", "steps_per_epoch", "pct_start", "anneal_strategy", "cycle_momentum",
                "base_momentum", "max_momentum", "div_factor", "final_div_factor", "three_phase", "last_epoch",
                "verbose"});
  no_last_epoch(p);
  const double max_lr = positive_rate(p, "max_lr");
  int64_t total = 0;
  if (p.has("total_steps")) {
    total = p.at("total_steps").integer();
  } else {
    if (!p.has("epochs") || !p.has("steps_per_epoch"))
      p.fail("OneCycleLR needs total_steps, or epochs and steps_per_epoch (1: QuantLab steps once per epoch)");
    total = p.at("epochs").integer() * p.at("steps_per_epoch").integer();
  }
  if (total < c.max_epoch)
    p.fail("the schedule has " + std::to_string(total) + " steps, fewer than treat.max_epoch (" +
           std::to_string(c.max_epoch) +
           "): it is stepped once per epoch, and PyTorch stops a run that steps past its end");
  const double pct = p.number("pct_start", 0.3);
  if (!(pct > 0 && pct < 1)) p.at("pct_start").fail("expected a fraction in (0, 1)");
  const std::string anneal = p.string("anneal_strategy", "cos");
  if (anneal != "cos" && anneal != "linear") p.at("anneal_strategy").fail("expected \"cos\" or \"linear\"");
  const MomentumCycle m = momentum_cycle(p, 0.85, 0.95);
  const double div = positive_factor(p, "div_factor", 25.0), final_div = positive_factor(p, "final_div_factor", 1e4);
  const double initial = max_lr / div, min_lr = initial / final_div;
  struct Phase {
    double end_step, start_lr, end_lr, start_m, end_m;
  };
  const double t = static_cast<double>(total);
  std::vector<Phase> phases;
  if (p.boolean("three_phase", false)) {
    phases = {{pct * t - 1, initial, max_lr, m.max, m.base},
              {2 * pct * t - 2, max_lr, initial, m.base, m.max},
              {t - 1, initial, min_lr, m.max, m.max}};
  } else {
    phases = {{pct * t - 1, initial, max_lr, m.max, m.base}, {t - 1, max_lr, min_lr, m.base, m.max}};
  }
  // A phase of no steps (pct_start x total_steps = 1: the first ends at step 0): PyTorch divides
  // by zero there; here the rate would be NaN.
  for (size_t i = 0; i < phases.size(); ++i)
    if (phases[i].end_step == (i == 0 ? 0.0 : phases[i - 1].end_step))
      p.at("pct_start")
          .fail("pct_start x total_steps = " + std::to_string(pct * t) + " gives phase " + std::to_string(i + 1) +
                " of the schedule no steps (PyTorch divides by zero there); choose another pct_start");
  const bool cosine_anneal = anneal == "cos";
  auto annealed = [=](int64_t e, bool momentum) {
    const auto step_num = static_cast<double>(e);
    double start_step = 0;
    for (size_t i = 0; i < phases.size(); ++i) {
      const Phase& ph = phases[i];
      if (step_num <= ph.end_step || i + 1 == phases.size()) {
        const double f = (step_num - start_step) / (ph.end_step - start_step);
        const double a = momentum ? ph.start_m : ph.start_lr, b = momentum ? ph.end_m : ph.end_lr;
        return cosine_anneal ? b + (a - b) / 2.0 * (std::cos(M_PI * f) + 1) : (b - a) * f + a;
      }
      start_step = ph.end_step;
    }
    return 0.0;
  };
  Pure::Fn momentum;
  if (m.on) momentum = [=](int64_t e) { return annealed(e, true); };
  return std::make_unique<Pure>([=](int64_t e) { return annealed(e, false); }, momentum);
}

const Registry<SchedulerEntry>& scheduler_registry() {
  static const Registry<SchedulerEntry> r = [] {
    Registry<SchedulerEntry> reg("lr scheduler");
    reg.add("HandScheduler", {hand}).add("StepLR", {step}).add("MultiStepLR", {multi_step});
    reg.add("ExponentialLR", {exponential});
    reg.add("CosineAnnealingLR", {cosine}).add("CosineAnnealing", {cosine});
    reg.add("CyclicLR", {cyclic}).add("OneCycleLR", {one_cycle});
    reg.add(
        "ReduceLROnPlateau",
        {[](const config::JsonNode& p, const ScheduleContext&) { return std::make_unique<ReduceOnPlateau>(p); }, true});
    return reg;
  }();
  return r;
}

}  // namespace

std::string schedule_identity(const config::JsonNode& spec) {
  if (spec.is_null()) return "none";
  std::string id = spec.at("class").string();
  for (const char* key : {"step_metric", "update_stat"})
    if (spec.has(key)) {
      static const nlohmann::json kEmpty = nlohmann::json::object();
      const config::JsonNode params =
          spec.has("params") ? spec.at("params") : config::JsonNode(kEmpty, spec.path() + ".params");
      return id + " of " + spec.at(key).string() + ", mode " + params.string("mode", "min");
    }
  return id;
}

std::unique_ptr<LrScheduler> make_lr_scheduler(const config::JsonNode& spec, const ScheduleContext& context) {
  if (spec.is_null()) return std::make_unique<Constant>();
  spec.allow_keys({"class", "params", "step_metric", "update_stat"});
  const config::JsonNode cls = spec.at("class");
  static const nlohmann::json kEmpty = nlohmann::json::object();
  const config::JsonNode params =
      spec.has("params") ? spec.at("params") : config::JsonNode(kEmpty, spec.path() + ".params");
  const SchedulerEntry& entry = scheduler_registry().at(cls.string(), cls.path());
  auto sched = entry.build(params, context);
  // Every epoch of the run trains at a positive rate (a cosine reaching its floor of 0 inside the
  // run would train the epochs after it at rate 0, without a word): the schedules that are pure
  // functions of the epoch are evaluated over the whole run now.
  if (!entry.reads_statistic) {
    double lr = sched->initial_lr(context.base_lr);
    for (int64_t e = 0; e < std::max<int64_t>(context.max_epoch, 1); ++e) {
      if (e > 0) lr = sched->lr_for_epoch(e, lr, 0.0);
      if (!(lr > 0.0) || !std::isfinite(lr))
        params.fail("gives the learning rate " + std::to_string(lr) +
                    (e == 0 ? " to the first epoch" : " after epoch " + std::to_string(e)) + ", so epoch " +
                    std::to_string(e + 1) + " of treat.max_epoch " + std::to_string(context.max_epoch) +
                    " would train at it; every epoch needs a positive rate (e.g. a CosineAnnealingLR T_max of at "
                    "least max_epoch, or eta_min > 0)");
      if (const auto m = sched->momentum_at(e); m && !(*m >= 0 && *m < 1))
        params.fail("gives epoch " + std::to_string(e + 1) + " the momentum " + std::to_string(*m) +
                    "; a momentum must be in [0, 1)");
    }
  }
  if (entry.reads_statistic) {
    const char* key = spec.has("step_metric") ? "step_metric" : "update_stat";  // the 2019 name
    if (!spec.has(key)) spec.fail(cls.string() + " needs \"step_metric\" (e.g. \"valid_metric\")");
    sched->set_step_metric(parse_statistic(spec.at(key)));
  }
  return sched;
}

}  // namespace quantlab::train
