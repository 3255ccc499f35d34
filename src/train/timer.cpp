// The timer registry.
#include "quantlab/train/timer.h"

#include <algorithm>
#include <cmath>

namespace quantlab::train {
namespace {

using TimerFactory = std::function<Timer(const config::JsonNode&)>;

double positive(const config::JsonNode& params, const char* key) {
  const config::JsonNode n = params.at(key);
  const double v = n.number();
  if (!(v > 0)) n.fail("expected a positive number, got " + n.json().dump());
  return v;
}

double linear_factor(double t, double t_start, double t_decay) {
  return 1.0 - std::clamp((t - t_start) / t_decay, 0.0, 1.0);
}

Timer constant(const config::JsonNode& p) {
  p.allow_keys({});
  return [](double) { return 1.0; };
}

Timer linear(const config::JsonNode& p) {
  p.allow_keys({"t_start", "t_decay"});
  const double t0 = p.at("t_start").number(), td = positive(p, "t_decay");
  return [=](double t) { return linear_factor(t, t0, td); };
}

Timer quadratic(const config::JsonNode& p) {
  p.allow_keys({"t_start", "t_decay"});
  const double t0 = p.at("t_start").number(), td = positive(p, "t_decay");
  return [=](double t) {
    const double f = linear_factor(t, t0, td);
    return f * f;
  };
}

// A window's exponent: a negative one would make the factor grow instead of decay (to infinity
// at t_end).
double window_alpha(const config::JsonNode& p) {
  const double alpha = p.number("alpha", 1.0);
  if (!(alpha >= 0)) p.at("alpha").fail("expected a number >= 0 (the factor decays as a power of the time left)");
  return alpha;
}

Timer bounded_window(const config::JsonNode& p) {
  p.allow_keys({"t_start", "t_end", "alpha"});
  const double t0 = p.at("t_start").number(), t1 = p.at("t_end").number();
  const double alpha = window_alpha(p);
  if (!(t1 > t0)) p.at("t_end").fail("expected t_end > t_start");
  return [=](double t) { return std::pow((t1 - std::clamp(t, t0, t1)) / (t1 - t0), alpha); };
}

Timer unbounded_window(const config::JsonNode& p) {
  p.allow_keys({"t_start", "eps", "alpha"});
  const double t0 = p.at("t_start").number();
  const double eps = p.number("eps", 0.0), alpha = window_alpha(p);
  return [=](double t) {
    const double f = std::pow(1.0 / (std::max(t - t0, 0.0) + 1.0), alpha);
    return f < eps ? 0.0 : f;
  };
}

const Registry<TimerFactory>& timer_registry() {
  static const Registry<TimerFactory> r = [] {
    Registry<TimerFactory> reg("timer");
    reg.add("Constant", constant).add("Linear", linear).add("Quadratic", quadratic);
    reg.add("BoundedWindow", bounded_window).add("bws", bounded_window);
    reg.add("UnboundedWindow", unbounded_window).add("uws", unbounded_window);
    return reg;
  }();
  return r;
}

}  // namespace

Timer make_timer(const config::JsonNode& spec) {
  spec.allow_keys({"class", "params"});
  const config::JsonNode cls = spec.at("class");
  const auto& factory = timer_registry().at(cls.string(), cls.path());
  static const nlohmann::json kEmpty = nlohmann::json::object();
  return factory(spec.has("params") ? spec.at("params") : config::JsonNode(kEmpty, spec.path() + ".params"));
}

}  // namespace quantlab::train
