// Loading MNIST-format problems.
#include "quantlab/data/problem.h"

namespace quantlab::data {

ProblemData load_idx_problem(const std::string& dir, double valid_fraction, uint64_t seed) {
  ProblemData d;
  d.trainval = read_idx_pair(dir, "train");
  d.test = read_idx_pair(dir, "t10k");
  d.split = split_indices(d.trainval.size(), valid_fraction, seed);
  return d;  // inputs in [0, 1], as the original's MNIST preprocessing (mean 0, std 1)
}

}  // namespace quantlab::data

#include <filesystem>

#include "quantlab/util/error.h"

namespace quantlab::data {
namespace {

bool has_idx(const std::string& dir) {
  namespace fs = std::filesystem;
  const std::string f = dir + "/train-images-idx3-ubyte";
  return fs::exists(f) || fs::exists(f + ".gz");
}

}  // namespace

std::string find_idx_data_dir(const std::string& home, const std::string& problem,
                              const std::string& override_dir) {
  if (!override_dir.empty()) {
    if (!has_idx(override_dir))
      throw IoError(override_dir + ": no train-images-idx3-ubyte[.gz] here (--data)");
    return override_dir;
  }
  const std::string local = home + "/" + problem + "/data";
  if (has_idx(local)) return local;
  const std::string debian = "/usr/share/datasets/fashion-mnist";
  if (problem == "FashionMNIST" && has_idx(debian)) return debian;
  std::string hint = problem == "FashionMNIST"
                         ? " or install the Debian package dataset-fashion-mnist (make deps)"
                         : " (train-* and t10k-* images and labels, as published)";
  throw IoError(local + ": no IDX files of " + problem + "; copy them there" + hint);
}

}  // namespace quantlab::data
