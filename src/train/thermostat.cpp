// Thermostat: the clock and the modules it anneals.
#include "quantlab/train/thermostat.h"

namespace quantlab::train {

Thermostat::Thermostat(torch::nn::Module& net, const config::JsonNode& thermostat) {
  std::vector<std::string> names;
  for (const auto& item : net.named_modules("", false)) {
    if (auto* site = dynamic_cast<nn::AnaSite*>(item.value().get())) {
      sites_.emplace_back(item.key(), site);
      names.push_back(item.key());
    }
  }
  schedule_ = parse_noise_schedule(thermostat, names);
  set_clock(0);
}

void Thermostat::set_clock(int64_t t) {
  clock_ = t;
  for (const auto& [name, site] : sites_) site->set_noise(schedule_.at(name, static_cast<double>(t)));
}

std::vector<std::pair<std::string, core::NoiseState>> Thermostat::noise() const {
  std::vector<std::pair<std::string, core::NoiseState>> out;
  for (const auto& [name, site] : sites_) out.emplace_back(name, site->noise());
  return out;
}

}  // namespace quantlab::train
