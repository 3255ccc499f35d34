// Reading test images without libtorch.
#include "quantlab/runtime/images.h"

#include <filesystem>
#include <fstream>

#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"

namespace quantlab::runtime {
namespace {

namespace fs = std::filesystem;

std::string idx_file(const std::string& dir, const std::string& name) {
  for (const std::string& f : {dir + "/" + name, dir + "/" + name + ".gz"})
    if (fs::exists(f)) return f;
  throw IoError(dir + "/" + name + "[.gz]: no such file");
}

}  // namespace

Images read_test_images(const std::string& dir) {
  Images im;
  const bool cifar10 = fs::exists(dir + "/test_batch.bin"), cifar100 = fs::exists(dir + "/test.bin");
  if (cifar10 || cifar100) {
    const std::string file = dir + (cifar10 ? "/test_batch.bin" : "/test.bin");
    require_regular_file(file, "CIFAR file");
    std::ifstream in(file, std::ios::binary);
    const std::vector<unsigned char> b((std::istreambuf_iterator<char>(in)), {});
    const size_t label_bytes = cifar10 ? 1 : 2, record = label_bytes + 3072;
    if (b.empty() || b.size() % record) throw IoError(file + ": not whole " + std::to_string(record) + "-byte records");
    im.format = cifar10 ? "CIFAR-10" : "CIFAR-100";
    im.count = static_cast<int64_t>(b.size() / record), im.channels = 3, im.height = im.width = 32;
    for (int64_t i = 0; i < im.count; ++i) {
      const unsigned char* r = b.data() + static_cast<size_t>(i) * record;
      im.labels.push_back(r[label_bytes - 1]);
      im.pixels.insert(im.pixels.end(), r + label_bytes, r + record);
    }
    return im;
  }
  const std::string images = idx_file(dir, "t10k-images-idx3-ubyte"), labels = idx_file(dir, "t10k-labels-idx1-ubyte");
  const IdxBytes ib = read_idx_bytes(images), lb = read_idx_bytes(labels);  // bounded by their headers
  if (ib.dims.size() != 3 || lb.dims.size() != 1 || ib.dims[0] != lb.dims[0])
    throw IoError(images + ": expected [N, rows, cols] images with N labels in " + labels);
  im.format = "IDX";
  im.count = ib.dims[0], im.height = ib.dims[1], im.width = ib.dims[2];
  im.pixels = ib.data;
  im.labels.assign(lb.data.begin(), lb.data.end());
  return im;
}

}  // namespace quantlab::runtime
