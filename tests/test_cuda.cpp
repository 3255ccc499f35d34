// The device paths (docs/GPU.md). What any machine can check runs everywhere: the message of
// --device=cuda where there is no GPU, and mixed precision (--amp) on the CPU. The tests that need a
// GPU skip with the reason elsewhere; `make test` on a GPU machine runs them (bench/gpu.sh too).
#include <gtest/gtest.h>

#include <torch/version.h>

#include <cstdio>
#include <filesystem>
#include <regex>
#include <sstream>

#include "quantlab/config/json_node.h"
#include "quantlab/config/quant_schemes.h"
#include "quantlab/data/problem.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/topology/alexnet.h"
#include "quantlab/topology/mobilenetv2.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/build_info.h"
#include "quantlab/util/error.h"
#include "quantlab/util/host_sync.h"
#include "quantlab/util/runtime.h"
#include "test_util.h"
#include "toy_home.h"

namespace quantlab {
namespace {

using testing::TempDir;

// Built with -DQL_GPU_TESTS_ON_CPU, the GPU tests run their own logic on the CPU: a check of the
// tests, not of CUDA.
#ifdef QL_GPU_TESTS_ON_CPU
constexpr auto kGpu = torch::kCPU;
#define QL_REQUIRE_GPU() \
  do {                   \
  } while (0)
#else
constexpr auto kGpu = torch::kCUDA;
#define QL_REQUIRE_GPU()                                                         \
  do {                                                                           \
    if (!torch::cuda::is_available()) GTEST_SKIP() << cuda_unavailable_reason(); \
  } while (0)
#endif

nlohmann::json shipped(const std::string& file) { return read_json_file(std::string(QL_SOURCE_DIR) + "/" + file); }

// A ternary (or float, with no modules) config for an ImageNet topology at a quarter of its width,
// on crops of `crop` pixels.
nlohmann::json imagenet_config(const std::string& cls, const std::vector<std::string>& quantized, int crop) {
  nlohmann::json schemes = nlohmann::json::object(), noise = nlohmann::json::object();
  for (const auto& n : quantized) {
    schemes[n] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
    noise[n] = {{"stddev_start", {0.5, 0.5}}};
  }
  nlohmann::json params = {{"capacity", 0.25}, {"num_classes", 3}};
  if (!quantized.empty()) params["quant_schemes"] = schemes;
  nlohmann::json treat = {{"optimizer", {{"class", "Adam"}, {"params", {{"lr", 1e-3}}}}},
                          {"data", {{"augment", true}, {"bs_train", 4}, {"bs_valid", 4}, {"crop", crop}}},
                          {"max_epoch", 2}};
  if (!quantized.empty())
    treat["thermostat"] = {{"params",
                            {{"noise_schemes", noise},
                             {"bindings",
                              {{{"maps", quantized},
                                {"forward", {{"class", "Linear"}, {"params", {{"t_start", 0}, {"t_decay", 2}}}}},
                                {"backward", {{"class", "Constant"}, {"params", nlohmann::json::object()}}}}}}}}};
  return {{"indiv",
           {{"net", {{"class", cls}, {"params", params}}},
            {"loss_function", {{"class", "CrossEntropyLoss"}, {"params", nlohmann::json::object()}}}}},
          {"treat", treat},
          {"protocol", {{"update_metric", "valid_metric"}, {"metric_period", 1}}}};
}

// The shipped Fashion-MNIST config of an MLP or VGG, narrowed for a toy problem.
nlohmann::json fashion_config(const std::string& file, double capacity) {
  nlohmann::json cfg = shipped("FashionMNIST/" + file);
  cfg["indiv"]["net"]["params"]["capacity"] = capacity;
  cfg["treat"]["data"]["bs_train"] = 32;
  cfg["treat"]["data"]["bs_valid"] = 64;
  return cfg;
}

AnaScheme ternary() {
  return parse_ana_scheme(JsonNode(nlohmann::json::parse(R"(["uniform", [-0.5, 0.5], [-1.0, 0.0, 1.0]])"), "q"));
}

// --- Any machine -----------------------------------------------------------------------------

TEST(Device, CudaWithoutAGpuSaysWhetherTheBuildOrTheMachineLacksIt) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "this machine has a GPU";
  const std::string e = testing::error_of([] { resolve_device("cuda"); });
  ASSERT_FALSE(e.empty());
  if (libtorch_has_cuda()) {
    EXPECT_NE(e.find("has CUDA but sees no GPU"), std::string::npos) << e;
    EXPECT_NE(e.find("nvidia-smi"), std::string::npos) << e;
  } else {
    EXPECT_NE(e.find("libtorch without CUDA"), std::string::npos) << e;
    EXPECT_NE(e.find("make build TORCH=pip"), std::string::npos) << e;
  }
  EXPECT_NE(e.find("--device=cpu"), std::string::npos) << e;
  EXPECT_EQ(resolve_device("auto"), torch::Device(torch::kCPU));  // auto falls back without a word
}

// The revision is read at build time (tools/revision.cmake), not when CMake configured the build
// folder: a binary rebuilt after a commit names that commit. (make test builds before it tests.)
TEST(Device, VersionNamesTheCommitItWasBuiltFrom) {
  std::string head;
  FILE* git = popen(("git -C '" + std::string(QL_SOURCE_DIR) + "' describe --always 2>/dev/null").c_str(), "r");
  ASSERT_NE(git, nullptr);
  char buf[256];
  while (fgets(buf, sizeof buf, git) != nullptr) head += buf;
  if (pclose(git) != 0 || head.empty()) GTEST_SKIP() << "the sources are not a git checkout";
  head.erase(head.find_last_not_of("\n") + 1);
  std::string rev = build_info().quantlab;
  const std::string dirty = "-dirty";
  if (rev.size() > dirty.size() && rev.compare(rev.size() - dirty.size(), dirty.size(), dirty) == 0)
    rev.resize(rev.size() - dirty.size());
  EXPECT_EQ(rev, head) << "quantlab --version names a revision other than the checkout's";
  std::string out;
  ASSERT_EQ(testing::run_cli("--version", out), 0) << out;
  EXPECT_NE(out.find(build_info().quantlab), std::string::npos) << out;
}

TEST(Device, VersionSaysWhatThisBuildIsBuiltAgainst) {
  std::string out;
  ASSERT_EQ(testing::run_cli("--version", out), 0) << out;
  EXPECT_NE(out.find(std::string("libtorch ") + TORCH_VERSION), std::string::npos) << out;
  const BuildInfo b = build_info();
  EXPECT_EQ(b.libtorch_cuda, libtorch_has_cuda());
  if (!b.libtorch_cuda) {
    EXPECT_NE(out.find("CPU only"), std::string::npos) << out;
    return;
  }
  EXPECT_TRUE(std::regex_search(out, std::regex("with CUDA [0-9]+\\.[0-9]+, cuDNN [0-9]+\\.[0-9]+\\.[0-9]+, NCCL "
                                                "[0-9]+\\.[0-9]+\\.[0-9]+")))
      << out;
  EXPECT_NE(out.find("data-parallel backends: gloo, nccl"), std::string::npos) << out;
#ifdef QL_WITH_CUDA
  EXPECT_NE(out.find("QuantLab's CUDA kernels: sm_"), std::string::npos) << out;
#endif
  // The program itself links libtorch's CUDA half and the CUDA runtime.
  testing::TempDir tmp;
  ASSERT_EQ(std::system(("ldd " + std::string(QL_PROGRAM) + " > " + tmp.path() + "/ldd").c_str()), 0);
  const std::string ldd = testing::slurp(tmp.path() + "/ldd");
  EXPECT_NE(ldd.find("libtorch_cuda.so"), std::string::npos) << ldd;
  EXPECT_NE(ldd.find("libcudart.so"), std::string::npos) << ldd;
  EXPECT_EQ(ldd.find("not found"), std::string::npos) << ldd;
}

TEST(Device, HostSyncWatchIsInertWithoutCuda) {
  if (HostSyncWatch::available()) GTEST_SKIP() << "libtorch has CUDA";
  HostSyncWatch watch(HostSyncWatch::kCount);
  (void)torch::ones({3}).sum().item<float>();
  EXPECT_EQ(watch.count(), 0);
}

// --amp: products in bfloat16, their results and everything after them float32.
TEST(Device, MixedPrecisionRunsProductsInBfloat16AndTheRestInFloat32) {
  // The default, not an A/B setting of QL_BF16_PRODUCTS: the bound below is the float32 sum's.
  const testing::Bf16ProductsMode automatic(nn::Bf16Products::kAuto);
  torch::manual_seed(0);
  AnaScheme scheme = ternary();
  nn::AnaConvOptions o;
  o.in_channels = 8;
  o.out_channels = 16;
  o.kernel_size = {3};
  o.padding = {1};
  nn::AnaConv conv(scheme, o);
  const auto x = torch::randn({2, 8, 6, 6}, torch::requires_grad());
  const auto y32 = conv->forward(x);
  const auto y16 = conv->forward(x, true);
  EXPECT_EQ(y16.scalar_type(), torch::kFloat32);
  // The ternary weights are exact in bfloat16; the inputs lose their last 16 bits of mantissa.
  // Every product sums in float32: oneDNN where the CPU has bfloat16 units (AMX-BF16, AVX512-BF16),
  // elsewhere QuantLab's emulation (nn/products.h; libtorch 1.13's own bfloat16 products summed in
  // lower precision there: 0.21 off at |y| <= 20 on an AMD EPYC with AVX2 only).
  const double atol = 0.05, close = 1e-2;
  EXPECT_FALSE(torch::equal(y16, y32));
  EXPECT_TRUE(torch::allclose(y16, y32, 0.05, atol)) << (y16 - y32).abs().max().item<float>();
  y16.sum().backward();
  EXPECT_EQ(x.grad().scalar_type(), torch::kFloat32);
  EXPECT_EQ(conv->weight.grad().scalar_type(), torch::kFloat32);
  // The products of the rounded inputs (the ternary weights are exact in bfloat16), up to the
  // rounding of the bfloat16 result.
  const auto xb = x.detach().to(torch::kBFloat16).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(y16, conv->forward(xb).detach(), 1e-2, close))
      << (y16 - conv->forward(xb).detach()).abs().max().item<float>() << " " << y32.abs().max().item<float>();
}

TEST(Device, MixedPrecisionTrainsTheToyMlpLikeFloat32) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 640, 200, 4, false);
  double acc[2] = {0, 0};
  for (int amp = 0; amp < 2; ++amp) {
    torch::manual_seed(0);
    nlohmann::json cfg = fashion_config("config.json", 0.05);
    auto& bindings = cfg["treat"]["thermostat"]["params"]["bindings"];
    for (size_t k = 0; k < bindings.size(); ++k)
      bindings[k]["forward"]["params"] = {{"t_start", static_cast<int>(k)}, {"t_decay", 1}};
    cfg["treat"]["max_epoch"] = 6;
    cfg["treat"]["lr_scheduler"] = nullptr;
    Experiment exp(cfg, "MLP", torch::kCPU);
    exp.net->set_mixed_precision(amp == 1);
    const auto data = data::load_idx_problem(dir.path(), exp.data);
    std::ostringstream sink;
    Progress progress(sink, false);
    Trainer trainer(exp, data, progress);
    trainer.fit(exp.max_epoch);
    acc[amp] = trainer.test().accuracy();
  }
  EXPECT_GT(acc[0], 90.0);
  EXPECT_GT(acc[1], 90.0);
  EXPECT_NEAR(acc[1], acc[0], 3.0);
}

// --- A GPU -----------------------------------------------------------------------------------

// Forward and backward of the quantized layers on the GPU, in training (noise on) with the
// random forward strategy too, with every synchronising call an error.
TEST(Cuda, AnaLayersNeverMakeTheHostWait) {
  QL_REQUIRE_GPU();
  if (kGpu == torch::kCUDA) ASSERT_TRUE(HostSyncWatch::available());
  for (const char* strategy : {"expectation", "random"}) {
    AnaScheme scheme = ternary();
    scheme.strategy = std::string(strategy) == "random" ? ForwardStrategy::kRandom : ForwardStrategy::kExpectation;
    nn::AnaConvOptions o;
    o.in_channels = 8;
    o.out_channels = 16;
    o.kernel_size = {3};
    nn::AnaConv conv(scheme, o);
    nn::AnaActivation act(scheme);
    conv->to(kGpu);
    act->to(kGpu);
    conv->set_noise({0.0, 0.3, 0.3});
    act->set_noise({0.0, 0.3, 0.3});
    const auto x = torch::randn({4, 8, 10, 10}, torch::TensorOptions().device(kGpu).requires_grad(true));
    act->forward(conv->forward(x)).sum().backward();  // the first call moves the stair to the device
    HostSyncWatch forbid(HostSyncWatch::kForbid);
    for (int i = 0; i < 3; ++i) {
      const auto y = act->forward(conv->forward(x));
      y.sum().backward();
      const auto ybf = act->forward(conv->forward(x, true));
      ybf.sum().backward();
    }
  }
  if (kGpu == torch::kCUDA) torch::cuda::synchronize();
}

// The training loop's steps never make the host wait: an epoch of 8 steps synchronises exactly as
// often as one of 4 (what remains is per epoch: the sums at its end, the loader's start). The
// counts are printed for docs/GPU.md.
TEST(Cuda, TrainingStepsNeverMakeTheHostWait) {
  QL_REQUIRE_GPU();
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 512, 64, 4, false);
  for (const char* file : {"config.json", "config_vgg.json"}) {
    SCOPED_TRACE(file);
    Experiment exp(fashion_config(file, 0.25), "", kGpu);
    const auto data = data::load_idx_problem(dir.path(), exp.data);
    std::ostringstream sink;
    Progress progress(sink, false);
    TrainerOptions four, eight;
    four.max_batches_per_epoch = 4;
    eight.max_batches_per_epoch = 8;
    Trainer short_epochs(exp, data, progress, four), long_epochs(exp, data, progress, eight);
    long_epochs.train_epoch(1);  // cuDNN's autotuning synchronises, once per shape
    int64_t counts[2];
    for (int k = 0; k < 2; ++k) {
      HostSyncWatch watch(HostSyncWatch::kCount);
      (k == 0 ? short_epochs : long_epochs).train_epoch(2 + k);
      counts[k] = watch.count();
    }
    std::cout << file << ": host synchronisations in an epoch of 4 steps " << counts[0] << ", of 8 steps " << counts[1]
              << std::endl;
    EXPECT_EQ(counts[0], counts[1]);
  }
}

TEST(Cuda, TrainsEveryTopologyForAFewSteps) {
  QL_REQUIRE_GPU();
  TempDir idx, images;
  testing::write_toy_idx_problem(idx.path(), 256, 64, 4, false);
  testing::write_image_tree(images.path() + "/train", {"n01", "n02", "n03"}, 4);
  testing::write_image_tree(images.path() + "/val", {"n01", "n02", "n03"}, 2);
  struct Case {
    std::string topology;
    nlohmann::json cfg;
    bool images;
  };
  const std::vector<Case> cases = {
      {"MLP", fashion_config("config.json", 0.1), false},
      {"MLP", fashion_config("config_baseline.json", 0.1), false},
      {"VGG", fashion_config("config_vgg.json", 0.25), false},
      {"VGG", fashion_config("config_vgg_baseline.json", 0.25), false},
      {"AlexNet", imagenet_config("AlexNet", alexnet_quantized_modules(), 224), true},
      {"AlexNet", imagenet_config("AlexNetBaseline", {}, 224), true},
      {"MobileNetv2", imagenet_config("MobileNetv2Residuals", mobilenetv2_quantized_modules(), 64), true},
      {"MobileNetv2", imagenet_config("MobileNetv2Baseline", {}, 64), true},
  };
  for (bool amp : {false, true}) {
    for (const auto& c : cases) {
      SCOPED_TRACE(c.cfg["indiv"]["net"]["class"].get<std::string>() + (amp ? " --amp" : ""));
      torch::manual_seed(0);
      Experiment exp(c.cfg, c.topology, kGpu);
      exp.net->set_mixed_precision(amp);
      const auto data =
          c.images ? data::load_problem(images.path(), exp.data) : data::load_idx_problem(idx.path(), exp.data);
      std::ostringstream sink;
      Progress progress(sink, false);
      TrainerOptions options;
      options.max_batches_per_epoch = 2;
      Trainer trainer(exp, data, progress, options);
      const auto before = exp.net->parameters().front().detach().cpu().clone();
      const auto records = trainer.fit(1);
      EXPECT_TRUE(std::isfinite(records[0].train.loss));
      EXPECT_EQ(exp.net->parameters().front().device().type(), kGpu);
      EXPECT_FALSE(torch::equal(before, exp.net->parameters().front().detach().cpu()));
    }
  }
}

// One epoch on one device, the checkpoint, the next epoch on the other: both directions load and
// continue, and the weights arrive unchanged.
TEST(Cuda, CheckpointsMoveBetweenGpuAndCpu) {
  QL_REQUIRE_GPU();
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 256, 64, 4, false);
  const nlohmann::json cfg = fashion_config("config.json", 0.05);
  for (const auto& [from, to] : {std::pair{kGpu, torch::kCPU}, std::pair{torch::kCPU, kGpu}}) {
    SCOPED_TRACE(std::string(from == kGpu ? "GPU to CPU" : "CPU to GPU"));
    std::ostringstream sink;
    Progress progress(sink, false);
    Experiment first(cfg, "MLP", from);
    const auto data = data::load_idx_problem(dir.path(), first.data);
    Trainer t(first, data, progress);
    t.fit(1);
    const std::string file = dir.path() + "/moved.ckpt";
    save_checkpoint(file, capture(first, t.state()));
    Experiment second(cfg, "MLP", to);
    restore(second, load_checkpoint(file));
    for (const auto& [name, value] : named_state(*first.net))
      EXPECT_TRUE(torch::equal(value.detach().cpu(), named_state(*second.net).at(name).detach().cpu())) << name;
    Trainer resumed(second, data, progress);
    resumed.set_state(t.state());
    const auto records = resumed.fit(2);
    ASSERT_FALSE(records.empty());
    EXPECT_EQ(records.back().epoch, 2);
    EXPECT_TRUE(std::isfinite(records.back().train.loss));
  }
}

// --deterministic: stopped after an epoch and resumed, a GPU run ends with exactly the weights of an
// uninterrupted one (VGG: cuDNN convolutions and batch norm; the random forward strategy draws
// from the CUDA generator, which the checkpoint carries).
TEST(Cuda, DeterministicResumeIsBitIdentical) {
  QL_REQUIRE_GPU();
  configure_device_math(kGpu, true);
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 256, 64, 4, false);
  nlohmann::json cfg = fashion_config("config_vgg.json", 0.25);
  cfg["treat"]["max_epoch"] = 3;
  std::ostringstream sink;
  Progress progress(sink, false);
  torch::manual_seed(0);
  Experiment straight(cfg, "VGG", kGpu);
  const auto data = data::load_idx_problem(dir.path(), straight.data);
  Trainer(straight, data, progress).fit(3);

  torch::manual_seed(0);
  Checkpoint after_one;
  {
    Experiment first(cfg, "VGG", kGpu);
    Trainer t(first, data, progress);
    t.fit(1);
    save_checkpoint(dir.path() + "/last.ckpt", capture(first, t.state()));
    after_one = load_checkpoint(dir.path() + "/last.ckpt");
  }
  torch::manual_seed(999);
  Experiment resumed(cfg, "VGG", kGpu);
  restore(resumed, after_one);
  Trainer t(resumed, data, progress);
  t.set_state(after_one.state);
  t.fit(3);
  for (const auto& [name, value] : named_state(*straight.net))
    EXPECT_TRUE(torch::equal(value.cpu(), named_state(*resumed.net).at(name).cpu())) << name;
  configure_device_math(kGpu, false);
}

}  // namespace
}  // namespace quantlab
