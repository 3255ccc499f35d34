// An exported network (`quantlab export`): integer layers with their thresholds, in a file the
// integer runtime (runtime/engine.h) reads without libtorch. docs/EXPORT.md describes the format
// and the arithmetic.
//   file: "QLMODEL1" | u32 header bytes | header (JSON) | blobs | u32 CRC-32 of everything before
// Every array (weights, thresholds, scales) is a blob the header locates by offset and size;
// ternary weights are packed 2 bits each (00: 0, 01: +1, 11: -1), other weights 1 byte each.
//
// The layers, in order, transform one image:
//   conv / linear   integer weights (levels / step) times integer activations (levels / step, or
//                   the image's pixels 0..255) summed in int32; or, on a normalised float image,
//                   the same in float (the header marks such a layer "float")
//   maxpool         on the accumulators (before batch norm, as the networks do)
//   threshold       batch norm and the ANA activation folded into K thresholds per channel on the
//                   accumulator: level index = #{k : A >= T[c][k]} (or A <= T[c][k] where the
//                   batch-norm scale is negative), output the integer level of that index
//   affine          a batch norm without an ANA activation after it: y[c] = scale[c] * A[c] + shift[c],
//                   in double; the last one gives the scores
//   flatten         channels, rows, columns, as the networks flatten
// and the float steps of networks with float parts (MobileNetV2's stem, expanding blocks and
// classifier; version 2 of the file, written only when a model has them):
//   conv / linear   with float weights (the header marks them "float_weights"), in double
//   clamp           a float activation (ReLU6: [0, 6])
//   avgpool         global average pooling of each channel
//   residual_begin  keeps the value of this point; residual_add adds it to the branch's output
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace quantlab::runtime {

enum class LayerKind {
  kConv,
  kLinear,
  kMaxPool,
  kThreshold,
  kAffine,
  kFlatten,
  kClamp,
  kGlobalAvgPool,
  kResidualBegin,
  kResidualAdd
};

const char* layer_kind_name(LayerKind k);

struct Layer {
  LayerKind kind = LayerKind::kLinear;
  std::string name;          // the network's module names it came from, e.g. "phi1_conv"
  bool float_input = false;  // conv/linear/threshold on floats (a normalised image): float arithmetic
  // conv (square kernels) and linear
  int64_t in = 0, out = 0, kernel = 1, stride = 1, pad = 0, groups = 1;
  std::vector<int8_t> weights;       // integer levels, [out][in / groups][kernel][kernel] or [out][in]
  double weight_step = 1.0;          // a weight is weight_step * its integer
  std::vector<float> float_weights;  // a float layer's weights (then `weights` is empty), same order
  // maxpool
  int64_t pool_kernel = 2, pool_stride = 2;
  // threshold: `channels` x `num_thresholds`, sorted for each channel in the direction it compares
  int64_t channels = 0, num_thresholds = 0;
  std::vector<int32_t> int_thresholds;   // integer input
  std::vector<double> float_thresholds;  // float input
  std::vector<uint8_t> below;            // per channel: 1 compares A <= T (negative batch-norm scale)
  std::vector<int8_t> levels;            // num_thresholds + 1 integer output levels, by index
  double level_step = 1.0;               // an output level is level_step * its integer
  // affine
  std::vector<double> scale, shift;
  // clamp
  double lo = 0.0, hi = 6.0;
  // Whether this is one of the float steps (version 2 of the file).
  bool is_float_step() const;
};

struct InputSpec {
  int64_t channels = 1, height = 28, width = 28;  // of the images as stored (before padding)
  int64_t pad = 0;                                // zero pixels around them
  std::vector<double> mean, std;                  // per channel on pixel / 255; empty: none
};

struct Model {
  std::string problem, net_class, source;  // source: "experiment 3, best.ckpt (after epoch 12)"
  InputSpec input;
  int64_t num_classes = 10;
  std::vector<Layer> layers;
};

// Writes `m`; throws std::runtime_error naming the file when it cannot.
void save_model(const std::string& file, const Model& m);
// Reads a model; throws std::runtime_error naming the file and what is wrong (not a model, a
// truncated or corrupt file, an unsupported version, inconsistent layers).
Model load_model(const std::string& file);
// Traces the shapes through the layers: throws IoError naming the first layer whose input does not
// fit it (channels, an image too small, integer where it takes float, ...) or a model that does not
// end with its scores.
void check_layer_shapes(const Model& m);

// Whether every weight of the layer is -1, 0 or +1 (stored packed).
bool is_ternary(const std::vector<int8_t>& w);

}  // namespace quantlab::runtime
