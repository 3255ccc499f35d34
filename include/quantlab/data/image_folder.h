// Image-folder data sets (ImageNet's layout): <dir>/<class>/<image>, classes indexed by their
// sorted folder names, images (.jpeg, .jpg, .png, any case) sorted by name within a class.
// Samples are decoded and transformed (image_transform.h) when a batch is built, on the loader's
// worker threads. An unreadable image is reported once on stderr (path and reason) and left out
// of its batch; the epoch goes on.
#pragma once

#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "quantlab/data/dataset.h"
#include "quantlab/data/image_transform.h"

namespace quantlab::data {

struct ImageFolderIndex {
  std::vector<std::string> classes;  // sorted folder names
  std::vector<std::string> files;    // full paths
  std::vector<int64_t> labels;       // index into classes
};

// Scans `dir`. With `classes` given (the training set's), every folder must be one of them and
// labels follow that list. Throws IoError naming the folder when it has no class folders, a class
// folder has no images, or a folder is not a known class.
ImageFolderIndex scan_image_folder(const std::string& dir, const std::vector<std::string>* classes = nullptr);

struct ImageFolderOptions {
  int64_t crop = 224;
  ImageAugment train_augment = ImageAugment::kOriginal;  // kNone: training uses the validation transform
  // Decode JPEGs at a reduced DCT scale when the crop allows it. Off by default: it changes pixels
  // slightly and gained nothing measurable at ImageNet's usual sizes (docs/PERFORMANCE.md); it pays
  // for large photographs.
  bool scaled_decode = false;
};

class ImageFolderDataset : public Dataset {
 public:
  ImageFolderDataset(ImageFolderIndex index, ImageFolderOptions options);
  int64_t size() const override { return static_cast<int64_t>(index_.files.size()); }
  int default_workers(int cores) const override { return cores; }  // decoding wants every core
  Batch make_batch(const int64_t* indices, int64_t count, int64_t first, const SampleContext& ctx) const override;
  torch::Tensor labels() const override { return torch::tensor(index_.labels, torch::kLong); }
  std::string source(int64_t i) const override { return index_.files.at(static_cast<size_t>(i)); }
  const ImageFolderIndex& index() const { return index_; }
  // Files found unreadable so far (each reported once).
  std::vector<std::string> skipped() const;

 private:
  ImageFolderIndex index_;
  ImageFolderOptions options_;
  mutable std::mutex bad_mutex_;
  mutable std::set<std::string> bad_;
};

// The generator of one sample's random draws: a function of (seed, epoch, position) only.
std::mt19937_64 sample_rng(uint64_t seed, int64_t epoch, int64_t position);

}  // namespace quantlab::data
