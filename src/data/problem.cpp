// Loading MNIST-format problems.
#include "quantlab/data/problem.h"

#include "quantlab/data/cifar.h"

namespace quantlab::data {

ProblemData load_idx_problem(const std::string& dir, double valid_fraction, uint64_t seed) {
  ProblemData d;
  d.trainval = read_idx_pair(dir, "train");
  d.test = read_idx_pair(dir, "t10k");
  d.split = split_indices(d.trainval.size(), valid_fraction, seed);
  return d;  // inputs in [0, 1], as the original's MNIST preprocessing (mean 0, std 1)
}

ProblemData load_problem(const std::string& dir, double valid_fraction, uint64_t seed, int64_t pad) {
  ProblemData d;
  for (CifarVariant v : {CifarVariant::kCifar10, CifarVariant::kCifar100}) {
    if (!has_cifar(dir, v)) continue;
    d.trainval = read_cifar(dir, v, true);
    d.test = read_cifar(dir, v, false);
    d.split = split_indices(d.trainval.size(), valid_fraction, seed);
    d.pre.mean = {0.4914f, 0.4822f, 0.4465f};  // CIFAR-10 channel statistics
    d.pre.std = {0.2470f, 0.2435f, 0.2616f};
    d.pre.pad = pad;
    return d;
  }
  d = load_idx_problem(dir, valid_fraction, seed);
  d.pre.pad = pad;
  return d;
}

}  // namespace quantlab::data

#include <filesystem>

#include "quantlab/util/error.h"

namespace quantlab::data {
namespace {

bool has_data(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string f = dir + "/train-images-idx3-ubyte";
  return fs::exists(f) || fs::exists(f + ".gz") || has_cifar(dir, CifarVariant::kCifar10) ||
         has_cifar(dir, CifarVariant::kCifar100);
}

}  // namespace

std::string find_data_dir(const std::string& home, const std::string& problem,
                              const std::string& override_dir) {
  if (!override_dir.empty()) {
    if (!has_data(override_dir))
      throw IoError(override_dir + ": no data files here (--data): expected train-images-idx3-ubyte[.gz] "
                    "(MNIST format) or data_batch_1.bin (CIFAR-10) or train.bin (CIFAR-100)");
    return override_dir;
  }
  const std::string local = home + "/" + problem + "/data";
  if (has_data(local)) return local;
  const std::string debian = "/usr/share/datasets/fashion-mnist";
  if (problem == "FashionMNIST" && has_data(debian)) return debian;
  std::string hint = problem == "FashionMNIST"
                         ? " or install the Debian package dataset-fashion-mnist (make deps)"
                         : " (MNIST format: train-* and t10k-* images and labels; CIFAR: the binary version's .bin files)";
  throw IoError(local + ": no data files of " + problem + "; copy them there" + hint);
}

}  // namespace quantlab::data
