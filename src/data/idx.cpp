// IDX reader (big-endian header: magic 0x0000 <type> <ndim>, then ndim uint32 sizes, then data).
#include "quantlab/data/idx.h"

#include <cstring>
#include <filesystem>
#include <vector>

#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"

namespace quantlab::data {

torch::Tensor read_idx(const std::string& path) {
  std::string file = path;
  if (!std::filesystem::exists(file) && std::filesystem::exists(path + ".gz")) file = path + ".gz";
  if (!std::filesystem::exists(file))
    throw IoError(path + "[.gz]: no such file (expected an IDX file as published with MNIST)");
  IdxBytes idx = read_idx_bytes(file);  // regular files only, and exactly the bytes the header declares
  auto t = torch::empty(idx.dims, torch::kUInt8);
  std::memcpy(t.data_ptr<uint8_t>(), idx.data.data(), idx.data.size());
  return t;
}

ImageSet read_idx_pair(const std::string& dir, const std::string& prefix) {
  const std::string images = dir + "/" + prefix + "-images-idx3-ubyte";
  const std::string labels = dir + "/" + prefix + "-labels-idx1-ubyte";
  const std::string label_file =
      std::filesystem::exists(labels) || !std::filesystem::exists(labels + ".gz") ? labels : labels + ".gz";
  const std::string image_file =
      std::filesystem::exists(images) || !std::filesystem::exists(images + ".gz") ? images : images + ".gz";
  ImageSet s{read_idx(images), read_idx(labels).to(torch::kLong), {label_file}, {}, {image_file}};
  s.label_file_ends = {s.labels.size(0)};
  // The files actually read (foo.gz when only that exists) are the ones the errors name.
  if (s.images.dim() != 3) throw IoError(image_file + ": expected 3 dimensions [N, rows, cols]");
  if (s.labels.dim() != 1 || s.labels.size(0) != s.images.size(0))
    throw IoError(label_file + ": has " + std::to_string(s.labels.numel()) + " labels for " +
                  std::to_string(s.images.size(0)) + " images in " + image_file);
  return s;
}

std::string ImageSet::label_file(int64_t i) const {
  for (size_t k = 0; k < label_files.size() && k < label_file_ends.size(); ++k)
    if (i < label_file_ends[k]) return label_files[k];
  return label_files.empty() ? std::string("the labels") : label_files.back();
}

std::string ImageSet::image_file(int64_t i) const {
  if (image_files.empty()) return label_file(i);
  for (size_t k = 0; k < image_files.size() && k < label_file_ends.size(); ++k)
    if (i < label_file_ends[k]) return image_files[k];
  return image_files.back();
}

}  // namespace quantlab::data
