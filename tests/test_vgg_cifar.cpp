// VGG topologies and the CIFAR binary reader on files written in the real format.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "quantlab/data/augment.h"
#include "quantlab/data/cifar.h"
#include "quantlab/data/batch_loader.h"
#include "quantlab/data/problem.h"
#include "quantlab/topology/layer_maker.h"
#include "quantlab/topology/step_network.h"
#include "quantlab/topology/vgg.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::TempDir;

int64_t count_parameters(torch::nn::Module& net) {
  int64_t n = 0;
  for (const auto& p : net.parameters()) n += p.numel();
  return n;
}

TEST(Cifar, ReadsTheBinaryFormat) {
  TempDir dir;
  testing::write_cifar10(dir.path(), 7);
  const auto train = data::read_cifar(dir.path(), data::CifarVariant::kCifar10, true);
  EXPECT_EQ(train.images.sizes(), (std::vector<int64_t>{35, 3, 32, 32}));
  EXPECT_EQ(train.labels[3].item<int64_t>(), 3);
  EXPECT_EQ(train.images[3][2][5][7].item<uint8_t>(), 5);  // image 3, blue plane = 3 + 2
  const auto test = data::read_cifar(dir.path(), data::CifarVariant::kCifar10, false);
  EXPECT_EQ(test.size(), 7);
  testing::write_cifar_file(dir.path() + "/train.bin", 4, 2, 100);
  testing::write_cifar_file(dir.path() + "/test.bin", 3, 2, 100);
  const auto c100 = data::read_cifar(dir.path(), data::CifarVariant::kCifar100, true);
  EXPECT_EQ(c100.labels[2].item<int64_t>(), 2);  // the fine label
  // One data set per folder (two are refused: Problem.AFolderWithTwoDataSetsNamesBoth).
  std::filesystem::remove(dir.path() + "/train.bin");
  std::filesystem::remove(dir.path() + "/test.bin");
  data::DataOptions o;
  o.valid_fraction = 0.2;
  const auto d = data::load_problem(dir.path(), o);
  EXPECT_EQ(d.format, "CIFAR-10");
  EXPECT_EQ(d.train->size(), 35);
  EXPECT_EQ(d.train_indices.size(), 28u);
  const auto b = d.test->make_batch(std::vector<int64_t>{0, 1}.data(), 2, 0, {});
  EXPECT_LT(b.inputs.min().item<float>(), 0.0f);  // normalised with the channel statistics
}

TEST(Cifar, MissingAndTruncatedFilesSayWhatWasExpected) {
  TempDir dir;
  testing::write_cifar10(dir.path(), 3);
  std::filesystem::remove(dir.path() + "/test_batch.bin");
  try {
    data::read_cifar(dir.path(), data::CifarVariant::kCifar10, false);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("test_batch.bin: missing; expected the CIFAR-10 binary version"),
              std::string::npos)
        << e.what();
  }
  std::filesystem::resize_file(dir.path() + "/data_batch_2.bin", 3 * 3073 - 100);
  try {
    data::read_cifar(dir.path(), data::CifarVariant::kCifar10, true);
    FAIL();
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("data_batch_2.bin: 9119 bytes, not a whole number of 3073-byte records"),
              std::string::npos)
        << e.what();
  }
}

// docs/ARCHITECTURE.md's example topology, as written there: one description gives the modules,
// the forward pass, the names quant_schemes must give, and the steps the export reads.
Steps tiny_steps(int64_t width, int64_t classes) {
  using namespace step;
  return {conv("phi1_conv", 3, width, 3, 1, 1),
          max_pool(2, 2),
          bn2d("phi1_bn", width),
          act("phi1_act"),
          flatten(),
          linear("phi2_fc", width * 16 * 16, classes),
          bn1d("phi2_bn", classes)};
}
std::shared_ptr<Network> make_tiny(const JsonNode& p) {
  p.allow_keys({"width", "num_classes", "quant_schemes"});
  return make_step_network("Tiny", tiny_steps(p.integer("width", 16), parse_num_classes(p, 10)), p, false);
}
QL_REGISTER_TOPOLOGY(Tiny, "Tiny", make_tiny);

TEST(Topology, TheDocumentedExampleIsOneDescription) {
  EXPECT_EQ(quantizable_names(tiny_steps(16, 10)), (std::vector<std::string>{"phi1_conv", "phi1_act", "phi2_fc"}));
  nlohmann::json schemes;
  for (const char* n : {"phi1_conv", "phi1_act", "phi2_fc"}) schemes[n] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  const auto net =
      topology_registry().at("Tiny", "test").build(JsonNode({{"width", 8}, {"quant_schemes", schemes}}, "params"));
  std::vector<std::string> names;
  for (const auto& p : net->named_parameters()) names.push_back(p.key());
  EXPECT_EQ(names, (std::vector<std::string>{"phi1_conv.weight", "phi1_bn.weight", "phi1_bn.bias", "phi2_fc.weight",
                                             "phi2_bn.weight", "phi2_bn.bias"}));
  EXPECT_EQ(net->forward(torch::rand({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 10}));
  ASSERT_NE(net->steps(), nullptr);
  EXPECT_EQ(net->steps()->size(), 7u);
  try {  // a missing scheme is named
    topology_registry().at("Tiny", "test").build(JsonNode({{"quant_schemes", nlohmann::json::object()}}, "params"));
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("missing the scheme of quantized module 'phi1_conv'"), std::string::npos)
        << e.what();
  }
}

TEST(Vgg, ShapesNamesAndParameterCount) {
  nlohmann::json schemes;
  for (const auto& n : vgg_quantized_modules()) schemes[n] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  EXPECT_EQ(vgg_quantized_modules().size(), 17u);
  const nlohmann::json params = {{"capacity", 0.25}, {"quant_schemes", schemes}};
  auto net = make_vgg(JsonNode(params, "params"));
  net->eval();
  torch::NoGradGuard ng;
  EXPECT_EQ(net->forward(torch::randn({2, 3, 32, 32})).sizes(), (std::vector<int64_t>{2, 10}));
  // Weights 3x3 convs 3-32-32-64-64-128-128, FC 2048-1024-1024-10; BN: 2 per channel.
  const int64_t convs = 9 * (3 * 32 + 32 * 32 + 32 * 64 + 64 * 64 + 64 * 128 + 128 * 128);
  const int64_t fcs = 128 * 16 * 1024 + 1024 * 1024 + 1024 * 10;
  const int64_t bns = 2 * (32 + 32 + 64 + 64 + 128 + 128 + 1024 + 1024 + 10);
  EXPECT_EQ(count_parameters(*net), convs + fcs + bns);
  const auto names = net->named_parameters().keys();
  EXPECT_EQ(names.front(), "phi1_conv.weight");
  EXPECT_NE(std::find(names.begin(), names.end(), "phi9_bn.bias"), names.end());
  const nlohmann::json base = {{"capacity", 0.25}, {"in_channels", 1}};
  auto baseline = make_vgg_baseline(JsonNode(base, "params"));
  baseline->eval();
  EXPECT_EQ(baseline->forward(torch::randn({2, 1, 32, 32})).sizes(), (std::vector<int64_t>{2, 10}));
  // 1 input channel; the last layer has a bias (10) and no batch norm (2 x 10), as the original's.
  EXPECT_EQ(count_parameters(*baseline), convs - 9 * 2 * 32 + fcs + bns + 10 - 2 * 10);
}

TEST(Vgg, OriginalCifar10ConfigLoadsAndTrainsUnchanged) {
  const std::string file = std::string(QL_SOURCE_DIR) + "/../shared/reference/original-quantlab/CIFAR-10/config.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is not beside this checkout";
  TempDir dir;
  testing::write_cifar10(dir.path(), 4);  // 20 training images: one small batch of the full-size network
  Experiment exp(read_json_file(file), "VGG", torch::kCPU);
  const auto data = data::load_problem(dir.path(), exp.data);
  std::ostringstream sink;
  Progress progress(sink, false);
  Trainer trainer(exp, data, progress);
  const auto records = trainer.fit(1);
  EXPECT_EQ(records[0].train.samples, 18);
  EXPECT_TRUE(std::isfinite(records[0].train.loss));
}

TEST(Vgg, FashionMnistPaddedTo32) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 40, 8, 4, false);
  data::DataOptions o;
  o.valid_fraction = 0.0;
  o.pad = 2;
  const auto d = data::load_problem(dir.path(), o);
  data::BatchLoader loader(*d.train, d.train_indices, 8);
  const auto b = loader.next();
  ASSERT_TRUE(b.has_value());
  EXPECT_EQ(b->inputs.sizes(), (std::vector<int64_t>{8, 1, 32, 32}));
  EXPECT_EQ(b->inputs.select(2, 0).abs().sum().item<float>(), 0.0f);  // the padding row
}

TEST(Augment, RandomCropAndFlipArePureFunctionsOfSeedEpochAndPosition) {
  torch::manual_seed(0);
  const auto x = torch::rand({6, 3, 8, 8});
  auto run = [&](int64_t epoch, int64_t first) {
    auto y = x.clone();
    data::augment_batch(y, data::Augment{true, 2, true, 7, epoch}, first);
    return y;
  };
  EXPECT_TRUE(torch::equal(run(3, 10), run(3, 10)));
  EXPECT_FALSE(torch::equal(run(3, 10), run(4, 10)));
  // Sample 2 of a batch starting at 10 is the sample 0 of a batch starting at 12: draws go by position.
  auto shifted = x.narrow(0, 2, 4).clone();
  data::augment_batch(shifted, data::Augment{true, 2, true, 7, 3}, 12);
  EXPECT_TRUE(torch::equal(shifted, run(3, 10).narrow(0, 2, 4)));
  // Every output is a crop of the zero-padded input, possibly mirrored.
  const auto y = run(5, 0);
  const auto padded = torch::constant_pad_nd(x, {2, 2, 2, 2}, 0.0);
  int flips = 0;
  for (int64_t b = 0; b < 6; ++b) {
    bool found = false;
    for (int64_t dy = 0; dy <= 4 && !found; ++dy)
      for (int64_t dx = 0; dx <= 4 && !found; ++dx) {
        const auto crop = padded[b].narrow(1, dy, 8).narrow(2, dx, 8);
        if (torch::equal(y[b], crop))
          found = true;
        else if (torch::equal(y[b], crop.flip({2})))
          found = true, ++flips;
      }
    EXPECT_TRUE(found) << "sample " << b;
  }
  EXPECT_GT(flips, 0);  // for this seed some of the six are mirrored (the draw is fixed)
  auto same = x.clone();
  data::augment_batch(same, data::Augment{}, 0);
  EXPECT_TRUE(torch::equal(same, x));
}

}  // namespace
}  // namespace quantlab
