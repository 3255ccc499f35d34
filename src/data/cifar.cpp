// CIFAR binary reader.
#include "quantlab/data/cifar.h"

#include <filesystem>
#include <fstream>
#include <vector>

#include "quantlab/util/error.h"
#include "quantlab/util/read_file.h"

namespace quantlab::data {
namespace {

constexpr int64_t kPixels = 3 * 32 * 32;

std::vector<std::string> files(CifarVariant v, bool train) {
  if (v == CifarVariant::kCifar100) return {train ? "train.bin" : "test.bin"};
  if (!train) return {"test_batch.bin"};
  return {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin"};
}

std::string source(CifarVariant v) {
  return v == CifarVariant::kCifar10
             ? "the CIFAR-10 binary version (cifar-10-binary.tar.gz) from https://www.cs.toronto.edu/~kriz/cifar.html"
             : "the CIFAR-100 binary version (cifar-100-binary.tar.gz) from "
               "https://www.cs.toronto.edu/~kriz/cifar.html";
}

}  // namespace

ImageSet read_cifar(const std::string& dir, CifarVariant v, bool train) {
  const int64_t label_bytes = v == CifarVariant::kCifar10 ? 1 : 2;
  const int64_t record = label_bytes + kPixels;
  std::vector<torch::Tensor> images, labels;
  ImageSet set;
  int64_t count = 0;
  for (const auto& name : files(v, train)) {
    const std::string file = dir + "/" + name;
    std::error_code ec;
    if (!std::filesystem::exists(file, ec)) throw IoError(file + ": missing; expected " + source(v));
    require_regular_file(file, "CIFAR file");
    if (std::filesystem::file_size(file, ec) > machine_memory_bytes())
      throw IoError(file + ": larger than this machine's memory; not " + source(v));
    std::ifstream in(file, std::ios::binary);
    if (!in) throw IoError(file + ": cannot be read; expected " + source(v));
    const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto n = static_cast<int64_t>(bytes.size());
    if (n == 0 || n % record != 0)
      throw IoError(file + ": " + std::to_string(n) + " bytes, not a whole number of " + std::to_string(record) +
                    "-byte records (10000 records, " + std::to_string(10000 * record) +
                    " bytes, in the official files): truncated or not " + source(v));
    const auto raw = torch::from_blob(const_cast<char*>(bytes.data()), {n / record, record}, torch::kUInt8);
    images.push_back(raw.narrow(1, label_bytes, kPixels).reshape({n / record, 3, 32, 32}).clone());
    labels.push_back(raw.select(1, label_bytes - 1).to(torch::kLong));
    count += n / record;
    set.label_files.push_back(file);
    set.image_files.push_back(file);
    set.label_file_ends.push_back(count);
  }
  set.images = torch::cat(images);
  set.labels = torch::cat(labels);
  return set;
}

}  // namespace quantlab::data
