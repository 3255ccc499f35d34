// Checkpoint files: save and load, QuantLab's and the original's (capture and restore:
// checkpoint_state.cpp).
#include "quantlab/experiment/checkpoint.h"

#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "quantlab/experiment/logbook.h"  // write_file_atomically
#include "quantlab/experiment/torch_file.h"
#include "quantlab/train/experiment.h"
#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

using c10::IValue;

const char* const kFormat = "quantlab.checkpoint";

// A checksum over the contents, independent of how the container lays them out.
uint32_t digest(const IValue& v, uint32_t crc) {
  auto add = [&](const void* p, size_t n) {
    crc = static_cast<uint32_t>(crc32(crc, static_cast<const Bytef*>(p), static_cast<uInt>(n)));
  };
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
  } else if (v.isTuple()) {  // not written by QuantLab; a file edited in Python may hold one
    for (const IValue& e : v.toTupleRef().elements()) crc = digest(e, crc);
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
    throw Error("it holds a value of type " + v.tagKind() + ", which QuantLab's checkpoints never hold");
  }
  return crc;
}

std::string checksum_text(uint32_t crc) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", crc);
  return buf;
}

// A list of any element type: pickled as a plain Python list (a typed c10::List<double> or
// c10::List<Tensor> would be pickled through torch.jit's list builders, which torch.load's
// weights_only mode refuses).
template <typename T>
c10::impl::GenericList plain_list(const std::vector<T>& items) {
  c10::impl::GenericList list(c10::AnyType::get());
  for (const auto& x : items) list.push_back(IValue(x));
  return list;
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
  if (!c.optimizer_class.empty()) d.insert("optimizer_class", c.optimizer_class);
  if (c.first_lr > 0) d.insert("first_lr", c.first_lr);
  if (!c.lr_schedule.empty()) d.insert("lr_schedule", c.lr_schedule);
  d.insert("lr_scheduler", plain_list(c.lr_scheduler));
  d.insert("thermostat_clock", c.thermostat_clock);
  d.insert("best_epoch", c.state.best_epoch);
  d.insert("best_value", c.state.best_value);
  c10::Dict<std::string, double> stats;
  for (train::Statistic s : train::kStatistics) stats.insert(train::statistic_name(s), c.state.stats[s]);
  d.insert("stats", stats);
  d.insert("rng_cpu", c.rng_cpu);
  d.insert("rng_cuda", plain_list(c.rng_cuda));
  d.insert("rng_ranks", plain_list(c.rng_ranks));
  if (!c.rng_cuda_ranks.empty()) d.insert("rng_cuda_ranks", plain_list(c.rng_cuda_ranks));
  return d;
}

// Readers of the entries, by value kind rather than container type: a file that Python re-saved
// holds the same values in generic containers.
IValue entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  if (!d.contains(key)) throw IoError(file + ": not a complete checkpoint (no '" + key + "')");
  return d.at(key);
}

[[noreturn]] void wrong_kind(const std::string& file, const std::string& key, const char* expected) {
  throw IoError(file + ": not a complete checkpoint ('" + key + "' is not " + expected + ")");
}

int64_t int_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  const IValue v = entry(d, key, file);
  if (!v.isInt()) wrong_kind(file, key, "an integer");
  return v.toInt();
}

double double_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  const IValue v = entry(d, key, file);
  if (v.isDouble()) return v.toDouble();
  if (v.isInt()) return static_cast<double>(v.toInt());
  wrong_kind(file, key, "a number");
}

std::string string_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  const IValue v = entry(d, key, file);
  if (!v.isString()) wrong_kind(file, key, "a string");
  return v.toStringRef();
}

torch::Tensor tensor_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  const IValue v = entry(d, key, file);
  if (!v.isTensor()) wrong_kind(file, key, "a tensor");
  return v.toTensor();
}

// Bytes: a serialised archive or a generator's state.
torch::Tensor bytes_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  torch::Tensor t = tensor_entry(d, key, file);
  if (t.scalar_type() != torch::kUInt8 || t.dim() != 1) wrong_kind(file, key, "a 1-d tensor of bytes");
  return t;
}

std::vector<IValue> list_entry(const c10::impl::GenericDict& d, const std::string& key, const std::string& file) {
  const IValue v = entry(d, key, file);
  if (!v.isList()) wrong_kind(file, key, "a list");
  return v.toListRef().vec();
}

template <typename F>
void for_each_item(const c10::impl::GenericDict& d, const std::string& key, const std::string& file, F f) {
  const IValue v = entry(d, key, file);
  if (!v.isGenericDict()) wrong_kind(file, key, "a dictionary");
  for (const auto& kv : v.toGenericDict()) {
    if (!kv.key().isString()) wrong_kind(file, key, "a dictionary with text keys");
    f(kv.key().toStringRef(), kv.value());
  }
}

// The original's checkpoint: {"indiv": {"net": state_dict}, "treat": {"thermostat": {"t": T},
// "optimizer": ..., "lr_scheduler": ..., "i_epoch": E}, "protocol": {"metrics": {...}}}.
Checkpoint original_checkpoint(const c10::impl::GenericDict& d, const std::string& file) {
  Checkpoint c;
  c.original = true;
  const IValue indiv = entry(d, "indiv", file), treat = entry(d, "treat", file);
  if (!indiv.isGenericDict()) wrong_kind(file, "indiv", "a dictionary");
  if (!treat.isGenericDict()) wrong_kind(file, "treat", "a dictionary");
  for_each_item(indiv.toGenericDict(), "net", file, [&](const std::string& k, const IValue& t) {
    if (t.isTensor()) c.net[k] = t.toTensor();
  });
  const auto tr = treat.toGenericDict();
  c.state.epoch = tr.contains("i_epoch") && tr.at("i_epoch").isInt() ? tr.at("i_epoch").toInt() : 0;
  c.thermostat_clock = c.state.epoch;
  if (tr.contains("thermostat") && tr.at("thermostat").isGenericDict()) {
    const auto th = tr.at("thermostat").toGenericDict();
    if (th.contains("t") && th.at("t").isInt()) c.thermostat_clock = th.at("t").toInt();
  }
  if (d.contains("protocol") && d.at("protocol").isGenericDict()) {
    const auto p = d.at("protocol").toGenericDict();
    if (p.contains("metrics") && p.at("metrics").isGenericDict())
      for (const auto& kv : p.at("metrics").toGenericDict())
        for (train::Statistic s : train::kStatistics)
          if (kv.key().isString() && kv.key().toStringRef() == train::statistic_name(s)) {
            const IValue& x = kv.value();
            c.state.stats[s] = x.isDouble()   ? x.toDouble()
                               : x.isInt()    ? static_cast<double>(x.toInt())
                               : x.isTensor() ? x.toTensor().item<double>()
                                              : NAN;
          }
  }
  c.notes.push_back(file + " is a checkpoint of the original QuantLab (after epoch " + std::to_string(c.state.epoch) +
                    "): its network's weights were loaded");
  return c;
}

}  // namespace

void save_checkpoint(const std::string& file, const Checkpoint& c) {
  auto d = to_dict(c);
  // As text: Python re-pickles a 32-bit integer above 2^31 with an opcode libtorch cannot read.
  d.insert("checksum", checksum_text(digest(IValue(d), 0)));
  const std::vector<char> bytes = plain_torch_save(IValue(d));
  write_file_atomically(file, std::string(bytes.begin(), bytes.end()));
}

Checkpoint load_checkpoint(const std::string& file) {
  std::error_code ec;
  if (!std::filesystem::exists(file, ec)) throw IoError(file + ": missing or unreadable");
  require_regular_file(file, "checkpoint");  // never a device or a FIFO read whole
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": missing or unreadable");
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  IValue v;
  try {
    v = torch::pickle_load(bytes);
  } catch (const std::exception&) {
    try {
      v = read_torch_file(file);  // written by Python (re-saved, or the original QuantLab's)
    } catch (const IoError& e) {
      throw IoError(file + ": corrupt or truncated checkpoint (cannot be decoded: " + e.what() + ")");
    }
  }
  check_nesting(v, file);  // before anything walks it
  if (!v.isGenericDict()) throw IoError(file + ": not a QuantLab checkpoint");
  auto d = v.toGenericDict();
  if (d.contains("indiv") && d.contains("treat") && !d.contains("format")) return original_checkpoint(d, file);
  if (!d.contains("format") || !d.at("format").isString() || d.at("format").toStringRef() != kFormat)
    throw IoError(file + ": not a QuantLab checkpoint");
  const int64_t version = int_entry(d, "version", file);
  if (version < 1 || version > kCheckpointVersion)
    throw IoError(file + ": checkpoint version " + std::to_string(version) + ", this QuantLab reads versions 1 to " +
                  std::to_string(kCheckpointVersion) + " (written by a newer QuantLab?)");
  Checkpoint c;
  if (d.contains("checksum")) {
    const IValue stored = entry(d, "checksum", file);
    (void)d.erase("checksum");
    uint32_t crc = 0;
    try {
      crc = digest(IValue(d), 0);
    } catch (const Error& e) {
      throw IoError(file + ": not a QuantLab checkpoint (" + e.what() + ")");
    }
    const bool ok = stored.isString() ? stored.toStringRef() == checksum_text(crc)
                                      : stored.isInt() && stored.toInt() == static_cast<int64_t>(crc);  // version 1
    if (!ok)
      throw IoError(file +
                    ": checksum mismatch: the file is corrupt (or was edited outside QuantLab: delete its "
                    "'checksum' entry to load it anyway)");
  } else {
    c.notes.push_back(file +
                      " is a valid checkpoint file without QuantLab's checksum (re-saved from Python?); "
                      "its contents are complete and were loaded");
  }
  c.net_class = string_entry(d, "net_class", file);
  c.state.epoch = int_entry(d, "epoch", file);
  for_each_item(d, "net", file, [&](const std::string& k, const IValue& t) {
    if (!t.isTensor()) wrong_kind(file, "net." + k, "a tensor");
    c.net[k] = t.toTensor();
  });
  c.optimizer = bytes_entry(d, "optimizer", file);
  c.lr = double_entry(d, "lr", file);
  if (d.contains("optimizer_class")) c.optimizer_class = string_entry(d, "optimizer_class", file);  // since 2026-12-06
  if (d.contains("first_lr")) c.first_lr = double_entry(d, "first_lr", file);
  if (d.contains("lr_schedule")) c.lr_schedule = string_entry(d, "lr_schedule", file);  // since 2026-12-06
  for (const IValue& x : list_entry(d, "lr_scheduler", file)) {
    if (!x.isDouble() && !x.isInt()) wrong_kind(file, "lr_scheduler", "a list of numbers");
    c.lr_scheduler.push_back(x.isDouble() ? x.toDouble() : static_cast<double>(x.toInt()));
  }
  c.thermostat_clock = int_entry(d, "thermostat_clock", file);
  c.state.best_epoch = int_entry(d, "best_epoch", file) + (version == 1 ? 1 : 0);  // version 1 counted from 0
  c.state.best_value = double_entry(d, "best_value", file);
  for_each_item(d, "stats", file, [&](const std::string& k, const IValue& x) {
    for (train::Statistic s : train::kStatistics)
      if (k == train::statistic_name(s) && (x.isDouble() || x.isInt()))
        c.state.stats[s] = x.isDouble() ? x.toDouble() : x.toInt();
  });
  c.rng_cpu = bytes_entry(d, "rng_cpu", file);
  for (const IValue& t : list_entry(d, "rng_cuda", file)) {
    if (!t.isTensor()) wrong_kind(file, "rng_cuda", "a list of tensors");
    c.rng_cuda.push_back(t.toTensor());
  }
  if (d.contains("rng_ranks"))  // written by data-parallel runs since this field exists
    for (const IValue& t : list_entry(d, "rng_ranks", file)) {
      if (!t.isTensor()) wrong_kind(file, "rng_ranks", "a list of tensors");
      c.rng_ranks.push_back(t.toTensor());
    }
  if (d.contains("rng_cuda_ranks"))  // data-parallel runs on CUDA, since this field exists
    for (const IValue& t : list_entry(d, "rng_cuda_ranks", file)) {
      if (!t.isTensor()) wrong_kind(file, "rng_cuda_ranks", "a list of tensors");
      c.rng_cuda_ranks.push_back(t.toTensor());
    }
  if (c.state.epoch < 0 || c.state.best_epoch < 0 || c.state.best_epoch > c.state.epoch)
    throw IoError(file + ": not a consistent checkpoint (epoch " + std::to_string(c.state.epoch) + ", best epoch " +
                  std::to_string(c.state.best_epoch) + ")");
  return c;
}

}  // namespace quantlab::experiment
