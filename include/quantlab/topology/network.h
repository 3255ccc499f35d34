// The network interface every topology implements, and the topology registry.
// To add a topology: a Network subclass in its own file and one `add()` line in network.cpp.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>

#include "quantlab/config/json_node.h"
#include "quantlab/util/registry.h"

namespace quantlab {

class Network : public torch::nn::Module {
 public:
  // x: a batch of inputs [N, ...] -> scores [N, num_classes].
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
};

// The layout convolutional topologies compute in: channels-last on the CPU, where oneDNN's
// convolutions run 7-20 % faster in it (docs/PERFORMANCE.md); the ANA operator, batch norm and
// pooling keep it. Other devices: as given.
torch::Tensor conv_layout(const torch::Tensor& x);

// Builds a network from `indiv.net.params`, validating them (errors name the JSON path).
using NetworkFactory = std::function<std::shared_ptr<Network>(const JsonNode& params)>;

struct TopologyEntry {
  std::string family;  // the --topology name (MLP for MLP and MLPBaseline)
  NetworkFactory build;
};

const Registry<TopologyEntry>& topology_registry();

// Builds `indiv.net` ({class, params}); checks the class belongs to `topology` when not empty.
std::shared_ptr<Network> build_network(const JsonNode& net, const std::string& topology);

}  // namespace quantlab
