// indiv.net, parsed.
#include "quantlab/topology/network_spec.h"

namespace quantlab::topology {

namespace {

PretrainedSpec parse_pretrained(const config::JsonNode& p) {
  p.allow_keys({"file", "exp_id", "epoch", "parameters", "prefixes"});
  PretrainedSpec spec;
  auto read_epoch = [&](const config::JsonNode& owner) {
    if (!owner.has("epoch")) return;
    const config::JsonNode e = owner.at("epoch");
    spec.checkpoint = config::CheckpointRef::parse(e.is_number() ? std::to_string(e.integer()) : e.string(), e.path());
  };
  if (p.has("file") == p.has("exp_id"))
    p.fail("expected either \"file\" (a file name, or {\"exp_id\": N, \"epoch\": E}) or \"exp_id\"");
  if (p.has("file") && p.at("file").is_object()) {
    const config::JsonNode f = p.at("file");
    f.allow_keys({"exp_id", "epoch"});
    spec.exp_id = f.at("exp_id").integer();
    read_epoch(f);
  } else if (p.has("file")) {
    spec.file = p.at("file").string();
    if (spec.file.empty()) p.at("file").fail("expected a file name");
  } else {
    spec.exp_id = p.at("exp_id").integer();
    read_epoch(p);
  }
  if (spec.file.empty() && spec.exp_id < 0) p.fail("expected a non-negative \"exp_id\"");
  if (p.has("parameters") && p.has("prefixes")) p.fail("give \"parameters\" or \"prefixes\", not both");
  if (p.has("parameters")) spec.prefixes = p.at("parameters").strings();
  if (p.has("prefixes")) spec.prefixes = p.at("prefixes").strings();
  return spec;
}

}  // namespace

NetworkSpec parse_network_spec(const config::JsonNode& net, const std::string& topology) {
  net.allow_keys({"class", "params", "pretrained",
                  "loss_function"});  // (the original's baseline template puts loss_function here)
  const config::JsonNode cls = net.at("class");
  NetworkSpec spec;
  spec.cls = cls.string();
  const TopologyEntry& entry = topology_registry().at(spec.cls, cls.path());
  spec.family = entry.family;
  if (!topology.empty() && entry.family != topology)
    cls.fail("class '" + spec.cls + "' belongs to topology '" + entry.family + "', not to --topology=" + topology);
  spec.params = net.has("params") ? net.at("params").json() : nlohmann::json::object();
  if (net.has("pretrained")) spec.pretrained = parse_pretrained(net.at("pretrained"));
  return spec;
}

std::shared_ptr<Network> build_network(const NetworkSpec& spec) {
  return topology_registry().at(spec.cls, "indiv.net.class").build(config::JsonNode(spec.params, "indiv.net.params"));
}

}  // namespace quantlab::topology
