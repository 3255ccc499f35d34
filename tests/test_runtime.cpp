// The integer runtime on its own (no training, no export): its dot-product kernels against plain
// sums, and its model file (round trip, damage, hand-made numbers it must refuse). The export that
// writes such files: test_export.cpp.
#include <gtest/gtest.h>

#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "quantlab/runtime/engine.h"
#include "quantlab/runtime/int8_kernels.h"
#include "quantlab/runtime/model.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::TempDir;

// The runtime's kernels against plain sums: the blocked layout (fast path and reference), and the
// dot products, on sizes that are not multiples of the blocks.
TEST(Runtime, KernelsComputeTheDotProducts) {
  using namespace runtime::kernels;
  const int64_t out = 37, row = 301, in4 = (row + 3) / 4, out16 = (out + kLanes - 1) / kLanes;
  std::vector<int8_t> w(out * row);
  std::vector<uint8_t> x(kImages * in4 * 4, 0);
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>(static_cast<int>(i * 7919 % 255) - 127);
  for (int64_t b = 0; b < kImages; ++b)
    for (int64_t i = 0; i < row; ++i) x[b * in4 * 4 + i] = static_cast<uint8_t>((b * 131 + i * 17) % 256);
  const std::vector<int8_t> blocked = block_weights(w.data(), out, row);
  std::vector<int32_t> fast(kImages * out16 * kLanes), reference(fast.size());
  const uint8_t* xp[kImages];
  int32_t *fp[kImages], *rp[kImages];
  for (int64_t b = 0; b < kImages; ++b) {
    xp[b] = x.data() + b * in4 * 4;
    fp[b] = fast.data() + b * out16 * kLanes;
    rp[b] = reference.data() + b * out16 * kLanes;
  }
  blocked_products(blocked.data(), in4, out16, xp, fp);
  blocked_products_reference(blocked.data(), in4, out16, xp, rp);
  for (int64_t b = 0; b < kImages; ++b)
    for (int64_t o = 0; o < out; ++o) {
      int32_t sum = 0;
      for (int64_t i = 0; i < row; ++i) sum += static_cast<int32_t>(xp[b][i]) * w[o * row + i];
      ASSERT_EQ(reference[b * out16 * kLanes + o], sum) << b << " " << o;
      ASSERT_EQ(fast[b * out16 * kLanes + o], sum) << b << " " << o;
      ASSERT_EQ(dot_u8(xp[b], w.data() + o * row, row), sum) << b << " " << o;
    }
}

// A 1x2x2-input, 2-class model: flatten, a ternary linear layer, its scores.
runtime::Model tiny_model() {
  runtime::Model m;
  m.problem = "Toy", m.net_class = "Tiny", m.source = "test";
  m.input = {1, 2, 2, 0, {}, {}};
  m.num_classes = 2;
  runtime::Layer flat;
  flat.kind = runtime::LayerKind::kFlatten;
  runtime::Layer fc;
  fc.kind = runtime::LayerKind::kLinear;
  fc.name = "phi1_fc", fc.in = 4, fc.out = 2, fc.weights = {1, -1, 0, 1, -1, -1, 1, 0};
  runtime::Layer affine;
  affine.kind = runtime::LayerKind::kAffine;
  affine.name = "phi1_bn", affine.channels = 2, affine.scale = {0.5, -0.25}, affine.shift = {1.0, 2.0};
  m.layers = {flat, fc, affine};
  return m;
}

TEST(Export, ModelFileRoundTripAndDamage) {
  runtime::Model m = tiny_model();
  TempDir dir;
  const std::string file = dir.path() + "/m.qlm";
  runtime::save_model(file, m);
  const runtime::Model back = runtime::load_model(file);
  EXPECT_EQ(back.layers[1].weights, m.layers[1].weights);  // packed 2 bits each and unpacked
  EXPECT_EQ(back.layers[2].scale, m.layers[2].scale);
  const runtime::Engine e(back);
  const uint8_t pixels[4] = {10, 20, 30, 40};
  // scores: 0.5 * (10 - 20 + 40) + 1 = 16, -0.25 * (-10 - 20 + 30) + 2 = 2
  const auto s = e.scores(pixels);
  EXPECT_DOUBLE_EQ(s[0], 16.0);
  EXPECT_DOUBLE_EQ(s[1], 2.0);
  std::string bytes = testing::slurp(file);
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(dir.path() + "/bad.qlm", std::ios::binary) << bytes;
  try {
    runtime::load_model(dir.path() + "/bad.qlm");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("bad.qlm: checksum mismatch"), std::string::npos) << e.what();
  }
  std::ofstream(dir.path() + "/short.qlm", std::ios::binary) << testing::slurp(file).substr(0, 30);
  EXPECT_THROW(runtime::load_model(dir.path() + "/short.qlm"), IoError);
  std::ofstream(dir.path() + "/text.qlm") << "hello";
  try {
    runtime::load_model(dir.path() + "/text.qlm");
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("not a QuantLab model"), std::string::npos) << e.what();
  }
  // A damaged or hand-made file's numbers that would make the runtime read or write outside its
  // buffers (its checksum is right: whoever made it computed one) are refused with an IoError.
  const auto refused = [&](const runtime::Model& bad, const std::string& why) {
    runtime::save_model(dir.path() + "/crafted.qlm", bad);
    try {
      const runtime::Engine engine(runtime::load_model(dir.path() + "/crafted.qlm"));
      ADD_FAILURE() << "accepted; expected: " << why;
    } catch (const IoError& err) {
      EXPECT_NE(std::string(err.what()).find(why), std::string::npos) << err.what();
    }
  };
  runtime::Model pad = m;
  pad.input.pad = -30;
  refused(pad, "an impossible input");
  runtime::Model mean = m;
  mean.input.mean = {0.5};
  refused(mean, "the input's mean and std have 1 and 0 values for 1 channels");
  runtime::Model kernel = m;
  kernel.layers[1].kernel = 2;
  refused(kernel, "a linear layer with a kernel");
  runtime::Model pool;  // a 4x4 pooling (stride 2) over a 3x3 image: (3 - 4) / 2 + 1 was 1
  pool.problem = "Toy", pool.net_class = "Pool", pool.num_classes = 1;
  pool.input = {1, 3, 3, 0, {0.0}, {1.0}};
  runtime::Layer maxpool;
  maxpool.kind = runtime::LayerKind::kMaxPool, maxpool.name = "pool", maxpool.float_input = true;
  maxpool.pool_kernel = 4, maxpool.pool_stride = 2;
  runtime::Layer one;
  one.kind = runtime::LayerKind::kAffine, one.name = "scores", one.channels = 1, one.scale = {1.0}, one.shift = {0.0};
  pool.layers = {maxpool, m.layers[0], one};  // m's flatten
  refused(pool, "too small for this pooling");
  runtime::Model step = m;
  step.layers[1].weight_step = 0;  // every product would be 0
  refused(step, "a weight step of 0");
}

// The model file's header rewritten by `edit`, with a right checksum (a hand-made file).
std::string with_header(const std::string& bytes, const std::function<void(nlohmann::json&)>& edit) {
  uint32_t head = 0;
  std::memcpy(&head, bytes.data() + 8, 4);
  nlohmann::json h = nlohmann::json::parse(bytes.substr(12, head));
  edit(h);
  const std::string text = h.dump();
  const auto size = static_cast<uint32_t>(text.size());
  std::string out = bytes.substr(0, 8) + std::string(reinterpret_cast<const char*>(&size), 4) + text +
                    bytes.substr(12 + head, bytes.size() - 12 - head - 4);
  const auto crc =
      static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(out.data()), static_cast<uInt>(out.size())));
  return out + std::string(reinterpret_cast<const char*>(&crc), 4);
}

// What is not a model file is named for what it is: a folder, a truncated file (a start of the
// magic number), a blob located by a number that is no byte count (0.5 or 1e308 were cast to some
// size and read), a level step of 0.
TEST(Runtime, AModelFileIsRefusedForWhatItIs) {
  TempDir dir;
  const std::string file = dir.path() + "/m.qlm";
  runtime::save_model(file, tiny_model());
  const std::string bytes = testing::slurp(file);
  const auto error = [&](const std::string& path) {
    try {
      runtime::load_model(path);
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(dir.path()), dir.path() + ": a folder; expected a model file (.qlm, written by `quantlab export`)");
  for (const size_t cut : {4, 8, 12}) {
    std::ofstream(file, std::ios::binary | std::ios::trunc) << bytes.substr(0, cut);
    EXPECT_EQ(error(file), file + ": truncated (" + std::to_string(cut) + " bytes)");
  }
  for (const nlohmann::json& offset : {nlohmann::json(0.5), nlohmann::json(1e308), nlohmann::json(-1)}) {
    std::ofstream(file, std::ios::binary | std::ios::trunc)
        << with_header(bytes, [&](nlohmann::json& h) { h["layers"][1]["weights"]["offset"] = offset; });
    EXPECT_EQ(error(file), file + ": a blob's offset is " + offset.dump() + ", not a count");
  }
  std::ofstream(file, std::ios::binary | std::ios::trunc) << with_header(bytes, [](nlohmann::json&) {});
  EXPECT_EQ(error(file), "");  // the rewriting itself keeps a good file good
}

// The runtime itself refuses an empty test set and labels that are not the model's classes, so
// that quantlab-infer and `quantlab infer` refuse the same sets (the standalone tool used to print
// "0.00% (0 of 0 images)" or an accuracy against labels the model cannot give).
TEST(Runtime, EvaluateRefusesAnEmptySetAndLabelsThatAreNotClasses) {
  const runtime::Engine engine(tiny_model());
  runtime::Images images;
  images.height = images.width = 2, images.format = "IDX", images.dir = "/some/data";
  const auto error = [&] {
    try {
      runtime::evaluate(engine, images, 1);
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(), "/some/data: the test set has no images; there is nothing to measure");
  images.count = 2, images.pixels = {10, 20, 30, 40, 1, 2, 3, 4}, images.labels = {0, 2};
  EXPECT_EQ(error(),
            "/some/data: label 2 of test image 1 is not a class of this model (0..1); the wrong test set, or a "
            "corrupt label file");
  images.labels = {0, 1};
  EXPECT_EQ(error(), "");
}

// A CIFAR-10 folder without its test file is named as such (it used to be taken for an IDX folder
// and asked for t10k-images-idx3-ubyte).
TEST(Runtime, ACifarFolderWithoutItsTestFileNamesIt) {
  TempDir dir;
  testing::write_cifar_file(dir.path() + "/data_batch_1.bin", 2, 1, 10);
  try {
    runtime::read_test_images(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path() + "/test_batch.bin: missing; expected the test file of CIFAR-10"),
              std::string::npos)
        << e.what();
  }
  testing::write_cifar_file(dir.path() + "/test_batch.bin", 3, 1, 10);
  const runtime::Images im = runtime::read_test_images(dir.path());
  EXPECT_EQ(im.format, "CIFAR-10");
  EXPECT_EQ(im.count, 3);
}

// Image folders are named as what the runtime does not read (it asked for an IDX file).
TEST(Runtime, ImageFoldersAreNamedAsNotReadHere) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/train/a");
  std::filesystem::create_directories(dir.path() + "/val/a");
  try {
    runtime::read_test_images(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path() + ": holds image folders (train/ and val/)"), std::string::npos)
        << e.what();
  }
}

// A folder with two data sets' files is refused by quantlab-infer as by training, naming both.
TEST(Runtime, AFolderWithTwoDataSetsNamesBoth) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 4, 3, 2, false);
  EXPECT_EQ(runtime::read_test_images(dir.path()).format, "IDX");
  testing::write_cifar_file(dir.path() + "/test.bin", 2, 2, 100);
  try {
    runtime::read_test_images(dir.path());
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(dir.path() + ": holds the files of more than one data set: IDX "
                                                      "(train-images-idx3-ubyte), CIFAR-100 (test.bin)"),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace quantlab
