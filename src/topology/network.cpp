// The topology registry (filled by each topology's own file).
#include "quantlab/topology/network.h"

namespace quantlab::topology {

namespace {

Registry<TopologyEntry>& registry() {
  static Registry<TopologyEntry> r("network class");
  return r;
}

}  // namespace

const Registry<TopologyEntry>& topology_registry() { return registry(); }

TopologyRegistration::TopologyRegistration(const char* cls, const char* family, NetworkFactory build) {
  registry().add(cls, {family, std::move(build)});
}

}  // namespace quantlab::topology
