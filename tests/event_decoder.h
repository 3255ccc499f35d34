// An event-file decoder that shares no code with the writer (log/event_writer.h): its own bitwise
// CRC-32C and protocol-buffer wire-format reader. Used by test_events.cpp and test_sync_faults.cpp.
#pragma once

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace quantlab::testing {

// Bitwise CRC-32C, masked as TFRecord masks it.
inline uint32_t reference_masked_crc(const std::string& bytes) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : bytes) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
  }
  c ^= 0xFFFFFFFFu;
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

// Minimal protobuf wire reader: field number -> list of raw values (varint, fixed, or bytes).
struct Field {
  int wire = 0;
  uint64_t varint = 0;
  std::string bytes;
};
inline std::multimap<int, Field> parse(const std::string& m) {
  std::multimap<int, Field> out;
  size_t i = 0;
  auto varint = [&]() {
    uint64_t v = 0;
    for (int shift = 0; i < m.size(); shift += 7) {
      const auto b = static_cast<unsigned char>(m[i++]);
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) break;
    }
    return v;
  };
  while (i < m.size()) {
    const uint64_t key = varint();
    Field f;
    f.wire = static_cast<int>(key & 7);
    if (f.wire == 0)
      f.varint = varint();
    else if (f.wire == 1) {
      f.bytes = m.substr(i, 8);
      i += 8;
    } else if (f.wire == 5) {
      f.bytes = m.substr(i, 4);
      i += 4;
    } else if (f.wire == 2) {
      const uint64_t n = varint();
      f.bytes = m.substr(i, n);
      i += n;
    } else
      throw std::runtime_error("unexpected wire type");
    out.emplace(static_cast<int>(key >> 3), f);
  }
  return out;
}
inline double as_double(const std::string& b) {
  double d;
  std::memcpy(&d, b.data(), 8);
  return d;
}
inline float as_float(const std::string& b) {
  float f;
  std::memcpy(&f, b.data(), 4);
  return f;
}

struct Decoded {
  std::vector<std::pair<int64_t, std::string>> tags;  // (step, tag)
  std::map<std::string, std::map<int64_t, float>> scalars;
  std::vector<int64_t> session_starts;
  std::string file_version, text;
  int histograms = 0;
  // HParams: the session start's hyperparameters (numbers as numbers, strings as strings), and the
  // end's status.
  std::map<std::string, std::string> hparams;
  int hparams_starts = 0, hparams_status = 0;
};

inline Decoded decode(const std::string& file) {
  std::ifstream in(file, std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), {});
  Decoded d;
  size_t i = 0;
  while (i < all.size()) {
    EXPECT_GE(all.size() - i, 16u) << "truncated record";
    const std::string len_bytes = all.substr(i, 8);
    uint64_t len = 0;
    for (int k = 7; k >= 0; --k) len = (len << 8) | static_cast<unsigned char>(len_bytes[k]);
    uint32_t len_crc, data_crc;
    std::memcpy(&len_crc, all.data() + i + 8, 4);
    EXPECT_EQ(len_crc, reference_masked_crc(len_bytes));
    const std::string data = all.substr(i + 12, len);
    std::memcpy(&data_crc, all.data() + i + 12 + len, 4);
    EXPECT_EQ(data_crc, reference_masked_crc(data));
    i += 16 + len;
    const auto event = parse(data);
    int64_t step = 0;
    if (event.count(2)) step = static_cast<int64_t>(event.find(2)->second.varint);
    EXPECT_GT(as_double(event.find(1)->second.bytes), 1.6e9);  // wall time
    if (event.count(3)) d.file_version = event.find(3)->second.bytes;
    if (event.count(7)) {
      const auto log = parse(event.find(7)->second.bytes);
      if (log.count(1) && log.find(1)->second.varint == 1) d.session_starts.push_back(step);
    }
    auto range = event.equal_range(5);
    for (auto it = range.first; it != range.second; ++it) {
      const auto summary = parse(it->second.bytes);
      auto values = summary.equal_range(1);
      for (auto v = values.first; v != values.second; ++v) {
        const auto value = parse(v->second.bytes);
        const std::string tag = value.find(1)->second.bytes;
        d.tags.emplace_back(step, tag);
        if (value.count(2)) d.scalars[tag][step] = as_float(value.find(2)->second.bytes);
        if (value.count(5)) {
          const auto h = parse(value.find(5)->second.bytes);
          const double num = as_double(h.find(3)->second.bytes);
          // Packed doubles: bucket_limit (6) and bucket (7) have one entry each per bucket.
          const std::string limits = h.find(6)->second.bytes, counts = h.find(7)->second.bytes;
          EXPECT_EQ(limits.size(), counts.size());
          double total = 0;
          for (size_t k = 0; k < counts.size(); k += 8) total += as_double(counts.substr(k, 8));
          EXPECT_DOUBLE_EQ(total, num) << tag;
          for (size_t k = 8; k < limits.size(); k += 8)
            EXPECT_LT(as_double(limits.substr(k - 8, 8)), as_double(limits.substr(k, 8))) << tag;
          ++d.histograms;
        }
        const auto meta = value.count(9) ? parse(value.find(9)->second.bytes) : decltype(parse("")){};
        const std::string plugin =
            meta.count(1) ? parse(meta.find(1)->second.bytes).find(1)->second.bytes : std::string();
        if (value.count(8) && plugin == "hparams") {
          const auto tensor = parse(value.find(8)->second.bytes);
          EXPECT_EQ(tensor.find(1)->second.varint, 1u);  // DT_FLOAT, of shape [0]
          const auto content = parse(parse(meta.find(1)->second.bytes).find(2)->second.bytes);
          EXPECT_EQ(content.count(1) ? content.find(1)->second.varint : 0u, 0u);  // version 0
          if (content.count(3)) {
            ++d.hparams_starts;
            const auto start = parse(content.find(3)->second.bytes);
            auto entries = start.equal_range(1);
            for (auto e = entries.first; e != entries.second; ++e) {
              const auto entry = parse(e->second.bytes);
              const auto v = parse(entry.find(2)->second.bytes);
              d.hparams[entry.find(1)->second.bytes] =
                  v.count(2) ? std::to_string(as_double(v.find(2)->second.bytes)) : v.find(3)->second.bytes;
            }
          }
          if (content.count(4))
            d.hparams_status = static_cast<int>(parse(content.find(4)->second.bytes).find(1)->second.varint);
        } else if (value.count(8)) {
          const auto tensor = parse(value.find(8)->second.bytes);
          EXPECT_EQ(tensor.find(1)->second.varint, 7u);  // DT_STRING
          d.text = tensor.find(8)->second.bytes;
          const auto meta = parse(value.find(9)->second.bytes);
          EXPECT_EQ(parse(meta.find(1)->second.bytes).find(1)->second.bytes, "text");
        }
      }
    }
  }
  return d;
}

}  // namespace quantlab::testing
