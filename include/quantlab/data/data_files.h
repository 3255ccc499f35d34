// Which data set a folder holds, told by its files' names alone. No libtorch: training
// (data/problem.cpp) and the integer runtime's test images (runtime/images.cpp) read folders the
// same way.
#pragma once

#include <string>
#include <vector>

namespace quantlab::data {

enum class CifarVariant { kCifar10, kCifar100 };

// The first IDX images file in `dir` (train- or t10k-images-idx3-ubyte, optionally .gz), "" when none.
std::string idx_file_in(const std::string& dir);

// A file of the variant in `dir` (test_batch.bin or data_batch_*.bin for CIFAR-10, train.bin or
// test.bin for CIFAR-100), "" when it holds none; one is enough to read the folder as that variant,
// and the readers name a missing one.
std::string cifar_file_in(const std::string& dir, CifarVariant v);

// A data set found in a folder, with the file (or folders) that show it.
struct DataFiles {
  std::string format;  // "IDX", "CIFAR-10", "CIFAR-100" or "image folders"
  std::string file;
};

// Every data set whose files are in `dir`. More than one is a folder no reader takes without
// guessing (a stray test.bin beside Fashion-MNIST's files was once read as CIFAR-100).
std::vector<DataFiles> data_sets_in(const std::string& dir);

// data_sets_in's formats, joined for a message: "IDX (train-images-idx3-ubyte), CIFAR-100 (test.bin)".
std::string describe(const std::vector<DataFiles>& found);

}  // namespace quantlab::data
