// Test helpers.
#include "test_util.h"

#include <zlib.h>

#include <fstream>
#include <random>

namespace quantlab::testing {

TempDir::TempDir() {
  static std::mt19937_64 rng(std::random_device{}());
  path_ = (std::filesystem::temp_directory_path() / ("quantlab-test-" + std::to_string(rng()))).string();
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_idx(const std::string& file, const torch::Tensor& data_u8, bool gz) {
  std::string bytes = {0, 0, 0x08, static_cast<char>(data_u8.dim())};
  for (int64_t s : data_u8.sizes())
    for (int b = 3; b >= 0; --b) bytes.push_back(static_cast<char>((s >> (8 * b)) & 0xff));
  const auto c = data_u8.contiguous();
  bytes.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
  if (gz) {
    gzFile f = gzopen(file.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
}

static void write_toy_split(const std::string& dir, const std::string& prefix, int64_t n, int classes,
                            bool gz, uint64_t seed) {
  torch::manual_seed(seed);
  auto labels = torch::randint(classes, {n}, torch::kLong);
  auto images = torch::rand({n, 28, 28}) * 60.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = 2 + labels[i].item<int64_t>() * (24 / classes);
    images[i].narrow(0, row, 3).add_(180.0);
  }
  const std::string ext = gz ? ".gz" : "";
  write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images.clamp(0, 255).to(torch::kUInt8), gz);
  write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels.to(torch::kUInt8), gz);
}

void write_toy_idx_problem(const std::string& dir, int64_t n_train, int64_t n_test, int classes, bool gz) {
  std::filesystem::create_directories(dir);
  write_toy_split(dir, "train", n_train, classes, gz, 1);
  write_toy_split(dir, "t10k", n_test, classes, gz, 2);
}

}  // namespace quantlab::testing
