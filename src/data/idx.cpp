// IDX reader (big-endian header: magic 0x0000 <type> <ndim>, then ndim uint32 sizes, then data).
#include "quantlab/data/idx.h"

#include <zlib.h>

#include <filesystem>
#include <vector>

#include "quantlab/util/error.h"

namespace quantlab::data {
namespace {

std::vector<unsigned char> read_all(const std::string& file) {
  gzFile f = gzopen(file.c_str(), "rb");  // reads plain files too
  if (!f) throw IoError(file + ": cannot open for reading");
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  int err = 0;
  const char* msg = gzerror(f, &err);
  const bool bad = n < 0 || (err != Z_OK && err != Z_STREAM_END);
  const std::string why = bad ? msg : "";
  gzclose(f);
  if (bad) throw IoError(file + ": corrupt or truncated compressed data (" + why + ")");
  return out;
}

uint32_t be32(const unsigned char* p) {
  return (uint32_t(p[0]) << 24) | (uint32_t(p[1]) << 16) | (uint32_t(p[2]) << 8) | uint32_t(p[3]);
}

}  // namespace

torch::Tensor read_idx(const std::string& path) {
  std::string file = path;
  if (!std::filesystem::exists(file) && std::filesystem::exists(path + ".gz")) file = path + ".gz";
  if (!std::filesystem::exists(file))
    throw IoError(path + "[.gz]: no such file (expected an IDX file as published with MNIST)");
  const auto bytes = read_all(file);
  if (bytes.size() < 4 || bytes[0] != 0 || bytes[1] != 0) throw IoError(file + ": not an IDX file (bad magic number)");
  if (bytes[2] != 0x08) throw IoError(file + ": only unsigned-byte IDX data is supported");
  const int ndim = bytes[3];
  if (ndim < 1 || ndim > 4) throw IoError(file + ": unsupported IDX rank " + std::to_string(ndim));
  const size_t header = 4 + 4 * static_cast<size_t>(ndim);
  if (bytes.size() < header) throw IoError(file + ": truncated header");
  std::vector<int64_t> shape;
  size_t count = 1;
  for (int d = 0; d < ndim; ++d) {
    shape.push_back(be32(&bytes[4 + 4 * d]));
    count *= static_cast<size_t>(shape.back());
  }
  if (bytes.size() - header != count)
    throw IoError(file + ": expected " + std::to_string(count) + " data bytes after the header, found " +
                  std::to_string(bytes.size() - header) + " (truncated or corrupt file)");
  auto t = torch::empty(shape, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), bytes.data() + header, count);
  return t;
}

ImageSet read_idx_pair(const std::string& dir, const std::string& prefix) {
  const std::string images = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte";
  const std::string label_file =
      std::filesystem::exists(labels) || !std::filesystem::exists(labels + ".gz") ? labels : labels + ".gz";
  ImageSet s{read_idx(images), read_idx(labels).to(torch::kLong), {label_file}, {}};
  s.label_file_ends = {s.labels.size(0)};
  if (s.images.dim() != 3) throw IoError(images + ": expected 3 dimensions [N, rows, cols]");
  if (s.labels.dim() != 1 || s.labels.size(0) != s.images.size(0))
    throw IoError(labels + ": has " + std::to_string(s.labels.numel()) + " labels for " +
                  std::to_string(s.images.size(0)) + " images in " + images);
  return s;
}

std::string ImageSet::label_file(int64_t i) const {
  for (size_t k = 0; k < label_files.size() && k < label_file_ends.size(); ++k)
    if (i < label_file_ends[k]) return label_files[k];
  return label_files.empty() ? std::string("the labels") : label_files.back();
}

}  // namespace quantlab::data
