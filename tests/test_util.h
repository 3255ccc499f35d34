// Helpers shared by the tests: temporary folders and tiny IDX data sets in the real format.
#pragma once

#include <torch/torch.h>

#include <filesystem>
#include <string>

namespace quantlab::testing {

// A fresh folder under the system's temporary directory, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes an IDX file of uint8 data with the given shape (gzipped when `gz`).
void write_idx(const std::string& file, const torch::Tensor& data_u8, bool gz);

// Writes train-/t10k- images and labels of a learnable toy problem: `classes` classes of 28x28
// images, each class a bright horizontal band at its own height, plus noise.
void write_toy_idx_problem(const std::string& dir, int64_t n_train, int64_t n_test, int classes, bool gz);

}  // namespace quantlab::testing
