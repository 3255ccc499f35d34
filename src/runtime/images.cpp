// Reading test images without libtorch.
#include "quantlab/runtime/images.h"

#include <filesystem>
#include <fstream>

#include "quantlab/data/data_files.h"
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
  im.dir = dir;
  std::error_code ec;
  const std::vector<data::DataFiles> found = data::data_sets_in(dir);  // as training reads the folder
  if (found.size() > 1)
    throw IoError(dir + ": holds the files of more than one data set: " + data::describe(found) +
                  "; keep one data set per folder");
  if (!found.empty() && found[0].format == "image folders")
    throw IoError(dir +
                  ": holds image folders (train/ and val/); the integer runtime reads the test files of IDX and "
                  "CIFAR data sets only");
  const bool cifar10 = !found.empty() && found[0].format == "CIFAR-10";
  const bool cifar100 = !found.empty() && found[0].format == "CIFAR-100";
  if (cifar10 || cifar100) {
    const std::string file = dir + (cifar10 ? "/test_batch.bin" : "/test.bin");
    if (!fs::exists(file, ec))
      throw IoError(file + ": missing; expected the test file of " +
                    (cifar10 ? "CIFAR-10's binary version (cifar-10-binary.tar.gz)"
                             : "CIFAR-100's binary version (cifar-100-binary.tar.gz)") +
                    " from https://www.cs.toronto.edu/~kriz/cifar.html");
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
