// Telling a folder's data set by its files' names (compiled into the integer runtime as well).
#include "quantlab/data/data_files.h"

#include <filesystem>

namespace quantlab::data {
namespace fs = std::filesystem;

std::string idx_file_in(const std::string& dir) {
  std::error_code ec;
  for (const char* f :
       {"train-images-idx3-ubyte", "train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"})
    if (fs::exists(dir + "/" + f, ec)) return f;
  return "";
}

std::string cifar_file_in(const std::string& dir, CifarVariant v) {
  std::error_code ec;
  if (v == CifarVariant::kCifar100) {
    for (const char* n : {"train.bin", "test.bin"})
      if (fs::exists(dir + "/" + n, ec)) return n;
    return "";
  }
  if (fs::exists(dir + "/test_batch.bin", ec)) return "test_batch.bin";
  std::string first;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    if (n.rfind("data_batch_", 0) == 0 && n.size() > 15 && n.compare(n.size() - 4, 4, ".bin") == 0 &&
        (first.empty() || n < first))
      first = n;
  }
  return first;
}

std::vector<DataFiles> data_sets_in(const std::string& dir) {
  std::vector<DataFiles> found;
  if (const std::string idx = idx_file_in(dir); !idx.empty()) found.push_back({"IDX", idx});
  for (CifarVariant v : {CifarVariant::kCifar10, CifarVariant::kCifar100}) {
    const std::string file = cifar_file_in(dir, v);
    if (!file.empty()) found.push_back({v == CifarVariant::kCifar10 ? "CIFAR-10" : "CIFAR-100", file});
  }
  std::error_code ec;
  if (fs::is_directory(dir + "/train", ec) && fs::is_directory(dir + "/val", ec))
    found.push_back({"image folders", "train/ and val/"});
  return found;
}

std::string describe(const std::vector<DataFiles>& found) {
  std::string which;
  for (const auto& f : found) which += (which.empty() ? "" : ", ") + f.format + " (" + f.file + ")";
  return which;
}

}  // namespace quantlab::data
