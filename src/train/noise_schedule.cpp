// The thermostat's two config forms, parsed into one NoiseSchedule.
#include "quantlab/train/noise_schedule.h"

#include <limits>
#include <set>

#include "quantlab/util/strings.h"

namespace quantlab::train {
namespace {

const nlohmann::json kConstantTimer = {{"class", "Constant"}, {"params", nlohmann::json::object()}};

float spread(const config::JsonNode& n) {
  const double v = n.number();
  if (!(v >= 0.0)) n.fail("spreads must be >= 0, got " + n.json().dump());
  if (v > std::numeric_limits<float>::max()) n.fail("a spread beyond the range of a float (3.4e38)");
  return static_cast<float>(v);
}

// The members a binding names (prefixes or explicit names), checked against the network.
std::vector<std::string> members_of(const config::JsonNode& b, const std::vector<std::string>& modules) {
  if (b.has("maps") == b.has("modules")) b.fail("expected either 'maps' (prefixes) or 'modules' (names)");
  std::vector<std::string> members;
  if (b.has("maps")) {
    for (const auto& prefix : b.at("maps").strings()) {
      bool any = false;
      for (const auto& name : modules)
        if (name.rfind(prefix, 0) == 0) members.push_back(name), any = true;
      if (!any) b.at("maps").fail("prefix '" + prefix + "' matches no ANA module; they are: " + join(modules));
    }
  } else {
    const std::set<std::string> known(modules.begin(), modules.end());
    for (const auto& name : b.at("modules").strings()) {
      if (!known.count(name))
        b.at("modules").fail("no ANA module is called '" + name + "'; they are: " + join(modules));
      members.push_back(name);
    }
  }
  return members;
}

// The groups' memberships: each module in exactly one group, and with a noise scheme.
void assign_groups(NoiseSchedule& s, const config::JsonNode& bindings, const std::vector<std::string>& modules) {
  std::map<std::string, std::string> owner;  // module -> path of the binding that took it
  for (size_t g = 0; g < s.groups.size(); ++g) {
    const config::JsonNode b = bindings.at(g);
    s.groups[g].modules = members_of(b, modules);
    for (const auto& name : s.groups[g].modules) {
      if (owner.count(name))
        b.fail("module '" + name + "' is already in the group at " + owner[name] +
               "; each ANA module must be in exactly one group");
      owner[name] = b.path();
      if (!s.start.count(name)) b.fail("module '" + name + "' has no entry in treat.thermostat.params.noise_schemes");
      s.group_of[name] = g;
    }
  }
  std::vector<std::string> missing;
  for (const auto& name : modules)
    if (!owner.count(name)) missing.push_back(name);
  if (!missing.empty())
    bindings.fail("these ANA modules are in no group: " + join(missing) + " (each must be in exactly one)");
}

// The noise_schemes entries, each checked to name a module; `read` parses one entry.
template <typename Read>
void read_schemes(NoiseSchedule& s, const config::JsonNode& schemes, const std::vector<std::string>& modules,
                  Read read) {
  const std::set<std::string> known(modules.begin(), modules.end());
  for (const auto& name : schemes.keys()) {
    const config::JsonNode entry = schemes.at(name);
    if (!known.count(name))
      entry.fail("no ANA module of this network is called '" + name + "'; they are: " + join(modules));
    s.start[name] = read(entry);
  }
}

config::JsonNode bindings_of(const config::JsonNode& params) {
  const config::JsonNode b = params.at("bindings");
  if (!b.is_array()) b.fail("expected an array of groups");
  return b;
}

}  // namespace

core::NoiseState NoiseSchedule::at(const std::string& module, double t) const {
  const core::NoiseState& s0 = start.at(module);
  const AnnealingGroup& g = groups[group_of.at(module)];
  return {s0.mu * static_cast<float>(g.mu(t)), s0.sigma_forward * static_cast<float>(g.sigma_forward(t)),
          s0.sigma_backward * static_cast<float>(g.sigma_backward(t))};
}

NoiseSchedule parse_noise_schedule_2019(const config::JsonNode& params, const std::vector<std::string>& modules) {
  NoiseSchedule s;
  read_schemes(s, params.at("noise_schemes"), modules, [](const config::JsonNode& e) {
    e.allow_keys({"stddev_start"});
    const config::JsonNode sd = e.at("stddev_start");
    if (sd.is_number()) return core::NoiseState{0.0f, spread(sd), spread(sd)};
    if (!sd.is_array() || sd.size() != 2) sd.fail("expected [sigma_forward, sigma_backward]");
    return core::NoiseState{0.0f, spread(sd.at(0)), spread(sd.at(1))};
  });
  const config::JsonNode bindings = bindings_of(params);
  for (size_t g = 0; g < bindings.size(); ++g) {
    const config::JsonNode b = bindings.at(g);
    b.allow_keys({"maps", "modules", "forward", "backward"});
    s.groups.push_back({{},
                        make_timer(config::JsonNode(kConstantTimer, b.path() + ".mu")),
                        make_timer(b.at("forward")),
                        make_timer(b.at("backward"))});
  }
  assign_groups(s, bindings, modules);
  return s;
}

NoiseSchedule parse_noise_schedule_successor(const config::JsonNode& params, const std::vector<std::string>& modules) {
  NoiseSchedule s;
  read_schemes(s, params.at("noise_schemes"), modules, [](const config::JsonNode& e) {
    e.allow_keys({"mu_start", "sigma_start"});
    const float sigma = spread(e.at("sigma_start"));
    return core::NoiseState{static_cast<float>(e.number("mu_start", 0.0)), sigma, sigma};
  });
  const config::JsonNode bindings = bindings_of(params);
  for (size_t g = 0; g < bindings.size(); ++g) {
    const config::JsonNode b = bindings.at(g);
    b.allow_keys({"maps", "modules", "mu", "sigma"});
    const Timer sigma = make_timer(b.at("sigma"));
    s.groups.push_back(
        {{},
         b.has("mu") ? make_timer(b.at("mu")) : make_timer(config::JsonNode(kConstantTimer, b.path() + ".mu")),
         sigma,
         sigma});
  }
  assign_groups(s, bindings, modules);
  return s;
}

NoiseSchedule parse_noise_schedule(const config::JsonNode& thermostat, const std::vector<std::string>& modules) {
  thermostat.allow_keys({"class", "params"});
  if (thermostat.has("class")) (void)thermostat.at("class").string();  // a name, not read: one thermostat
  const config::JsonNode params = thermostat.at("params");
  params.allow_keys({"noise_schemes", "bindings"});
  const config::JsonNode schemes = params.at("noise_schemes");
  // The form is the one of the first noise scheme (2019 when there is none); the parser of that
  // form then refuses entries of the other form, naming them.
  bool successor = false;
  for (const auto& name : schemes.keys()) {
    const config::JsonNode e = schemes.at(name);
    successor = e.is_object() && !e.has("stddev_start") && (e.has("sigma_start") || e.has("mu_start"));
    break;
  }
  return successor ? parse_noise_schedule_successor(params, modules) : parse_noise_schedule_2019(params, modules);
}

}  // namespace quantlab::train
