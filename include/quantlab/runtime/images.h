// Test images for the integer runtime, read without libtorch: a problem's MNIST-format IDX files
// (t10k-images-idx3-ubyte / t10k-labels-idx1-ubyte, plain or gzipped) or CIFAR's binary test file
// (test_batch.bin for CIFAR-10, test.bin for CIFAR-100, fine labels).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantlab::runtime {

struct Images {
  int64_t count = 0, channels = 1, height = 0, width = 0;
  std::vector<uint8_t> pixels;  // count x channels x height x width
  std::vector<int64_t> labels;
  std::string format;  // "IDX", "CIFAR-10", "CIFAR-100"
  std::string dir;     // the folder read (named in evaluate's errors); may be empty
  const uint8_t* image(int64_t i) const { return pixels.data() + i * channels * height * width; }
};

// The test set in `dir`; throws IoError naming what is missing or malformed. A folder with any
// CIFAR file (data_batch_*.bin, test_batch.bin; train.bin, test.bin) is read as CIFAR, so a
// missing test file is named as such; otherwise the IDX t10k-* files.
Images read_test_images(const std::string& dir);

}  // namespace quantlab::runtime
