// Command-line overrides of a config (`--set treat.optimizer.params.lr=0.003`), as Hydra's:
// a dotted path into the config (array elements by index: `...bindings.0.forward.class`; a `*` step
// stands for every key of an object or element of a list: `indiv.net.params.quant_schemes.*.noise`) and a
// value parsed as JSON, or taken as a string when it is not JSON. The path must exist, and the value
// must have the type it replaces (a null takes anything); `+path=value` adds a key that is not
// there yet (its parent must exist). The config parser then checks the result as it checks any
// file, so an added key of the wrong name is refused there, with its path.
// The effective config records its overrides under "overrides" (a list of the arguments, in order).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace quantlab::config {

struct Override {
  std::string text;  // as given: "treat.optimizer.params.lr=0.003"
  std::vector<std::string> path;
  nlohmann::json value;
  bool add = false;  // "+path=value"
};

// Parses one `--set` argument; throws ConfigError naming it when it is not PATH=VALUE.
Override parse_override(const std::string& arg);

// Applies `overrides` to `config` in order and appends their texts to config["overrides"]; throws
// ConfigError naming the argument and the path when a path is missing or a type differs.
void apply_overrides(nlohmann::json& config, const std::vector<Override>& overrides);

// The same, from the command line's strings.
void apply_overrides(nlohmann::json& config, const std::vector<std::string>& args);

// The dotted text of a path ("treat.optimizer.params.lr").
std::string dotted(const std::vector<std::string>& path);

}  // namespace quantlab::config
