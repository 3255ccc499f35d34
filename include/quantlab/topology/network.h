// The network interface every topology implements, and the topology registry.
// To add a topology: one file whose factory describes the network as steps (topology/steps.h) and
// builds a StepNetwork of them, registered there with one line:
//   QL_REGISTER_TOPOLOGY(MyNet, "MyNet", make_my_net);   // class name, --topology family, factory
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "quantlab/config/json_node.h"
#include "quantlab/topology/steps.h"
#include "quantlab/util/registry.h"

namespace quantlab::topology {

class Network : public torch::nn::Module {
 public:
  // x: a batch of inputs [N, ...] -> scores [N, num_classes].
  virtual torch::Tensor forward(const torch::Tensor& x) = 0;
  // The steps forward() computes (topology/steps.h), for export; null for a network that does not
  // describe itself as steps (it cannot be exported).
  virtual const Steps* steps() const { return nullptr; }

  // Mixed precision (--amp): every convolution and matrix product takes bfloat16 operands and
  // gives a float32 result, so batch norm, the ANA operator and the loss stay float32. The layers
  // read it on every call (topology/layer_maker.h).
  void set_mixed_precision(bool on) { mixed_precision_ = on; }
  bool mixed_precision() const { return mixed_precision_; }

 private:
  bool mixed_precision_ = false;
};

// Builds a network from `indiv.net.params`, validating them (errors name the JSON path).
using NetworkFactory = std::function<std::shared_ptr<Network>(const config::JsonNode& params)>;

struct TopologyEntry {
  std::string family;  // the --topology name (MLP for MLP and MLPBaseline)
  NetworkFactory build;
};

const Registry<TopologyEntry>& topology_registry();

// Adds a class to the registry at program start (through QL_REGISTER_TOPOLOGY).
struct TopologyRegistration {
  TopologyRegistration(const char* cls, const char* family, NetworkFactory build);
};
#define QL_REGISTER_TOPOLOGY(cls, family, factory) \
  static const ::quantlab::topology::TopologyRegistration ql_register_topology_##cls(#cls, family, factory)

}  // namespace quantlab::topology
