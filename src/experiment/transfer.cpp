// Transfer of pretrained tensors.
#include "quantlab/experiment/transfer.h"

#include <filesystem>
#include <fstream>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/saves.h"
#include "quantlab/experiment/torch_file.h"
#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"

namespace quantlab::experiment {
namespace {

using c10::IValue;

void collect_tensors(const c10::impl::GenericDict& d, std::map<std::string, torch::Tensor>& out) {
  for (const auto& kv : d)
    if (kv.key().isString() && kv.value().isTensor()) out[kv.key().toStringRef()] = kv.value().toTensor();
}

}  // namespace

std::map<std::string, torch::Tensor> read_network_tensors(const std::string& file) {
  if (!std::filesystem::exists(file)) throw IoError(file + ": missing or unreadable");
  require_regular_file(file, "checkpoint or state dict");  // never a device or a FIFO read whole
  IValue v;
  try {
    std::ifstream in(file, std::ios::binary);
    v = torch::pickle_load(std::vector<char>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
  } catch (const std::exception&) {
    v = read_torch_file(file);  // written by Python
  }
  check_nesting(v, file);
  if (!v.isGenericDict()) throw IoError(file + ": not a checkpoint or state dict (a " + v.tagKind() + ")");
  const auto d = v.toGenericDict();
  const bool quantlab =
      d.contains("format") && d.at("format").isString() && d.at("format").toStringRef() == "quantlab.checkpoint";
  if (quantlab || (d.contains("indiv") && d.contains("treat"))) return load_checkpoint(file).net;  // verified
  std::map<std::string, torch::Tensor> out;
  if (d.contains("net") && d.at("net").isGenericDict()) {
    collect_tensors(d.at("net").toGenericDict(), out);
  } else {
    collect_tensors(d, out);  // a plain state dict
  }
  if (out.empty()) throw IoError(file + ": holds no network tensors");
  return out;
}

std::string pretrained_file(const topology::PretrainedSpec& spec, const ProblemPaths& paths,
                            const std::string& topology) {
  if (!spec.file.empty())
    return spec.file.find('/') != std::string::npos ? spec.file
                                                    : paths.dir + "/" + topology + "/pretrained/" + spec.file;
  const Logbook book = Logbook::open(paths.logs, spec.exp_id);
  return book.saves().file(spec.checkpoint);
}

int64_t apply_pretrained(train::Experiment& exp, const ProblemPaths& paths) {
  if (!exp.net_spec.pretrained) return 0;
  const topology::PretrainedSpec& spec = *exp.net_spec.pretrained;
  std::string file;
  std::map<std::string, torch::Tensor> tensors;
  try {
    file = pretrained_file(spec, paths, exp.net_spec.family);
    tensors = read_network_tensors(file);
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {
    throw ConfigError(std::string("indiv.net.pretrained: ") + e.what());
  }
  auto live = named_state(*exp.net);
  int64_t copied = 0;
  torch::NoGradGuard no_grad;
  for (auto& kv : live) {
    const std::string& name = kv.first;
    if (name.size() >= 19 && name.compare(name.size() - 19, 19, "num_batches_tracked") == 0) continue;
    bool wanted = spec.prefixes.empty();
    for (const auto& p : spec.prefixes) wanted = wanted || name.rfind(p, 0) == 0;
    if (!wanted) continue;
    auto it = tensors.find(name);
    if (it == tensors.end()) continue;
    if (it->second.sizes() != kv.second.sizes())
      throw ConfigError("indiv.net.pretrained: '" + name + "' has shape " + c10::str(it->second.sizes()) + " in " +
                        file + " but " + c10::str(kv.second.sizes()) + " here");
    // A diverged run's weights (NaN, infinity) would make every loss NaN from the first step.
    if (it->second.is_floating_point() && !it->second.isfinite().all().item<bool>())
      throw ConfigError("indiv.net.pretrained: '" + name + "' in " + file +
                        " holds NaN or infinite values (a diverged run?); choose another checkpoint");
    kv.second.copy_(it->second);
    ++copied;
  }
  if (copied == 0)
    throw ConfigError("indiv.net.pretrained: no tensor of " + file + " matches this network's names" +
                      (spec.prefixes.empty() ? std::string() : " and the prefixes"));
  return copied;
}

}  // namespace quantlab::experiment
