// The data of an image-classification problem: the sets to train, validate and test on, and which
// of their samples each phase uses.
//   IDX (MNIST, Fashion-MNIST) and CIFAR: one training file set split once into training and
//   validation (split.h), and the test files.
//   Image folders (ImageNet): train/ for training, val/ for both validation and test, as the
//   original.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quantlab/data/dataset.h"
#include "quantlab/data/image_transform.h"

namespace quantlab::data {

struct ProblemData {
  std::shared_ptr<const Dataset> train, valid, test;
  std::vector<int64_t> train_indices, valid_indices;  // into `train` and `valid`
  std::string format;                                 // "IDX", "CIFAR-10", "CIFAR-100", "image folders"
  bool report_top5 = false;                           // evaluations measure top-5 too (ImageNet's meter)
};

// treat.data of a config, parsed once (train/experiment.cpp) and read by the loaders and the trainer.
struct DataOptions {
  // Training augmentation: false -> kNone; true -> kOriginal (the problem's own, as the original:
  // crop and flip for IDX and CIFAR; crop, flip, colour jitter and lighting for image folders);
  // "torchvision" / "torchvision2" (image folders only).
  ImageAugment augment = ImageAugment::kNone;
  double valid_fraction = 0.1;  // IDX and CIFAR: the share of the training files kept for validation
  int64_t bs_train = 256;
  int64_t bs_valid = 64;
  int64_t pad = 0;             // IDX and CIFAR: zero pixels around each image (2: 28x28 to VGG's 32x32)
  uint64_t seed = 0;           // of the per-epoch shuffles and libtorch's generator
  uint64_t split_seed = 1234;  // of the train/validation split (the original's fixed 1234)
  int64_t crop = 224;          // image folders: side of the square training and validation crops
  int64_t workers = 0;         // threads building batches; 0: as many as the data set wants
  bool scaled_decode = false;  // image folders: decode JPEGs at a reduced DCT scale where possible
};

// MNIST-format problems (MNIST, Fashion-MNIST): train-* and t10k-* IDX files in `dir`.
ProblemData load_idx_problem(const std::string& dir, const DataOptions& o);

// Any problem whose files are in `dir`, by the files found: IDX (inputs in [0, 1], as the
// original's MNIST), CIFAR-10 or CIFAR-100 binary (normalised with the CIFAR-10 channel
// statistics, as the original), or train/ and val/ image folders (ImageNet). A folder with any CIFAR
// file is CIFAR: a file missing there is named (read_cifar), not taken for another format.
ProblemData load_problem(const std::string& dir, const DataOptions& o);

// Where the data files of `problem` are: `override_dir` when given, else `<home>/<problem>/data`,
// else, while that is not linked yet (before the first launch), `storage_dir` (where the link will
// point: <data root>/<problem>/data), else, for FashionMNIST, the Debian package's
// /usr/share/datasets/fashion-mnist. Throws IoError saying where it looked and how to get them.
std::string find_data_dir(const std::string& home, const std::string& problem, const std::string& override_dir,
                          const std::string& storage_dir = "");

}  // namespace quantlab::data
