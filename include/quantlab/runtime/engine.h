// The integer runtime: runs an exported model (runtime/model.h) on images, without libtorch.
// Quantized layers multiply 8-bit integers (activation levels, or the image's pixels, times weight
// levels) and sum in 32-bit integers; batch norm and activation are integer comparisons with the
// folded thresholds; only a layer the file marks float (a first layer on a normalised image) and
// the last affine (the scores) use floating point.
//   Engine e(load_model("m.qlm"));  int64_t label = e.predict(pixels);   // pixels: uint8 [C][H][W]
#pragma once

#include <cstdint>
#include <vector>

#include "quantlab/runtime/images.h"
#include "quantlab/runtime/model.h"

namespace quantlab::runtime {

class Engine {
 public:
  // Checks that the layers fit together (shapes, kinds) for the model's input; throws IoError.
  explicit Engine(Model model);

  const Model& model() const { return model_; }
  // Pixels of one image as stored (channels x height x width, before padding).
  int64_t image_size() const { return model_.input.channels * model_.input.height * model_.input.width; }

  // What a threshold layer saw and gave, for diagnostics (export/parity.h).
  struct Trace {
    std::vector<std::vector<int32_t>> accumulators;  // per threshold layer (integer input)
    std::vector<std::vector<double>> float_inputs;   // per threshold layer (float input)
    std::vector<std::vector<int8_t>> levels;         // per threshold layer: its output levels
  };

  // The scores of one image; `trace` (optional) records every threshold layer.
  std::vector<double> scores(const uint8_t* image, Trace* trace = nullptr) const;
  // The scores of `n` images stored one after the other (the linear layers read each weight row
  // once for all of them).
  std::vector<std::vector<double>> scores_batch(const uint8_t* images, int64_t n, Trace* trace = nullptr) const;
  // The predicted class: the first highest score, as torch.argmax.
  int64_t predict(const uint8_t* image) const;
  // Labels of `n` images stored one after the other, on `threads` threads (0: all).
  std::vector<int64_t> predict_all(const uint8_t* images, int64_t n, int threads = 0) const;

 private:
  Model model_;
  std::vector<std::vector<int32_t>> row_sums_;       // per layer: each weight row's sum
  std::vector<std::vector<int8_t>> padded_weights_;  // linear layers: rows padded to 64 bytes
};

// Labels and accuracy of a model on a set of images, timed.
struct Evaluation {
  int64_t images = 0, correct = 0;
  double seconds = 0.0;
  int threads = 1;
  std::vector<int64_t> labels;  // predicted, per image
  double accuracy() const { return images ? 100.0 * static_cast<double>(correct) / static_cast<double>(images) : 0.0; }
  double images_per_second() const { return seconds > 0 ? static_cast<double>(images) / seconds : 0.0; }
};

// Throws IoError when there are no images, when they are not of the model's input shape (naming
// both), or when a label is not one of the model's classes (naming the image).
Evaluation evaluate(const Engine& engine, const Images& images, int threads = 0);

}  // namespace quantlab::runtime
