// The data of an image-classification problem: training+validation set, split once, and test set.
#pragma once

#include <string>

#include "quantlab/data/batch_loader.h"
#include "quantlab/data/idx.h"
#include "quantlab/data/split.h"

namespace quantlab::data {

struct ProblemData {
  ImageSet trainval, test;
  Split split;
  Normalization norm;
};

// MNIST-format problems (MNIST, Fashion-MNIST): train-* and t10k-* IDX files in `dir`.
ProblemData load_idx_problem(const std::string& dir, double valid_fraction, uint64_t seed);

}  // namespace quantlab::data

namespace quantlab::data {

// Where the IDX files of `problem` are: `override_dir` when given, else `<home>/<problem>/data`,
// else, for FashionMNIST, the Debian package's /usr/share/datasets/fashion-mnist. Throws IoError
// saying where the files were looked for and how to get them.
std::string find_idx_data_dir(const std::string& home, const std::string& problem,
                              const std::string& override_dir);

}  // namespace quantlab::data
