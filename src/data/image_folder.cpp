// Image folders: scanning, and batches decoded on the caller's thread.
#include "quantlab/data/image_folder.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <iostream>

namespace quantlab::data {
namespace fs = std::filesystem;
namespace {

std::string lower_extension(const fs::path& p) {
  std::string ext = p.extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

bool is_image_name(const fs::path& p) {
  const std::string ext = lower_extension(p);
  return ext == ".jpeg" || ext == ".jpg" || ext == ".png";
}

// The other images torchvision's ImageFolder takes, which QuantLab does not decode: left out with a
// warning, not silently (the data set would be smaller than the original's).
bool is_other_image_name(const fs::path& p) {
  const std::string ext = lower_extension(p);
  return ext == ".bmp" || ext == ".tif" || ext == ".tiff" || ext == ".webp" || ext == ".ppm" || ext == ".pgm";
}

// What `e` is, its links followed. A link that leads nowhere is an error naming it, as a file that
// cannot be opened is (skipping a dangling class folder, or an image on a file system not mounted,
// would silently change the data set; a loop of links stopped the scan with a bare library error).
fs::file_type followed_type(const fs::directory_entry& e) {
  std::error_code ec, link_ec;
  const fs::file_status s = fs::status(e.path(), ec);
  if (s.type() == fs::file_type::not_found && fs::is_symlink(fs::symlink_status(e.path(), link_ec)))
    throw IoError(e.path().string() + ": a link to " + fs::read_symlink(e.path(), link_ec).string() +
                  ", which does not exist (a file system that is not mounted?)");
  if (ec && s.type() != fs::file_type::not_found) throw IoError(e.path().string() + ": " + ec.message());
  return s.type();
}

}  // namespace

std::mt19937_64 sample_rng(uint64_t seed, int64_t epoch, int64_t position) {
  std::seed_seq seq{static_cast<uint32_t>(seed),           static_cast<uint32_t>(seed >> 32),
                    static_cast<uint32_t>(epoch),          static_cast<uint32_t>(position),
                    static_cast<uint32_t>(position >> 32), 0x1a9eu};
  return std::mt19937_64(seq);
}

ImageFolderIndex scan_image_folder(const std::string& dir, const std::vector<std::string>* classes) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw IoError(dir + ": no such folder");
  std::vector<std::string> found;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (followed_type(e) == fs::file_type::directory) found.push_back(e.path().filename().string());
  if (ec) throw IoError(dir + ": cannot list the folder (" + ec.message() + ")");
  std::sort(found.begin(), found.end());
  if (found.empty())
    throw IoError(dir +
                  ": no class folders (expected <class>/<image>.JPEG, e.g. n01440764/...; "
                  "`quantlab valprep` sorts a flat validation folder into this layout)");
  ImageFolderIndex idx;
  idx.classes = classes ? *classes : found;
  std::vector<std::string> others;
  for (const auto& name : found) {
    const auto it = std::lower_bound(idx.classes.begin(), idx.classes.end(), name);
    if (it == idx.classes.end() || *it != name)
      throw IoError(dir + "/" + name + ": not a class of the training set (train/ has " +
                    std::to_string(idx.classes.size()) + " class folders)");
    const auto label = static_cast<int64_t>(it - idx.classes.begin());
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(fs::path(dir) / name, ec))
      if (is_image_name(e.path()) && followed_type(e) == fs::file_type::regular)
        files.push_back(e.path().string());
      else if (is_other_image_name(e.path()))
        others.push_back(e.path().string());
    if (ec) throw IoError(dir + "/" + name + ": cannot list the folder (" + ec.message() + ")");
    if (files.empty()) throw IoError(dir + "/" + name + ": no images (.JPEG, .jpg or .png)");
    std::sort(files.begin(), files.end());
    for (auto& f : files) {
      idx.files.push_back(std::move(f));
      idx.labels.push_back(label);
    }
  }
  if (!others.empty())
    std::cerr << "warning: " << dir << ": " << others.size()
              << " images in formats QuantLab does not decode (BMP, TIFF, WebP, PPM/PGM; e.g. " << others.front()
              << ") are left out; convert them to JPEG or PNG to train on them" << std::endl;
  return idx;
}

ImageFolderDataset::ImageFolderDataset(ImageFolderIndex index, ImageFolderOptions options)
    : index_(std::move(index)), options_(options) {}

std::vector<std::string> ImageFolderDataset::skipped() const {
  std::lock_guard<std::mutex> lock(bad_mutex_);
  return {bad_.begin(), bad_.end()};
}

Batch ImageFolderDataset::make_batch(const int64_t* indices, int64_t count, int64_t first,
                                     const SampleContext& ctx) const {
  const int64_t S = options_.crop;
  const ImageAugment kind = ctx.train ? options_.train_augment : ImageAugment::kNone;
  auto inputs = torch::empty({count, 3, S, S}, torch::kFloat32);
  auto labels = torch::empty({count}, torch::kLong);
  float* out = inputs.data_ptr<float>();
  int64_t* lab = labels.data_ptr<int64_t>();
  int64_t kept = 0;
  for (int64_t k = 0; k < count; ++k) {
    const auto i = static_cast<size_t>(indices[k]);
    const std::string& path = index_.files.at(i);
    {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (bad_.count(path)) continue;
    }
    try {
      thread_local std::string bytes;  // a worker's buffers, reused from image to image
      thread_local RgbImage img;
      std::mt19937_64 rng = sample_rng(ctx.seed, ctx.epoch, first + k);
      read_file_bytes(path, bytes);
      const CropPlan plan = plan_crop(image_size(bytes), S, kind, rng);
      decode_image(bytes, options_.scaled_decode ? min_decode_scale(plan, S) : 1.0, img);
      render_crop(img, plan, S, kind, rng, out + kept * 3 * S * S);
      lab[kept++] = index_.labels[i];
    } catch (const DecodeError& e) {
      std::lock_guard<std::mutex> lock(bad_mutex_);
      if (bad_.insert(path).second) std::cerr << "warning: skipping " << path << ": " << e.what() << std::endl;
    }
  }
  if (kept < count) {
    inputs = inputs.narrow(0, 0, kept).clone();
    labels = labels.narrow(0, 0, kept).clone();
  }
  return {inputs, labels};
}

}  // namespace quantlab::data
