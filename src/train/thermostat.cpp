// Thermostat: groups, coverage checks and the annealing step.
#include "quantlab/train/thermostat.h"

#include <map>
#include <set>

#include "quantlab/util/strings.h"

namespace quantlab {
Thermostat::Thermostat(torch::nn::Module& net, const JsonNode& thermostat) {
  thermostat.allow_keys({"class", "params"});
  const JsonNode params = thermostat.at("params");
  params.allow_keys({"noise_schemes", "bindings"});

  std::map<std::string, nn::AnaSite*> modules;  // every ANA module of the network
  std::vector<std::string> order;
  for (const auto& item : net.named_modules("", false)) {
    if (auto* site = dynamic_cast<nn::AnaSite*>(item.value().get())) {
      modules[item.key()] = site;
      order.push_back(item.key());
    }
  }

  const JsonNode schemes = params.at("noise_schemes");
  std::map<std::string, Site> by_name;
  for (const auto& name : schemes.keys()) {
    const JsonNode s = schemes.at(name);
    if (!modules.count(name))
      s.fail("no ANA module of this network is called '" + name + "'; they are: " + join(order));
    Site site{name, modules[name]};
    s.allow_keys({"stddev_start", "mu_start", "sigma_start"});
    if (s.has("stddev_start")) {
      if (s.has("mu_start") || s.has("sigma_start"))
        s.fail("give either stddev_start (2019) or mu_start/sigma_start (successor), not both");
      const JsonNode sd = s.at("stddev_start");
      if (sd.is_number()) {
        site.start_a = site.start_b = static_cast<float>(sd.number());
      } else {
        if (!sd.is_array() || sd.size() != 2) sd.fail("expected [sigma_forward, sigma_backward]");
        site.start_a = static_cast<float>(sd.at(0).number());
        site.start_b = static_cast<float>(sd.at(1).number());
      }
    } else {
      site.successor = true;
      site.start_a = static_cast<float>(s.number("mu_start", 0.0));
      site.start_b = static_cast<float>(s.at("sigma_start").number());
    }
    if (site.start_a < 0 && !site.successor) s.at("stddev_start").fail("spreads must be >= 0");
    if (site.start_b < 0) s.fail("spreads must be >= 0");
    by_name.emplace(name, site);
  }

  const JsonNode bindings = params.at("bindings");
  if (!bindings.is_array()) bindings.fail("expected an array of groups");
  std::map<std::string, std::string> owner;  // module -> path of the binding that took it
  for (size_t g = 0; g < bindings.size(); ++g) {
    const JsonNode b = bindings.at(g);
    b.allow_keys({"maps", "modules", "forward", "backward", "mu", "sigma"});
    const bool successor = b.has("sigma");
    Group group;
    static const nlohmann::json kConstant = {{"class", "Constant"}, {"params", nlohmann::json::object()}};
    if (successor) {
      if (b.has("forward") || b.has("backward")) b.fail("give forward/backward or mu/sigma, not both");
      group.a = b.has("mu") ? make_timer(b.at("mu")) : make_timer(JsonNode(kConstant, b.path() + ".mu"));
      group.b = make_timer(b.at("sigma"));
    } else {
      group.a = make_timer(b.at("forward"));
      group.b = make_timer(b.at("backward"));
    }
    std::vector<std::string> members;
    if (b.has("maps") == b.has("modules")) b.fail("expected either 'maps' (prefixes) or 'modules' (names)");
    if (b.has("maps")) {
      for (const auto& prefix : b.at("maps").strings()) {
        bool any = false;
        for (const auto& name : order)
          if (name.rfind(prefix, 0) == 0) members.push_back(name), any = true;
        if (!any) b.at("maps").fail("prefix '" + prefix + "' matches no ANA module; they are: " + join(order));
      }
    } else {
      for (const auto& name : b.at("modules").strings()) {
        if (!modules.count(name))
          b.at("modules").fail("no ANA module is called '" + name + "'; they are: " + join(order));
        members.push_back(name);
      }
    }
    for (const auto& name : members) {
      if (owner.count(name))
        b.fail("module '" + name + "' is already in the group at " + owner[name] +
               "; each ANA module must be in exactly one group");
      owner[name] = b.path();
      auto it = by_name.find(name);
      if (it == by_name.end())
        b.fail("module '" + name + "' has no entry in treat.thermostat.params.noise_schemes");
      if (it->second.successor != successor)
        b.fail("module '" + name + "': a 2019 noise scheme (stddev_start) needs forward/backward " +
               "timers, a successor one (mu_start/sigma_start) needs mu/sigma timers");
      it->second.group = groups_.size();
    }
    groups_.push_back(std::move(group));
  }
  std::vector<std::string> missing;
  for (const auto& name : order)
    if (!owner.count(name)) missing.push_back(name);
  if (!missing.empty())
    bindings.fail("these ANA modules are in no group: " + join(missing) +
                  " (each must be in exactly one)");
  for (const auto& name : order) sites_.push_back(by_name.at(name));
  set_clock(0);
}

void Thermostat::set_clock(int64_t t) {
  clock_ = t;
  for (const Site& s : sites_) {
    const Group& g = groups_[s.group];
    const auto fa = static_cast<float>(g.a(static_cast<double>(t)));
    const auto fb = static_cast<float>(g.b(static_cast<double>(t)));
    NoiseState n;
    if (s.successor) {
      n.mu = s.start_a * fa;
      n.sigma_forward = n.sigma_backward = s.start_b * fb;
    } else {
      n.sigma_forward = s.start_a * fa;
      n.sigma_backward = s.start_b * fb;
    }
    s.module->set_noise(n);
  }
}

std::vector<std::pair<std::string, NoiseState>> Thermostat::noise() const {
  std::vector<std::pair<std::string, NoiseState>> out;
  for (const Site& s : sites_) out.emplace_back(s.name, s.module->noise());
  return out;
}

}  // namespace quantlab
