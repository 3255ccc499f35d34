// The thermostat: anneals the noise of every ANA module of a network (docs/ANA.md §4), following
// the NoiseSchedule parsed from `treat.thermostat` (train/noise_schedule.h: the 2019 and the
// successor forms). Its only state is the clock: step() advances it and sets every module's noise.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/nn/ana_site.h"
#include "quantlab/train/noise_schedule.h"

namespace quantlab::train {

class Thermostat {
 public:
  Thermostat(torch::nn::Module& net, const config::JsonNode& thermostat);

  // Advances the clock by one (called before each training epoch, as the original) and applies.
  void step() { set_clock(clock_ + 1); }
  void set_clock(int64_t t);
  int64_t clock() const { return clock_; }

  // (module name, its noise now), for logs.
  std::vector<std::pair<std::string, core::NoiseState>> noise() const;

 private:
  std::vector<std::pair<std::string, nn::AnaSite*>> sites_;  // in forward order
  NoiseSchedule schedule_;
  int64_t clock_ = 0;
};

}  // namespace quantlab::train
