// AlexNet and MobileNetV2: structure and parameter counts against the published architectures,
// the original's ImageNet config, and two training steps on a tiny generated JPEG tree.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/nn/ana_site.h"
#include "quantlab/topology/alexnet.h"
#include "quantlab/topology/mobilenetv2.h"
#include "quantlab/train/preflight.h"
#include "quantlab/train/trainer.h"
#include "test_util.h"

namespace quantlab {
namespace {

int64_t parameter_total(torch::nn::Module& net) {
  int64_t n = 0;
  for (const auto& p : net.parameters()) n += p.numel();
  return n;
}

int64_t ana_sites(torch::nn::Module& net) {
  int64_t n = 0;
  for (const auto& m : net.modules(false)) n += dynamic_cast<nn::AnaSite*>(m.get()) != nullptr;
  return n;
}

nlohmann::json ternary_schemes(const std::vector<std::string>& names) {
  nlohmann::json q = nlohmann::json::object();
  for (const auto& n : names) q[n] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  return q;
}

TEST(AlexNet, ShapesAndParameterCountsOfThePublishedArchitecture) {
  const nlohmann::json params = {{"capacity", 1}, {"quant_schemes", ternary_schemes(alexnet_quantized_modules())}};
  auto net = make_alexnet(JsonNode(params, "params"));
  EXPECT_EQ(ana_sites(*net), 15);
  net->eval();
  EXPECT_EQ(net->forward(torch::randn({2, 3, 224, 224})).sizes(), (std::vector<int64_t>{2, 1000}));
  EXPECT_EQ(net->forward(torch::randn({1, 3, 227, 227})).sizes(), (std::vector<int64_t>{1, 1000}));
  // torchvision's AlexNet (64-192-384-256-256 convs, 9216-4096-4096-1000 FCs) has 61,100,840
  // parameters, 10,344 of them biases; the original drops the biases and adds batch norms.
  const int64_t bn = 2 * (64 + 192 + 384 + 256 + 256 + 4096 + 4096 + 1000);
  EXPECT_EQ(parameter_total(*net), 61100840 - 10344 + bn);
  const auto names = net->named_parameters().keys();
  EXPECT_EQ(names.front(), "phi1_conv.weight");
  EXPECT_EQ(names.back(), "phi8_bn.bias");
  try {
    net->forward(torch::randn({1, 3, 128, 128}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("expects 6x6"), std::string::npos) << e.what();
  }

  auto base = make_alexnet_baseline(JsonNode(nlohmann::json{{"capacity", 1}}, "params"));
  EXPECT_EQ(ana_sites(*base), 0);
  EXPECT_EQ(parameter_total(*base), 61100840 - 10344 + bn - 2 * 1000 + 1000);  // phi8: bias, no BN
  auto half = make_alexnet_baseline(JsonNode(nlohmann::json{{"capacity", 0.5}, {"num_classes", 10}}, "params"));
  half->eval();
  EXPECT_EQ(half->forward(torch::randn({1, 3, 224, 224})).sizes(), (std::vector<int64_t>{1, 10}));
}

TEST(MobileNetV2, ShapesAndParameterCountsOfThePublishedArchitecture) {
  auto base = make_mobilenetv2_baseline(JsonNode(nlohmann::json{{"capacity", 1}, {"expansion", 6}}, "params"));
  // torchvision's mobilenet_v2() has 3,504,872 parameters, the same layers and shapes.
  EXPECT_EQ(parameter_total(*base), 3504872);
  base->eval();
  EXPECT_EQ(base->forward(torch::randn({1, 3, 224, 224})).sizes(), (std::vector<int64_t>{1, 1000}));
  const auto names = base->named_parameters().keys();
  EXPECT_EQ(names.front(), "phi01_conv.weight");
  EXPECT_EQ(names.back(), "phi53_fc.bias");
  // The original's He initialisation of the float convolutions: std sqrt(2 / (k*k*out)).
  const auto w = base->named_parameters()["phi52_conv.weight"];
  EXPECT_NEAR(w.std().item<double>(), std::sqrt(2.0 / 1280.0), 0.002);

  const auto q = mobilenetv2_quantized_modules();
  EXPECT_EQ(q.size(), 60u);
  EXPECT_EQ(q.front(), "phi06_act");
  EXPECT_EQ(q.back(), "phi48_conv");
  auto res = make_mobilenetv2_residuals(JsonNode(nlohmann::json{{"quant_schemes", ternary_schemes(q)}}, "params"));
  EXPECT_EQ(ana_sites(*res), 60);
  EXPECT_EQ(parameter_total(*res), 3504872);  // quantization changes no shape
  const auto rnames = res->named_parameters().keys();
  EXPECT_NE(std::find(rnames.begin(), rnames.end(), "phi08_conv.weight"), rnames.end());
  EXPECT_EQ(res->named_parameters()["phi08_conv.weight"].sizes(), (std::vector<int64_t>{144, 1, 3, 3}));  // depthwise
  res->eval();
  EXPECT_EQ(res->forward(torch::randn({2, 3, 96, 96})).sizes(), (std::vector<int64_t>{2, 1000}));

  const nlohmann::json missing = {{"quant_schemes", ternary_schemes({"phi06_act"})}};
  EXPECT_THROW(make_mobilenetv2_residuals(JsonNode(missing, "indiv.net.params")), ConfigError);
}

// Two training steps and a validation pass of each ImageNet topology on generated JPEGs.
void train_two_steps(const nlohmann::json& config, const std::string& topology) {
  testing::TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02", "n03"}, 2);
  testing::write_image_tree(dir.path() + "/val", {"n01", "n02", "n03"}, 1);
  Experiment exp(config, topology, torch::kCPU);
  const auto data = data::load_problem(dir.path(), exp.data);
  std::ostringstream sink;
  Progress progress(sink, false);
  TrainerOptions options;
  options.max_batches_per_epoch = 2;
  Trainer trainer(exp, data, progress, options);
  const auto before = exp.net->parameters().front().clone();
  const auto records = trainer.fit(1);
  EXPECT_EQ(records[0].train.samples, 2 * exp.data.bs_train);
  EXPECT_TRUE(std::isfinite(records[0].train.loss));
  EXPECT_EQ(records[0].valid.samples, 3);
  // ImageNet's meter measures top-5 too, as the original's does: never worse than top-1.
  EXPECT_TRUE(std::isfinite(records[0].valid.top5));
  EXPECT_LE(records[0].valid.top5, records[0].valid.metric);
  EXPECT_TRUE(std::isnan(records[0].train.top5));  // training reports top-1 only
  EXPECT_NE(sink.str().find(" top5 "), std::string::npos) << sink.str();
  EXPECT_FALSE(torch::equal(before, exp.net->parameters().front()));
}

// An unreadable image that leaves one image in a training batch: the batch is skipped with a
// warning (batch norm cannot train on one image; libtorch stopped the run), the epoch goes on.
TEST(ImageNetTraining, ABatchThatUnreadableImagesLeaveWithOneImageIsSkipped) {
  testing::TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02"}, 2);
  testing::write_image_tree(dir.path() + "/val", {"n01", "n02"}, 1);
  std::ofstream(dir.path() + "/train/n01/n01_0.JPEG") << "garbage";
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config_vgg_baseline.json");
  cfg["indiv"]["net"]["params"] = {{"capacity", 0.05}, {"in_channels", 3}};
  cfg["treat"]["data"] = {{"augment", false}, {"bs_train", 2}, {"bs_valid", 2}, {"crop", 32}};
  cfg["treat"]["lr_scheduler"] = nullptr;
  Experiment exp(cfg, "VGG", torch::kCPU);
  ASSERT_FALSE(first_batch_norm_1d(exp).empty());
  const auto data = data::load_problem(dir.path(), exp.data);
  std::ostringstream sink;
  Progress progress(sink, false);
  Trainer trainer(exp, data, progress, TrainerOptions{});
  ::testing::internal::CaptureStderr();
  std::vector<EpochRecord> records;
  ASSERT_NO_THROW(records = trainer.fit(1));
  const std::string warnings = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warnings.find("unreadable images left 1 image, which batch norm"), std::string::npos) << warnings;
  EXPECT_EQ(records[0].train.samples, 2);  // the other batch of two
}

// The preflight check reads past unreadable first images (a tree copied from macOS starts with its
// ._ files), and names the set none of whose first images could be read.
TEST(ImageNetTraining, PreflightReadsPastUnreadableFirstImagesAndNamesTheSet) {
  testing::TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02"}, 2);
  testing::write_image_tree(dir.path() + "/val", {"n01", "n02"}, 1);
  for (const char* f : {"/train/n01/._n01_0.JPEG", "/train/n01/._n01_1.JPEG"})
    std::ofstream(dir.path() + f) << "resource fork";
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config_vgg_baseline.json");
  cfg["indiv"]["net"]["params"] = {{"capacity", 0.05}, {"in_channels", 3}};
  cfg["treat"]["data"] = {{"augment", false}, {"bs_train", 2}, {"bs_valid", 2}, {"crop", 32}};
  cfg["treat"]["lr_scheduler"] = nullptr;
  Experiment exp(cfg, "VGG", torch::kCPU);
  ::testing::internal::CaptureStderr();
  EXPECT_NO_THROW(preflight(exp, data::load_problem(dir.path(), exp.data)));
  for (const char* f : {"/val/n01/n01_0.JPEG", "/val/n02/n02_0.JPEG"}) std::ofstream(dir.path() + f) << "garbage";
  try {
    preflight(exp, data::load_problem(dir.path(), exp.data));
    ADD_FAILURE() << "accepted";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find("none of the first 2 test images could be read (" + dir.path() +
                                         "/val/n01/n01_0.JPEG ... " + dir.path() + "/val/n02/n02_0.JPEG"),
              std::string::npos)
        << e.what();
  }
  (void)::testing::internal::GetCapturedStderr();
  // A last batch of one image: treat.data.valid_fraction is advised only where it holds images out.
  for (const bool held_out : {true, false}) {
    try {
      check_training_batches(exp, 17, 1, held_out);
      ADD_FAILURE() << "accepted";
    } catch (const ConfigError& e) {
      EXPECT_EQ(std::string(e.what()).find("valid_fraction") != std::string::npos, held_out) << e.what();
    }
  }
}

TEST(ImageNetTraining, OriginalMobileNetConfigTrainsTwoStepsUnchangedButTheBatch) {
  const std::string file = std::string(QL_SOURCE_DIR) + "/../shared/reference/original-quantlab/ImageNet/config.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is not beside this checkout";
  nlohmann::json cfg = read_json_file(file);
  Experiment as_is(cfg, "MobileNetv2", torch::kCPU);  // loads unchanged
  EXPECT_EQ(ana_sites(*as_is.net), 60);
  EXPECT_EQ(as_is.data.augment, data::ImageAugment::kOriginal);
  cfg["treat"]["data"]["bs_train"] = 2;  // a tiny tree: two batches of two
  train_two_steps(cfg, "MobileNetv2");
}

TEST(ImageNetTraining, ShippedConfigsLoad) {
  Experiment ternary(read_json_file(std::string(QL_SOURCE_DIR) + "/ImageNet/config.json"), "AlexNet", torch::kCPU);
  EXPECT_EQ(ana_sites(*ternary.net), 15);
  EXPECT_EQ(ternary.data.crop, 227);  // the original AlexNet's crop
  Experiment base(read_json_file(std::string(QL_SOURCE_DIR) + "/ImageNet/config_baseline.json"), "AlexNet",
                  torch::kCPU);
  EXPECT_EQ(ana_sites(*base.net), 0);
  Experiment mobilenet(read_json_file(std::string(QL_SOURCE_DIR) + "/ImageNet/config_mobilenetv2.json"), "MobileNetv2",
                       torch::kCPU);
  EXPECT_EQ(ana_sites(*mobilenet.net), 60);  // the original's ImageNet config quantizes the same 60 modules
  EXPECT_EQ(mobilenet.thermostat->noise().size(), 60u);
}

TEST(ImageNetTraining, TernaryAlexNetTrainsTwoSteps) {
  nlohmann::json noise = nlohmann::json::object();
  for (const auto& n : alexnet_quantized_modules()) noise[n] = {{"stddev_start", {0.5, 0.5}}};
  const nlohmann::json cfg = {
      {"indiv",
       {{"net",
         {{"class", "AlexNet"},
          {"params", {{"capacity", 0.25}, {"quant_schemes", ternary_schemes(alexnet_quantized_modules())}}}}},
        {"loss_function", {{"class", "CrossEntropyLoss"}, {"params", nlohmann::json::object()}}}}},
      {"treat",
       {{"thermostat",
         {{"params",
           {{"noise_schemes", noise},
            {"bindings",
             {{{"maps", {"phi"}},
               {"forward", {{"class", "Linear"}, {"params", {{"t_start", 0}, {"t_decay", 2}}}}},
               {"backward", {{"class", "Constant"}, {"params", nlohmann::json::object()}}}}}}}}}},
        {"optimizer", {{"class", "Adam"}, {"params", {{"lr", 1e-3}}}}},
        {"data", {{"augment", true}, {"bs_train", 2}, {"bs_valid", 4}}},
        {"max_epoch", 2}}},
      {"protocol", {{"update_metric", "valid_metric"}, {"metric_period", 1}}}};
  train_two_steps(cfg, "AlexNet");
}

// Stopped after one epoch and resumed from its checkpoint, a run on JPEG folders (two decoding
// workers, the original's augmentation) ends with exactly the weights of an uninterrupted run: the
// same images in the same order with the same crops.
TEST(ImageNetTraining, ResumedRunIsBitIdenticalToUninterruptedRun) {
  at::set_num_threads(1);
  testing::TempDir dir;
  testing::write_image_tree(dir.path() + "/train", {"n01", "n02", "n03"}, 4);
  testing::write_image_tree(dir.path() + "/val", {"n01", "n02", "n03"}, 1);
  const nlohmann::json cfg = {
      {"indiv",
       {{"net", {{"class", "MobileNetv2Baseline"}, {"params", {{"capacity", 0.25}, {"num_classes", 3}}}}},
        {"loss_function", {{"class", "CrossEntropyLoss"}, {"params", nlohmann::json::object()}}}}},
      {"treat",
       {{"optimizer", {{"class", "Adam"}, {"params", {{"lr", 1e-3}}}}},
        {"lr_scheduler", {{"class", "HandScheduler"}, {"params", {{"schedule", {{"2", 0.1}}}}}}},
        {"data", {{"augment", true}, {"bs_train", 4}, {"bs_valid", 4}, {"crop", 48}, {"workers", 2}, {"seed", 3}}},
        {"max_epoch", 3}}},
      {"protocol", {{"update_metric", "valid_metric"}, {"metric_period", 1}}}};
  std::ostringstream sink;
  Progress progress(sink, false);
  Experiment straight(cfg, "MobileNetv2", torch::kCPU);
  const auto data = data::load_problem(dir.path(), straight.data);
  Trainer(straight, data, progress).fit(3);

  Checkpoint after_one;
  {
    Experiment first(cfg, "MobileNetv2", torch::kCPU);
    Trainer t(first, data, progress);
    t.fit(1);
    const std::string file = dir.path() + "/last.ckpt";
    save_checkpoint(file, capture(first, t.state()));
    after_one = load_checkpoint(file);
  }
  torch::manual_seed(999);  // another process state in between must not matter
  Experiment resumed(cfg, "MobileNetv2", torch::kCPU);
  restore(resumed, after_one);
  Trainer t(resumed, data, progress);
  t.set_state(after_one.state);
  t.fit(3);
  const auto a = straight.net->named_parameters(), b = resumed.net->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(torch::equal(p.value(), b[p.key()])) << p.key();
  const auto ab = straight.net->named_buffers(), bb = resumed.net->named_buffers();
  for (const auto& p : ab) EXPECT_TRUE(torch::equal(p.value(), bb[p.key()])) << p.key();
}

}  // namespace
}  // namespace quantlab
