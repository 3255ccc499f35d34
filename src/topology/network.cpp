// The topology registry.
#include "quantlab/topology/network.h"

#include "quantlab/topology/alexnet.h"
#include "quantlab/topology/mlp.h"
#include "quantlab/topology/mobilenetv2.h"
#include "quantlab/topology/vgg.h"

namespace quantlab {

const Registry<TopologyEntry>& topology_registry() {
  static const Registry<TopologyEntry> registry = [] {
    Registry<TopologyEntry> r("network class");
    r.add("MLP", {"MLP", make_mlp});
    r.add("MLPBaseline", {"MLP", make_mlp_baseline});
    r.add("VGG", {"VGG", make_vgg});
    r.add("VGGBaseline", {"VGG", make_vgg_baseline});
    r.add("AlexNet", {"AlexNet", make_alexnet});
    r.add("AlexNetBaseline", {"AlexNet", make_alexnet_baseline});
    r.add("MobileNetv2Residuals", {"MobileNetv2", make_mobilenetv2_residuals});
    r.add("MobileNetv2Baseline", {"MobileNetv2", make_mobilenetv2_baseline});
    return r;
  }();
  return registry;
}

torch::Tensor conv_layout(const torch::Tensor& x) {
  return x.dim() == 4 && x.device().is_cpu() ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

std::shared_ptr<Network> build_network(const JsonNode& net, const std::string& topology) {
  net.allow_keys({"class", "params", "pretrained"});
  const JsonNode cls = net.at("class");
  const TopologyEntry& entry = topology_registry().at(cls.string(), cls.path());
  if (!topology.empty() && entry.family != topology)
    cls.fail("class '" + cls.string() + "' belongs to topology '" + entry.family +
             "', not to --topology=" + topology);
  if (net.has("pretrained")) {  // applied once the experiment exists (experiment/session.h)
    const JsonNode p = net.at("pretrained");
    p.allow_keys({"exp_id", "epoch", "file", "prefixes"});
    if (p.has("exp_id") == p.has("file")) p.fail("expected either \"exp_id\" (with \"epoch\") or \"file\"");
  }
  return entry.build(net.at("params"));
}

}  // namespace quantlab
