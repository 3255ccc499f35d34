// The annealing plan the thermostat follows, in one form whatever the config's: each ANA module's
// starting noise, and for each group of modules the timers (train/timer.h) that scale its three
// noise parameters. At clock t a module of group g has
//   mu = mu0 * g.mu(t),  sigma_forward = sf0 * g.sigma_forward(t),  sigma_backward = sb0 * g.sigma_backward(t).
// The config's two forms (treat.thermostat.params) each have their own parser:
//   2019:      noise_schemes: {module: {"stddev_start": [sf0, sb0]}}  (one number: both)
//              bindings: [{"maps": [prefixes] | "modules": [names], "forward": timer, "backward": timer}]
//              mu stays 0.
//   successor: noise_schemes: {module: {"mu_start": mu0 (0), "sigma_start": s0}}
//              bindings: [{"maps" | "modules", "mu": timer (Constant), "sigma": timer}]
//              one sigma for both passes: sf0 = sb0 = s0, both scaled by "sigma".
// Every ANA module must be in exactly one group and have a noise scheme; errors name the strays.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/core/ana.h"
#include "quantlab/train/timer.h"

namespace quantlab::train {

struct AnnealingGroup {
  std::vector<std::string> modules;
  Timer mu, sigma_forward, sigma_backward;
};

struct NoiseSchedule {
  std::map<std::string, core::NoiseState> start;  // per module, in quantizer units
  std::vector<AnnealingGroup> groups;
  std::map<std::string, size_t> group_of;  // module -> index into groups

  // The noise of `module` at clock `t`.
  core::NoiseState at(const std::string& module, double t) const;
};

// `modules`: the network's ANA modules, in forward order.
NoiseSchedule parse_noise_schedule_2019(const config::JsonNode& params, const std::vector<std::string>& modules);
NoiseSchedule parse_noise_schedule_successor(const config::JsonNode& params, const std::vector<std::string>& modules);

// treat.thermostat ({class, params}): the parser of the form its noise_schemes are written in.
NoiseSchedule parse_noise_schedule(const config::JsonNode& thermostat, const std::vector<std::string>& modules);

}  // namespace quantlab::train
