// The model file: header JSON, blobs, checksum.
#include "quantlab/runtime/model.h"

#include <zlib.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "quantlab/util/error.h"

namespace quantlab::runtime {
namespace {

constexpr char kMagic[8] = {'Q', 'L', 'M', 'O', 'D', 'E', 'L', '1'};
// Version 1: integer layers only; version 2 adds the float steps (Layer::is_float_step).
constexpr int kVersion = 2;

const char* const kKinds[] = {"conv",    "linear", "maxpool", "threshold",      "affine",
                              "flatten", "clamp",  "avgpool", "residual_begin", "residual_add"};
constexpr int kNumKinds = sizeof kKinds / sizeof kKinds[0];

LayerKind kind_of(const std::string& s, const std::string& file) {
  for (int k = 0; k < kNumKinds; ++k)
    if (s == kKinds[k]) return static_cast<LayerKind>(k);
  throw IoError(file + ": unknown layer kind '" + s + "' (written by a newer QuantLab?)");
}

// Blobs: appended to one byte string, located by (offset, bytes) in the header.
class BlobWriter {
 public:
  template <typename T>
  nlohmann::json add(const std::vector<T>& v) {
    const size_t at = data_.size();
    data_.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
    return {{"offset", at}, {"bytes", v.size() * sizeof(T)}};
  }
  nlohmann::json add_packed_ternary(const std::vector<int8_t>& w) {
    std::string packed((w.size() + 3) / 4, '\0');
    for (size_t i = 0; i < w.size(); ++i) {
      const unsigned code = w[i] == 0 ? 0u : (w[i] > 0 ? 1u : 3u);
      packed[i / 4] = static_cast<char>(static_cast<unsigned char>(packed[i / 4]) | (code << (2 * (i % 4))));
    }
    const size_t at = data_.size();
    data_ += packed;
    return {{"offset", at}, {"bytes", packed.size()}, {"packing", "ternary2"}, {"count", w.size()}};
  }
  const std::string& data() const { return data_; }

 private:
  std::string data_;
};

class BlobReader {
 public:
  BlobReader(const std::string& file, const char* data, size_t size) : file_(file), data_(data), size_(size) {}
  template <typename T>
  std::vector<T> get(const nlohmann::json& ref, size_t expected_count) const {
    const size_t off = count(ref, "offset"), bytes = count(ref, "bytes");
    if (off > size_ || bytes > size_ - off) throw IoError(file_ + ": a blob lies outside the file (truncated?)");
    if (ref.contains("packing")) {
      if (ref.at("packing") != "ternary2") throw IoError(file_ + ": unknown packing " + ref.at("packing").dump());
      const size_t count = this->count(ref, "count");
      if (count != expected_count || bytes != (count + 3) / 4)
        throw IoError(file_ + ": a packed blob has the wrong size");
      std::vector<T> out(count);
      for (size_t i = 0; i < count; ++i) {
        const unsigned code = (static_cast<unsigned char>(data_[off + i / 4]) >> (2 * (i % 4))) & 3u;
        if (code == 2) throw IoError(file_ + ": corrupt ternary weights");
        out[i] = static_cast<T>(code == 0 ? 0 : (code == 1 ? 1 : -1));
      }
      return out;
    }
    if (bytes != expected_count * sizeof(T))
      throw IoError(file_ + ": a blob has " + std::to_string(bytes) + " bytes, expected " +
                    std::to_string(expected_count * sizeof(T)));
    std::vector<T> out(expected_count);
    if (bytes) std::memcpy(out.data(), data_ + off, bytes);
    return out;
  }

 private:
  // A whole number of bytes or values (a fraction, a negative or 1e308 would be cast to some size).
  size_t count(const nlohmann::json& ref, const char* key) const {
    const nlohmann::json& v = ref.at(key);
    if (!v.is_number_unsigned()) throw IoError(file_ + ": a blob's " + key + " is " + v.dump() + ", not a count");
    return v.get<size_t>();
  }

  const std::string& file_;
  const char* data_;
  size_t size_;
};

void check(bool ok, const std::string& file, const Layer& l, const std::string& what) {
  if (!ok) throw IoError(file + ": layer " + l.name + " (" + layer_kind_name(l.kind) + "): " + what);
}

}  // namespace

const char* layer_kind_name(LayerKind k) { return kKinds[static_cast<int>(k)]; }

bool Layer::is_float_step() const {
  return !float_weights.empty() || kind == LayerKind::kClamp || kind == LayerKind::kGlobalAvgPool ||
         kind == LayerKind::kResidualBegin || kind == LayerKind::kResidualAdd;
}

bool is_ternary(const std::vector<int8_t>& w) {
  for (int8_t x : w)
    if (x < -1 || x > 1) return false;
  return true;
}

void save_model(const std::string& file, const Model& m) {
  BlobWriter blobs;
  nlohmann::json layers = nlohmann::json::array();
  for (const Layer& l : m.layers) {
    nlohmann::json j = {{"kind", layer_kind_name(l.kind)}, {"name", l.name}, {"float", l.float_input}};
    switch (l.kind) {
      case LayerKind::kConv:
      case LayerKind::kLinear:
        j.update({{"in", l.in},
                  {"out", l.out},
                  {"kernel", l.kernel},
                  {"stride", l.stride},
                  {"pad", l.pad},
                  {"groups", l.groups},
                  {"weight_step", l.weight_step}});
        if (!l.float_weights.empty())
          j["float_weights"] = blobs.add(l.float_weights);
        else
          j["weights"] = is_ternary(l.weights) ? blobs.add_packed_ternary(l.weights) : blobs.add(l.weights);
        break;
      case LayerKind::kMaxPool:
        j.update({{"pool_kernel", l.pool_kernel}, {"pool_stride", l.pool_stride}});
        break;
      case LayerKind::kThreshold:
        j.update({{"channels", l.channels}, {"num_thresholds", l.num_thresholds}, {"level_step", l.level_step}});
        j["thresholds"] = l.float_input ? blobs.add(l.float_thresholds) : blobs.add(l.int_thresholds);
        j["below"] = blobs.add(l.below);
        j["levels"] = blobs.add(l.levels);
        break;
      case LayerKind::kAffine:
        j.update({{"channels", l.channels}});
        j["scale"] = blobs.add(l.scale);
        j["shift"] = blobs.add(l.shift);
        break;
      case LayerKind::kClamp:
        j.update({{"lo", l.lo}, {"hi", l.hi}});
        break;
      case LayerKind::kFlatten:
      case LayerKind::kGlobalAvgPool:
      case LayerKind::kResidualBegin:
      case LayerKind::kResidualAdd:
        break;
    }
    layers.push_back(j);
  }
  bool float_steps = false;
  for (const Layer& l : m.layers) float_steps = float_steps || l.is_float_step();
  const nlohmann::json header = {{"format", "quantlab.model"},
                                 {"version", float_steps ? kVersion : 1},
                                 {"problem", m.problem},
                                 {"net_class", m.net_class},
                                 {"source", m.source},
                                 {"num_classes", m.num_classes},
                                 {"input",
                                  {{"channels", m.input.channels},
                                   {"height", m.input.height},
                                   {"width", m.input.width},
                                   {"pad", m.input.pad},
                                   {"mean", m.input.mean},
                                   {"std", m.input.std}}},
                                 {"layers", layers}};
  const std::string head = header.dump();
  std::string bytes(kMagic, 8);
  const auto head_size = static_cast<uint32_t>(head.size());
  bytes.append(reinterpret_cast<const char*>(&head_size), 4);
  bytes += head;
  bytes += blobs.data();
  const auto crc =
      static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size())));
  bytes.append(reinterpret_cast<const char*>(&crc), 4);
  const std::string tmp = file + ".tmp";
  bool written = false;
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();  // the last bytes reach the file here: a full disk shows now
    written = !out.fail();
  }
  if (!written) {
    std::remove(tmp.c_str());
    throw IoError(file + ": cannot write (disk full or not writable)");
  }
  if (std::rename(tmp.c_str(), file.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    throw IoError(file + ": cannot write (" + std::strerror(err) + ")");
  }
}

Model load_model(const std::string& file) {
  std::error_code ec;
  if (std::filesystem::is_directory(file, ec))
    throw IoError(file + ": a folder; expected a model file (.qlm, written by `quantlab export`)");
  std::ifstream in(file, std::ios::binary);
  if (!in) throw IoError(file + ": no such model file, or not readable");
  std::ostringstream ss;
  ss << in.rdbuf();
  const std::string bytes = ss.str();
  // A start of the magic number, or the magic number without the rest: a truncated model.
  const size_t start = std::min(bytes.size(), sizeof kMagic);
  if (start == 0 || std::memcmp(bytes.data(), kMagic, start) != 0)
    throw IoError(file + ": not a QuantLab model (write one with `quantlab export`)");
  if (bytes.size() < 16) throw IoError(file + ": truncated (" + std::to_string(bytes.size()) + " bytes)");
  uint32_t stored = 0;
  std::memcpy(&stored, bytes.data() + bytes.size() - 4, 4);
  const auto crc = static_cast<uint32_t>(
      crc32(0, reinterpret_cast<const Bytef*>(bytes.data()), static_cast<uInt>(bytes.size() - 4)));
  if (crc != stored) throw IoError(file + ": checksum mismatch: the file is truncated or corrupt");
  uint32_t head_size = 0;
  std::memcpy(&head_size, bytes.data() + 8, 4);
  if (12ull + head_size + 4 > bytes.size()) throw IoError(file + ": truncated header");
  nlohmann::json h;
  try {
    h = nlohmann::json::parse(bytes.substr(12, head_size));
  } catch (const std::exception& e) {
    throw IoError(file + ": corrupt header (" + std::string(e.what()) + ")");
  }
  try {
    if (h.at("format") != "quantlab.model") throw IoError(file + ": not a QuantLab model");
    const int version = h.at("version").get<int>();
    if (version < 1 || version > kVersion)
      throw IoError(file + ": model version " + h.at("version").dump() + ", this QuantLab reads versions 1 to " +
                    std::to_string(kVersion) + " (written by a newer QuantLab?)");
    Model m;
    m.problem = h.at("problem").get<std::string>();
    m.net_class = h.at("net_class").get<std::string>();
    m.source = h.value("source", std::string());
    m.num_classes = h.at("num_classes").get<int64_t>();
    const auto& in_spec = h.at("input");
    m.input.channels = in_spec.at("channels").get<int64_t>();
    m.input.height = in_spec.at("height").get<int64_t>();
    m.input.width = in_spec.at("width").get<int64_t>();
    m.input.pad = in_spec.at("pad").get<int64_t>();
    m.input.mean = in_spec.at("mean").get<std::vector<double>>();
    m.input.std = in_spec.at("std").get<std::vector<double>>();
    // A file's numbers are checked before any is used as a size (a damaged or hand-made file must
    // not make the runtime read or write outside its buffers, or ask for absurd memory).
    constexpr int64_t kMaxSide = 1 << 16;
    const InputSpec& in = m.input;
    if (in.channels < 1 || in.channels > 4096 || in.height < 1 || in.height > kMaxSide || in.width < 1 ||
        in.width > kMaxSide || in.pad < 0 || in.pad > kMaxSide)
      throw IoError(file + ": an impossible input (" + std::to_string(in.channels) + " channels, " +
                    std::to_string(in.height) + "x" + std::to_string(in.width) + ", pad " + std::to_string(in.pad) +
                    ")");
    const auto channels = static_cast<size_t>(in.channels);
    if (!((in.mean.empty() && in.std.empty()) || (in.mean.size() == channels && in.std.size() == channels)))
      throw IoError(file + ": the input's mean and std have " + std::to_string(in.mean.size()) + " and " +
                    std::to_string(in.std.size()) + " values for " + std::to_string(in.channels) + " channels");
    for (double s : in.std)
      if (!(s > 0.0) || !std::isfinite(s)) throw IoError(file + ": the input's std holds " + std::to_string(s));
    if (m.num_classes < 1) throw IoError(file + ": " + std::to_string(m.num_classes) + " classes");
    const size_t blob_start = 12 + head_size;
    const BlobReader blobs(file, bytes.data() + blob_start, bytes.size() - 4 - blob_start);
    for (const auto& j : h.at("layers")) {
      Layer l;
      l.kind = kind_of(j.at("kind").get<std::string>(), file);
      l.name = j.at("name").get<std::string>();
      l.float_input = j.at("float").get<bool>();
      switch (l.kind) {
        case LayerKind::kConv:
        case LayerKind::kLinear: {
          l.in = j.at("in"), l.out = j.at("out"), l.kernel = j.at("kernel"), l.stride = j.at("stride");
          l.pad = j.at("pad"), l.groups = j.at("groups"), l.weight_step = j.at("weight_step");
          check(l.in > 0 && l.out > 0 && l.kernel > 0 && l.stride > 0 && l.pad >= 0 && l.groups > 0 &&
                    l.in % l.groups == 0 && l.out % l.groups == 0,
                file, l, "inconsistent shape");
          check(l.in <= (int64_t{1} << 24) && l.out <= (int64_t{1} << 24) && l.kernel <= 1024 && l.stride <= 1024 &&
                    l.pad <= 1024,
                file, l, "an impossible size");
          check(std::isfinite(l.weight_step) && l.weight_step > 0, file, l,
                "a weight step of " + std::to_string(l.weight_step));
          if (l.kind == LayerKind::kLinear)
            check(l.kernel == 1 && l.stride == 1 && l.pad == 0 && l.groups == 1, file, l,
                  "a linear layer with a kernel, stride, padding or groups");
          int64_t count64 = 0;
          check(!__builtin_mul_overflow(l.out, l.in / l.groups, &count64) &&
                    !__builtin_mul_overflow(count64, l.kernel * l.kernel, &count64) && count64 <= (int64_t{1} << 34),
                file, l, "more weights than a model can hold");
          const auto count = static_cast<size_t>(count64);
          if (j.contains("float_weights"))
            l.float_weights = blobs.get<float>(j.at("float_weights"), count);
          else
            l.weights = blobs.get<int8_t>(j.at("weights"), count);
          break;
        }
        case LayerKind::kMaxPool:
          l.pool_kernel = j.at("pool_kernel"), l.pool_stride = j.at("pool_stride");
          check(l.pool_kernel > 0 && l.pool_stride > 0 && l.pool_kernel <= kMaxSide && l.pool_stride <= kMaxSide, file,
                l, "inconsistent pooling");
          break;
        case LayerKind::kThreshold: {
          l.channels = j.at("channels"), l.num_thresholds = j.at("num_thresholds"), l.level_step = j.at("level_step");
          check(l.channels > 0 && l.num_thresholds > 0 && l.channels <= (int64_t{1} << 24) && l.num_thresholds <= 255,
                file, l, "inconsistent thresholds");
          check(std::isfinite(l.level_step) && l.level_step > 0, file, l,
                "a level step of " + std::to_string(l.level_step));
          const auto n = static_cast<size_t>(l.channels * l.num_thresholds);
          if (l.float_input)
            l.float_thresholds = blobs.get<double>(j.at("thresholds"), n);
          else
            l.int_thresholds = blobs.get<int32_t>(j.at("thresholds"), n);
          l.below = blobs.get<uint8_t>(j.at("below"), static_cast<size_t>(l.channels));
          l.levels = blobs.get<int8_t>(j.at("levels"), static_cast<size_t>(l.num_thresholds + 1));
          break;
        }
        case LayerKind::kAffine:
          l.channels = j.at("channels");
          check(l.channels > 0 && l.channels <= (int64_t{1} << 24), file, l, "no channels, or too many");
          l.scale = blobs.get<double>(j.at("scale"), static_cast<size_t>(l.channels));
          l.shift = blobs.get<double>(j.at("shift"), static_cast<size_t>(l.channels));
          break;
        case LayerKind::kClamp:
          l.lo = j.at("lo"), l.hi = j.at("hi");
          check(l.lo <= l.hi, file, l, "an empty range");
          break;
        case LayerKind::kFlatten:
        case LayerKind::kGlobalAvgPool:
        case LayerKind::kResidualBegin:
        case LayerKind::kResidualAdd:
          break;
      }
      if (version < 2 && l.is_float_step()) check(false, file, l, "a float step in a version 1 file");
      m.layers.push_back(std::move(l));
    }
    if (m.layers.empty() || m.layers.back().kind != LayerKind::kAffine || m.layers.back().channels != m.num_classes)
      throw IoError(file + ": the model does not end with the scores of its " + std::to_string(m.num_classes) +
                    " classes");
    return m;
  } catch (const nlohmann::json::exception& e) {
    throw IoError(file + ": incomplete header (" + std::string(e.what()) + ")");
  }
}

}  // namespace quantlab::runtime
