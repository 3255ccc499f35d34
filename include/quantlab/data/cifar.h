// The binary versions of CIFAR-10 and CIFAR-100, read into memory.
//   CIFAR-10:  data_batch_1.bin .. data_batch_5.bin (training), test_batch.bin; records of
//              1 label byte + 3072 pixel bytes (32x32 red, then green, then blue)
//   CIFAR-100: train.bin, test.bin; records of 2 label bytes (coarse, fine) + 3072; the fine
//              label is used
// images: uint8 [N, 3, 32, 32]    labels: int64 [N]
#pragma once

#include <string>

#include "quantlab/data/data_files.h"  // CifarVariant, cifar_file_in
#include "quantlab/data/idx.h"

namespace quantlab::data {

// Reads the training or test files. A missing file, or one whose size is not a whole number of
// records, throws IoError saying which file, what was expected, and where the files come from.
ImageSet read_cifar(const std::string& dir, CifarVariant v, bool train);

}  // namespace quantlab::data
