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
  Preprocess pre;
};

// MNIST-format problems (MNIST, Fashion-MNIST): train-* and t10k-* IDX files in `dir`.
ProblemData load_idx_problem(const std::string& dir, double valid_fraction, uint64_t seed);

// Any problem whose files are in `dir`, by the files found: IDX (inputs in [0, 1], as the
// original's MNIST), CIFAR-10 or CIFAR-100 binary (normalised with the CIFAR-10 channel
// statistics, as the original). `pad` zero pixels are added around every image.
ProblemData load_problem(const std::string& dir, double valid_fraction, uint64_t seed, int64_t pad = 0);

}  // namespace quantlab::data

namespace quantlab::data {

// Where the data files of `problem` are (IDX or CIFAR): `override_dir` when given, else
// `<home>/<problem>/data`, else, for FashionMNIST, the Debian package's
// /usr/share/datasets/fashion-mnist. Throws IoError saying where it looked and how to get them.
std::string find_data_dir(const std::string& home, const std::string& problem,
                              const std::string& override_dir);

}  // namespace quantlab::data
