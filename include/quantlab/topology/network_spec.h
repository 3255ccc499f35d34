// indiv.net, parsed: the network class, its params and what it starts from.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "quantlab/config/checkpoint_ref.h"
#include "quantlab/config/json_node.h"
#include "quantlab/topology/network.h"

namespace quantlab::topology {

// indiv.net.pretrained: tensors copied into a new experiment's network before it trains
// (experiment/transfer.h). The original's form {"file": NAME | {"exp_id": N, "epoch": E},
// "parameters": [prefixes]} and QuantLab's {"exp_id": N, "epoch": E, "prefixes": [...]} or
// {"file": PATH, ...}.
struct PretrainedSpec {
  std::string file;     // a name under <Problem>/<Topology>/pretrained/, or a path with '/'
  int64_t exp_id = -1;  // else: a checkpoint of another experiment of the problem
  config::CheckpointRef checkpoint = config::CheckpointRef::best();
  std::vector<std::string> prefixes;  // of the tensor names to copy; empty: all
};

// indiv.net, parsed.
struct NetworkSpec {
  std::string cls;        // indiv.net.class
  std::string family;     // its --topology (MLP for MLP and MLPBaseline)
  nlohmann::json params;  // indiv.net.params, read by the class's factory
  std::optional<PretrainedSpec> pretrained;
};

// Parses and validates `indiv.net` ({class, params, pretrained}); checks the class belongs to
// `topology` when that is not empty.
NetworkSpec parse_network_spec(const config::JsonNode& net, const std::string& topology);

// Builds the network of `spec` (its params are validated here; errors name indiv.net.params...).
std::shared_ptr<Network> build_network(const NetworkSpec& spec);

}  // namespace quantlab::topology
