// Loading a problem's data, by the files found.
#include "quantlab/data/problem.h"

#include <filesystem>
#include <numeric>

#include "quantlab/data/cifar.h"
#include "quantlab/data/data_files.h"
#include "quantlab/data/image_folder.h"
#include "quantlab/data/split.h"
#include "quantlab/data/tensor_dataset.h"
#include "quantlab/util/error.h"

namespace quantlab::data {
namespace fs = std::filesystem;
namespace {

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

// The data sets a Debian package installs, used when the problem's own data folder is empty: the
// one place a problem is known by name.
struct PackagedData {
  const char* problem;
  const char* dir;
  const char* package;
};
constexpr PackagedData kPackaged[] = {
    {"FashionMNIST", "/usr/share/datasets/fashion-mnist", "dataset-fashion-mnist"},
};

const PackagedData* packaged_data(const std::string& problem) {
  for (const auto& p : kPackaged)
    if (problem == p.problem) return &p;
  return nullptr;
}

// Any file or folder of a known data format, complete or not.
bool has_any_data_file(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string n = e.path().filename().string();
    for (const char* prefix : {"train-", "t10k-", "data_batch_", "test_batch", "train.bin", "test.bin"})
      if (n.rfind(prefix, 0) == 0) return true;
    if ((n == "train" || n == "val") && e.is_directory(ec)) return true;
  }
  return false;
}

bool has_data(const std::string& dir) { return !data_sets_in(dir).empty(); }

// A training file set split into training and validation, and a test file set.
ProblemData split_problem(ImageSet trainval, ImageSet test, Preprocess pre, const DataOptions& o) {
  ProblemData d;
  Split split = split_indices(trainval.size(), o.valid_fraction, o.split_seed);
  d.train_indices = std::move(split.train);
  d.valid_indices = std::move(split.valid);
  auto train = std::make_shared<TensorDataset>(std::move(trainval), pre);
  d.train = d.valid = train;
  pre.augment = false;
  d.test = std::make_shared<TensorDataset>(std::move(test), pre);
  return d;
}

ProblemData load_image_folders(const std::string& dir, const DataOptions& o) {
  ImageFolderOptions opt;
  opt.crop = o.crop;
  opt.scaled_decode = o.scaled_decode;
  opt.train_augment = o.augment;
  ImageFolderIndex train = scan_image_folder(dir + "/train");
  ImageFolderIndex val = scan_image_folder(dir + "/val", &train.classes);
  ProblemData d;
  d.format = "image folders";
  d.report_top5 = true;
  d.train_indices = all_indices(static_cast<int64_t>(train.files.size()));
  d.valid_indices = all_indices(static_cast<int64_t>(val.files.size()));
  d.train = std::make_shared<ImageFolderDataset>(std::move(train), opt);
  d.valid = d.test = std::make_shared<ImageFolderDataset>(std::move(val), opt);  // as the original
  return d;
}

}  // namespace

ProblemData load_idx_problem(const std::string& dir, const DataOptions& o) {
  Preprocess pre;  // inputs in [0, 1], as the original's MNIST preprocessing (mean 0, std 1)
  pre.pad = o.pad;
  pre.augment = o.augment != ImageAugment::kNone;
  ProblemData d = split_problem(read_idx_pair(dir, "train"), read_idx_pair(dir, "t10k"), pre, o);
  d.format = "IDX";
  return d;
}

ProblemData load_problem(const std::string& dir, const DataOptions& o) {
  const std::vector<DataFiles> found = data_sets_in(dir);
  if (found.size() > 1) {
    throw IoError(dir + ": holds the files of more than one data set: " + describe(found) +
                  "; keep one data set per folder (move the others out, or give each its own folder and name it "
                  "with --data)");
  }
  std::error_code ec;
  for (const auto& [have, missing] : {std::pair{"train", "val"}, {"val", "train"}})
    if (found.empty() && fs::is_directory(dir + "/" + have, ec) && !fs::is_directory(dir + "/" + missing, ec))
      throw IoError(dir + "/" + missing + ": missing; image folders (ImageNet) need train/<class>/ and val/<class>/ (" +
                    "`quantlab valprep` sorts a flat validation folder into val/)");
  const std::string format = found.empty() ? "IDX" : found.front().format;  // none: IDX names its missing file
  if (format != "image folders" &&
      (o.augment == ImageAugment::kTorchvision || o.augment == ImageAugment::kTorchvision2))
    throw ConfigError(
        "treat.data.augment: \"torchvision\" and \"torchvision2\" apply to image folders (ImageNet); "
        "the data in " +
        dir + " takes true or false");
  if (format == "image folders") return load_image_folders(dir, o);
  if (format == "IDX") return load_idx_problem(dir, o);
  const CifarVariant v = format == "CIFAR-10" ? CifarVariant::kCifar10 : CifarVariant::kCifar100;
  Preprocess pre;
  pre.mean = {0.4914f, 0.4822f, 0.4465f};  // CIFAR-10 channel statistics
  pre.std = {0.2470f, 0.2435f, 0.2616f};
  pre.pad = o.pad;
  pre.augment = o.augment != ImageAugment::kNone;
  ProblemData d = split_problem(read_cifar(dir, v, true), read_cifar(dir, v, false), pre, o);
  d.format = format;
  return d;
}

std::string find_data_dir(const std::string& home, const std::string& problem, const std::string& override_dir,
                          const std::string& storage_dir) {
  if (!override_dir.empty()) {
    if (!has_data(override_dir))
      throw IoError(override_dir +
                    ": no data files here (--data): expected train-images-idx3-ubyte[.gz] "
                    "(MNIST format), data_batch_1.bin (CIFAR-10), train.bin (CIFAR-100) or train/ and val/ "
                    "image folders (ImageNet)");
    return override_dir;
  }
  // A folder with any data file of its own is the user's: used as it is, and a file missing there
  // is an error naming it (never filled in from elsewhere).
  const std::string local = home + "/" + problem + "/data";
  if (has_any_data_file(local)) return local;
  // Before the first launch <home>/<Problem>/data is not linked yet: the user's copy is where the
  // link will point (the data root of cfg/hard_storage.json), and it wins over a packaged one.
  std::error_code ec;
  const bool unlinked = !fs::exists(fs::symlink_status(local, ec));
  if (unlinked && !storage_dir.empty() && has_any_data_file(storage_dir)) return storage_dir;
  const PackagedData* packaged = packaged_data(problem);
  if (packaged && has_data(packaged->dir)) return packaged->dir;
  const std::string hint = packaged
                               ? std::string(" or install the Debian package ") + packaged->package + " (make deps)"
                               : " (MNIST format: train-* and t10k-* images and labels; CIFAR: the binary "
                                 "version's .bin files; ImageNet: train/<wnid>/*.JPEG and val/<wnid>/*.JPEG)";
  const std::string also =
      unlinked && !storage_dir.empty() ? " (nor in " + storage_dir + ", the storage it will link to)" : std::string();
  throw IoError(local + ": no data files of " + problem + also + "; copy them there" + hint);
}

}  // namespace quantlab::data
