// Checkpoint files: capture, restore, save, load.
#include "quantlab/experiment/checkpoint.h"

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/experiment/logbook.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"

namespace quantlab {
namespace {

using c10::IValue;

const char* const kFormat = "quantlab.checkpoint";

// A checksum over the contents, independent of how the container lays them out.
uint32_t digest(const IValue& v, uint32_t crc) {
  auto add = [&](const void* p, size_t n) { crc = static_cast<uint32_t>(crc32(crc, static_cast<const Bytef*>(p), static_cast<uInt>(n))); };
  auto add_str = [&](const std::string& s) { add(s.data(), s.size()); };
  if (v.isTensor()) {
    const auto t = v.toTensor().cpu().contiguous();
    add_str(std::string(c10::toString(t.scalar_type())));
    for (int64_t s : t.sizes()) add(&s, sizeof s);
    add(t.data_ptr(), static_cast<size_t>(t.nbytes()));
  } else if (v.isGenericDict()) {
    for (const auto& kv : v.toGenericDict()) {
      crc = digest(kv.key(), crc);
      crc = digest(kv.value(), crc);
    }
  } else if (v.isList()) {
    for (const IValue& e : v.toListRef()) crc = digest(e, crc);
  } else if (v.isString()) {
    add_str(v.toStringRef());
  } else if (v.isInt()) {
    const int64_t i = v.toInt();
    add(&i, sizeof i);
  } else if (v.isDouble()) {
    const double d = v.toDouble();
    add(&d, sizeof d);
  } else if (v.isBool()) {
    const bool b = v.toBool();
    add(&b, sizeof b);
  } else if (!v.isNone()) {
    throw std::logic_error("checkpoint digest: unexpected value type " + v.tagKind());
  }
  return crc;
}

c10::impl::GenericDict to_dict(const Checkpoint& c) {
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("format", std::string(kFormat));
  d.insert("version", kCheckpointVersion);
  d.insert("net_class", c.net_class);
  d.insert("epoch", c.state.epoch);
  c10::Dict<std::string, torch::Tensor> net;
  for (const auto& kv : c.net) net.insert(kv.first, kv.second.detach().cpu());
  d.insert("net", net);
  d.insert("optimizer", c.optimizer);
  d.insert("lr", c.lr);
  d.insert("lr_scheduler", c10::List<double>(c.lr_scheduler));
  d.insert("thermostat_clock", c.thermostat_clock);
  d.insert("best_epoch", c.state.best_epoch);
  d.insert("best_value", c.state.best_value);
  c10::Dict<std::string, double> stats;
  for (const auto& kv : c.state.stats) stats.insert(kv.first, kv.second);
  d.insert("stats", stats);
  d.insert("rng_cpu", c.rng_cpu);
  c10::List<torch::Tensor> cuda;
  for (const auto& t : c.rng_cuda) cuda.push_back(t);
  d.insert("rng_cuda", cuda);
  return d;
}

template <typename T>
T field(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  if (!d.contains(key)) throw IoError(file + ": not a complete checkpoint (no '" + key + "')");
  return d.at(key).to<T>();
}

}  // namespace

std::map<std::string, torch::Tensor> named_state(torch::nn::Module& net) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& p : net.named_parameters()) out[p.key()] = p.value();
  for (const auto& b : net.named_buffers()) out[b.key()] = b.value();
  return out;
}

Checkpoint capture(Experiment& exp, const TrainingState& state) {
  Checkpoint c;
  c.net_class = exp.config["indiv"]["net"]["class"].get<std::string>();
  c.net = named_state(*exp.net);
  torch::serialize::OutputArchive archive;
  exp.optimizer->save(archive);
  std::ostringstream os;
  archive.save_to(os);
  const std::string bytes = os.str();
  c.optimizer = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
  std::memcpy(c.optimizer.data_ptr(), bytes.data(), bytes.size());
  c.lr = get_lr(*exp.optimizer);
  c.lr_scheduler = exp.lr_scheduler->state();
  c.thermostat_clock = exp.thermostat ? exp.thermostat->clock() : 0;
  c.state = state;
  c.rng_cpu = at::detail::getDefaultCPUGenerator().get_state();
  if (torch::cuda::is_available())
    for (int64_t i = 0; i < static_cast<int64_t>(torch::cuda::device_count()); ++i)
      c.rng_cuda.push_back(at::globalContext().defaultGenerator(at::Device(at::kCUDA, i)).get_state());
  return c;
}

void restore(Experiment& exp, const Checkpoint& c) {
  const std::string cls = exp.config["indiv"]["net"]["class"].get<std::string>();
  if (c.net_class != cls)
    throw Error("the checkpoint holds a " + c.net_class + " network, the experiment builds a " + cls);
  {
    torch::NoGradGuard no_grad;
    auto live = named_state(*exp.net);
    for (auto& kv : live) {
      auto it = c.net.find(kv.first);
      if (it == c.net.end()) throw Error("the checkpoint has no tensor '" + kv.first + "' (another topology?)");
      if (it->second.sizes() != kv.second.sizes())
        throw Error("checkpoint tensor '" + kv.first + "' has shape " + c10::str(it->second.sizes()) +
                    ", the network's has " + c10::str(kv.second.sizes()) + " (another capacity?)");
      kv.second.copy_(it->second);
    }
    if (live.size() != c.net.size()) throw Error("the checkpoint has tensors this network does not (another topology?)");
  }
  torch::serialize::InputArchive archive;
  const auto bytes = c.optimizer.contiguous();
  std::istringstream is(std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
  archive.load_from(is, exp.device);
  exp.optimizer->load(archive);
  set_lr(*exp.optimizer, c.lr);  // libtorch does not restore the param groups' rate
  exp.lr_scheduler->load_state(c.lr_scheduler);
  if (exp.thermostat) exp.thermostat->set_clock(c.thermostat_clock);
  at::Generator cpu = at::detail::getDefaultCPUGenerator();  // a handle to the global generator
  cpu.set_state(c.rng_cpu);
  for (size_t i = 0; i < c.rng_cuda.size() && torch::cuda::is_available() &&
                     i < static_cast<size_t>(torch::cuda::device_count()); ++i) {
    at::Generator cuda = at::globalContext().defaultGenerator(at::Device(at::kCUDA, static_cast<int16_t>(i)));
    cuda.set_state(c.rng_cuda[i]);
  }
}

void save_checkpoint(const std::string& file, const Checkpoint& c) {
  auto d = to_dict(c);
  d.insert("checksum", static_cast<int64_t>(digest(IValue(d), 0)));
  const std::vector<char> bytes = torch::pickle_save(IValue(d));
  write_file_atomically(file, std::string(bytes.begin(), bytes.end()));
}

Checkpoint load_checkpoint(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": missing or unreadable");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception& e) {
    throw IoError(file + ": corrupt or truncated checkpoint (cannot be decoded)");
  }
  if (!v.isGenericDict()) throw IoError(file + ": not a QuantLab checkpoint");
  auto d = v.toGenericDict();
  if (!d.contains("format") || !d.at("format").isString() || d.at("format").toStringRef() != kFormat)
    throw IoError(file + ": not a QuantLab checkpoint");
  const int64_t version = field<int64_t>(d, "version", file);
  if (version != kCheckpointVersion)
    throw IoError(file + ": checkpoint version " + std::to_string(version) + ", this QuantLab reads version " +
                  std::to_string(kCheckpointVersion));
  const int64_t stored = field<int64_t>(d, "checksum", file);
  (void)d.erase("checksum");
  if (static_cast<int64_t>(digest(IValue(d), 0)) != stored)
    throw IoError(file + ": checksum mismatch: the file is corrupt");
  Checkpoint c;
  c.net_class = field<std::string>(d, "net_class", file);
  c.state.epoch = field<int64_t>(d, "epoch", file);
  for (const auto& kv : field<c10::Dict<std::string, torch::Tensor>>(d, "net", file)) c.net[kv.key()] = kv.value();
  c.optimizer = field<torch::Tensor>(d, "optimizer", file);
  c.lr = field<double>(d, "lr", file);
  for (double x : field<c10::List<double>>(d, "lr_scheduler", file)) c.lr_scheduler.push_back(x);
  c.thermostat_clock = field<int64_t>(d, "thermostat_clock", file);
  c.state.best_epoch = field<int64_t>(d, "best_epoch", file);
  c.state.best_value = field<double>(d, "best_value", file);
  for (const auto& kv : field<c10::Dict<std::string, double>>(d, "stats", file)) c.state.stats[kv.key()] = kv.value();
  c.rng_cpu = field<torch::Tensor>(d, "rng_cpu", file);
  for (const auto& t : field<c10::List<torch::Tensor>>(d, "rng_cuda", file)) c.rng_cuda.push_back(t);
  return c;
}

}  // namespace quantlab
