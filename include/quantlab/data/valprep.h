// Sorting ImageNet's flat validation folder (ILSVRC2012_val_00000001.JPEG, ...) into the
// <wnid>/<image> layout the image-folder loader reads, as the original's valprep.sh did.
// The label file may be any of
//   - lines "<image> <wnid>" (space, tab or comma separated; the image with or without .JPEG),
//   - Kaggle's LOC_val_solution.csv ("ImageId,PredictionString", the wnid first in the string),
//   - valprep.sh itself (its "mkdir -p <wnid>" and "mv <image> <wnid>/" lines).
// Everything is checked before anything moves: a listed image that is missing, a destination that
// already exists, or an unreadable line stops it with a message naming them. An image already at
// its destination and gone from the folder counts as moved, so an interrupted run can be repeated.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantlab::data {

struct ValprepReport {
  int64_t moved = 0;
  int64_t already_there = 0;  // listed images found at their destination (an earlier run moved them)
  int64_t classes = 0;
  std::vector<std::string> unlisted;  // images in the folder that the label file does not name
};

// Moves the images of `images_dir` into `out_dir/<wnid>/` (out_dir may be images_dir itself).
ValprepReport sort_validation_images(const std::string& images_dir, const std::string& label_file,
                                     const std::string& out_dir);

// What a run did, in lines for the user.
std::string valprep_report(const ValprepReport& r, const std::string& images_dir, const std::string& out_dir);

}  // namespace quantlab::data
