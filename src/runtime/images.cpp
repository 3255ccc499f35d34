// Reading test images without libtorch.
#include "quantlab/runtime/images.h"

#include <zlib.h>

#include <filesystem>
#include <fstream>

#include "quantlab/util/error.h"

namespace quantlab::runtime {
namespace {

namespace fs = std::filesystem;

std::vector<unsigned char> read_gz_or_plain(const std::string& file) {
  gzFile f = gzopen(file.c_str(), "rb");
  if (!f) throw IoError(file + ": cannot open for reading");
  std::vector<unsigned char> out;
  unsigned char buf[1 << 16];
  int n;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.insert(out.end(), buf, buf + n);
  const bool bad = n < 0;
  gzclose(f);
  if (bad) throw IoError(file + ": corrupt or truncated compressed data");
  return out;
}

std::string idx_file(const std::string& dir, const std::string& name) {
  for (const std::string f : {dir + "/" + name, dir + "/" + name + ".gz"})
    if (fs::exists(f)) return f;
  throw IoError(dir + "/" + name + "[.gz]: no such file");
}

std::vector<int64_t> idx_dims(const std::vector<unsigned char>& b, const std::string& file) {
  if (b.size() < 4 || b[0] != 0 || b[1] != 0 || b[2] != 0x08) throw IoError(file + ": not an unsigned-byte IDX file");
  std::vector<int64_t> dims;
  for (int d = 0; d < b[3]; ++d) {
    const size_t at = 4 + 4 * static_cast<size_t>(d);
    if (at + 4 > b.size()) throw IoError(file + ": truncated header");
    dims.push_back((int64_t{b[at]} << 24) | (int64_t{b[at + 1]} << 16) | (int64_t{b[at + 2]} << 8) | b[at + 3]);
  }
  return dims;
}

}  // namespace

Images read_test_images(const std::string& dir) {
  Images im;
  const bool cifar10 = fs::exists(dir + "/test_batch.bin"), cifar100 = fs::exists(dir + "/test.bin");
  if (cifar10 || cifar100) {
    const std::string file = dir + (cifar10 ? "/test_batch.bin" : "/test.bin");
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
  const auto ib = read_gz_or_plain(images), lb = read_gz_or_plain(labels);
  const auto idims = idx_dims(ib, images), ldims = idx_dims(lb, labels);
  if (idims.size() != 3 || ldims.size() != 1 || idims[0] != ldims[0])
    throw IoError(images + ": expected [N, rows, cols] images with N labels in " + labels);
  im.format = "IDX";
  im.count = idims[0], im.height = idims[1], im.width = idims[2];
  const size_t header = 4 + 4 * idims.size(), bytes = static_cast<size_t>(im.count * im.height * im.width);
  if (ib.size() != header + bytes || lb.size() != 8 + static_cast<size_t>(im.count))
    throw IoError(images + ": truncated or corrupt (sizes do not match the header)");
  im.pixels.assign(ib.begin() + static_cast<std::ptrdiff_t>(header), ib.end());
  for (size_t i = 8; i < lb.size(); ++i) im.labels.push_back(lb[i]);
  return im;
}

}  // namespace quantlab::runtime
