// The thermostat: anneals the noise of every ANA module of a network (docs/ANA.md §4).
// Config `treat.thermostat.params`:
//   noise_schemes: module -> {"stddev_start": [sigma_f, sigma_b]} (2019; a single number sets both)
//                         or {"mu_start": mu, "sigma_start": sigma}   (successor: shared by both passes)
//   bindings: [{"maps": [prefixes] | "modules": [names],
//               "forward": timer, "backward": timer}        (2019)
//              or "mu": timer, "sigma": timer}              (successor; "mu" defaults to Constant)]
// Every ANA module must be in exactly one group and have a noise scheme; errors name the strays.
// The only state is the clock: step() advances it and sets every module's noise from the timers.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/nn/ana_site.h"
#include "quantlab/train/timer.h"

namespace quantlab {

class Thermostat {
 public:
  Thermostat(torch::nn::Module& net, const JsonNode& thermostat);

  // Advances the clock by one (called before each training epoch, as the original) and applies.
  void step() { set_clock(clock_ + 1); }
  void set_clock(int64_t t);
  int64_t clock() const { return clock_; }

  // (module name, its noise now), for logs.
  std::vector<std::pair<std::string, NoiseState>> noise() const;

 private:
  struct Site {
    std::string name;
    nn::AnaSite* module;
    float start_a = 0, start_b = 0;  // 2019: sigma_f, sigma_b; successor: mu, sigma
    bool successor = false;
    size_t group = 0;
  };
  struct Group {
    Timer a, b;  // forward/backward, or mu/sigma
  };
  std::vector<Site> sites_;
  std::vector<Group> groups_;
  int64_t clock_ = 0;
};

}  // namespace quantlab
