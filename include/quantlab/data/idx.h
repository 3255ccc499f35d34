// The IDX format of MNIST and Fashion-MNIST (plain or gzipped), read into memory.
//   images: uint8 [N, rows, cols]    labels: int64 [N]
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace quantlab::data {

struct ImageSet {
  torch::Tensor images;  // uint8 [N, H, W] (or [N, C, H, W])
  torch::Tensor labels;  // int64 [N]
  // The files the labels came from: samples [ends[k-1], ends[k]) are in files[k] (for messages).
  std::vector<std::string> label_files;
  std::vector<int64_t> label_file_ends;
  // The files the images came from, by the same ends (the label files where one file holds both).
  std::vector<std::string> image_files;
  int64_t size() const { return labels.size(0); }
  // The file sample `i`'s label / image came from.
  std::string label_file(int64_t i) const;
  std::string image_file(int64_t i) const;
};

// Reads one IDX file (`path`, or `path + ".gz"` when only that exists). Throws IoError naming the
// file on a missing, truncated or malformed file.
torch::Tensor read_idx(const std::string& path);

// Reads `<dir>/<prefix>-images-idx3-ubyte[.gz]` and `<dir>/<prefix>-labels-idx1-ubyte[.gz]`,
// prefix "train" or "t10k"; checks that counts agree.
ImageSet read_idx_pair(const std::string& dir, const std::string& prefix);

}  // namespace quantlab::data
