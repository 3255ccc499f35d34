// The quantized weights' ANA backward folded into Adam's step, and the next forward's quantized
// weight computed ahead by it (train/ana_fold.h): the same parameters as the unfolded operator
// followed by the same step, bit for bit without L2 weight decay (one contracted multiply-add apart
// with it), for every noise family, stairs of 1, 2, 3 and 7 thresholds (the loop with the
// derivative inside and the chunked one), the three forward strategies and the hard stair,
// amsgrad, a spread of 0 and channels-last weights; the quantized weight computed ahead used from
// the second step on and not after the noise or the weight changed, and never by a graph kept
// across the step that rewrote it; the folded layer's gradient;
// libtorch's step as the fallback; a one-channel convolution's; which experiments fold.
#include <functional>
#include <limits>

#include <gtest/gtest.h>

#include "quantlab/config/json_node.h"
#include "quantlab/nn/ana_layers.h"
#include "quantlab/topology/layout.h"
#include "quantlab/train/ana_fold.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/fused_adam.h"
#include "test_names.h"
#include "test_util.h"

namespace quantlab {
namespace {

// A stair of T thresholds over [-1, 1].
AnaScheme stair(int T, NoiseFamily f, ForwardStrategy strategy = ForwardStrategy::kExpectation) {
  std::vector<float> t, q;
  for (int k = 0; k < T; ++k) t.push_back(T == 1 ? 0.0f : -0.75f + 1.5f * static_cast<float>(k) / (T - 1));
  for (int k = 0; k <= T; ++k) q.push_back(-1.0f + 2.0f * static_cast<float>(k) / T);
  AnaScheme a;
  a.quantizer = Quantizer::from_stair(t, q);
  a.noise = f;
  a.strategy = strategy;
  return a;
}

// A linear layer and a channels-last convolution with quantized weights.
struct Net : torch::nn::Module {
  Net(const AnaScheme& s, bool bias) {
    nn::AnaConvOptions o;
    o.in_channels = 3;
    o.out_channels = 6;
    o.kernel_size = {3};
    o.bias = bias;
    conv = register_module("conv", nn::AnaConv(s, o));
    // 86,400 weights: more than one thread's share of the step (adam_kernel.cpp's kMinParallel)
    fc = register_module("fc", nn::AnaLinear(s, 6 * 6 * 6, 400, bias));
    conv->weight.set_data(conv->weight.contiguous(c10::MemoryFormat::ChannelsLast));
  }
  // bf16: the products on bfloat16 operands (--amp), the quantized weights written in bfloat16.
  torch::Tensor forward(const torch::Tensor& x, bool bf16) {
    return fc->forward(torch::tanh(conv->forward(x, bf16)).flatten(1), bf16);
  }
  nn::AnaConv conv{nullptr};
  nn::AnaLinear fc{nullptr};
};

struct Case {
  int thresholds;
  NoiseFamily family;
  float sigma_backward;
  bool amsgrad;
  double weight_decay;
  bool adamw;
  bool bf16 = false;
  ForwardStrategy strategy = ForwardStrategy::kExpectation;
  float sigma_forward = 0.3f;
};

std::string name(const Case& c) {
  return "T=" + std::to_string(c.thresholds) + " family " + std::to_string(static_cast<int>(c.family)) + " sigma_b " +
         std::to_string(c.sigma_backward) + (c.amsgrad ? " amsgrad" : "") + " wd " + std::to_string(c.weight_decay) +
         (c.adamw ? " AdamW" : " Adam") + (c.bf16 ? " bf16" : "") + " strategy " +
         std::to_string(static_cast<int>(c.strategy)) + " sigma_f " + std::to_string(c.sigma_forward);
}

// How a training run folds: not at all, the backward alone, or also the quantized weight ahead.
enum class Fold { kNone, kBackward, kAhead };

// Called before each step's forward pass with the step's index.
using Between = std::function<void(Net&, AnaBackwardFold&, int)>;

// The parameters after `steps` steps of a squared loss; `mix_layout`: at step 2 the convolution
// weight's gradient turns NCHW (its weight is channels-last), which libtorch's step takes.
// `uses`: how many forward passes of the two layers used a quantized weight computed ahead.
std::vector<torch::Tensor> train(const Case& c, Fold fold, int threads, int steps = 4, bool mix_layout = false,
                                 const Between& between = {}, int* uses = nullptr) {
  at::set_num_threads(threads);
  torch::manual_seed(11);
  const AnaScheme s = stair(c.thresholds, c.family, c.strategy);
  auto net = std::make_shared<Net>(s, true);
  for (auto* site : {static_cast<nn::AnaSite*>(net->conv.get()), static_cast<nn::AnaSite*>(net->fc.get())})
    site->set_noise({0.05f, c.sigma_forward, c.sigma_backward});
  net->train();
  std::unique_ptr<torch::optim::Optimizer> opt;
  AnaBackwardFold* fold_of = nullptr;
  if (c.adamw) {
    auto a = std::make_unique<FusedAdamW>(
        net->parameters(), torch::optim::AdamWOptions(1e-2).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
    fold_of = &a->ana_fold;
    opt = std::move(a);
  } else {
    auto a = std::make_unique<FusedAdam>(
        net->parameters(), torch::optim::AdamOptions(1e-2).weight_decay(c.weight_decay).amsgrad(c.amsgrad));
    fold_of = &a->ana_fold;
    opt = std::move(a);
  }
  if (fold != Fold::kNone) fold_of->take(*net, net->parameters());
  fold_of->compute_ahead = fold == Fold::kAhead;
  EXPECT_EQ(net->fc->backward_folded(), fold != Fold::kNone);
  const auto x = torch::randn({16, 3, 8, 8}).contiguous(c10::MemoryFormat::ChannelsLast);
  const auto y = torch::randn({16, 400});
  if (uses != nullptr) *uses = 0;
  for (int step = 0; step < steps; ++step) {
    if (between) between(*net, *fold_of, step);
    opt->zero_grad();
    (net->forward(x, c.bf16) - y).pow(2).mean().backward();
    if (uses != nullptr)
      *uses += (net->conv->used_quantized_ahead() ? 1 : 0) + (net->fc->used_quantized_ahead() ? 1 : 0);
    if (mix_layout && step == 2) net->conv->weight.mutable_grad() = net->conv->weight.grad().contiguous();
    opt->step();
  }
  at::set_num_threads(1);
  std::vector<torch::Tensor> out;
  for (const auto& p : net->parameters()) out.push_back(p.detach().clone());
  return out;
}

void expect_same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, bool exact,
                 const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].strides(), b[i].strides()) << what << " parameter " << i;
    if (exact) {
      EXPECT_TRUE(torch::equal(a[i], b[i]))
          << what << " parameter " << i << ": differs by " << (a[i] - b[i]).abs().max().item<double>();
    } else {
      EXPECT_LE((a[i] - b[i]).abs().max().item<double>(), 2e-6 * (1 + b[i].abs().max().item<double>()))
          << what << " parameter " << i;
    }
  }
}

TEST(AnaFold, StepsAsTheUnfoldedOperatorBitForBit) {
  std::vector<Case> cases;
  for (int T : {1, 2, 3, 7})
    for (NoiseFamily f :
         {NoiseFamily::kUniform, NoiseFamily::kTriangular, NoiseFamily::kNormal, NoiseFamily::kLogistic})
      cases.push_back({T, f, 0.4f, false, 0.0, false});
  cases.push_back({2, NoiseFamily::kUniform, 0.4f, true, 0.0, false});         // amsgrad, inner loop
  cases.push_back({7, NoiseFamily::kNormal, 0.4f, true, 0.0, false});          // amsgrad, chunked
  cases.push_back({2, NoiseFamily::kUniform, 0.0f, false, 0.0, false});        // no gradient through ANA
  cases.push_back({2, NoiseFamily::kTriangular, 0.4f, true, 0.1, true});       // AdamW's decay is not L2
  cases.push_back({2, NoiseFamily::kUniform, 0.4f, false, 0.0, false, true});  // bfloat16 weight gradients
  cases.push_back({7, NoiseFamily::kLogistic, 0.4f, false, 0.0, true, true});
  // The forward strategies and the hard stair (sigma_forward 0), computed ahead or not (random).
  cases.push_back({2, NoiseFamily::kNormal, 0.4f, false, 0.0, false, false, ForwardStrategy::kMode});
  cases.push_back({3, NoiseFamily::kLogistic, 0.4f, false, 0.0, false, true, ForwardStrategy::kMode});
  cases.push_back({2, NoiseFamily::kUniform, 0.4f, false, 0.0, false, false, ForwardStrategy::kRandom});
  cases.push_back({2, NoiseFamily::kTriangular, 0.4f, false, 0.0, false, false, ForwardStrategy::kExpectation, 0.0f});
  cases.push_back({7, NoiseFamily::kUniform, 0.4f, false, 0.0, false, true, ForwardStrategy::kExpectation, 0.0f});
  const int steps = 4;
  for (const Case& c : cases) {
    for (int threads : {2, 1}) {
      if (threads == 1 && c.thresholds != 2) continue;  // one thread: the ternary cases
      const std::string what = name(c) + ", threads " + std::to_string(threads);
      int uses = -1;
      const auto folded = train(c, Fold::kAhead, threads, steps, false, {}, &uses);
      const auto unfolded = train(c, Fold::kNone, threads, steps);
      expect_same(folded, unfolded, true, what);
      expect_same(train(c, Fold::kBackward, threads, steps), unfolded, true, what + ", the backward alone");
      // Both layers' forward passes after the first step, but for the random strategy.
      const bool ahead = ana_forward_ahead_enabled() && c.strategy != ForwardStrategy::kRandom;
      EXPECT_EQ(uses, ahead ? 2 * (steps - 1) : 0) << what;
      // With sigma_backward 0 the weights' gradient is 0 and Adam leaves them where they are.
      EXPECT_EQ(torch::equal(folded[0], train(c, Fold::kNone, threads, 0)[0]), c.sigma_backward == 0.0f) << what;
    }
  }
}

// The quantized weight computed ahead is not used once the noise or the weight has changed since
// the step wrote it (the thermostat's next epoch, a checkpoint loaded, a change by hand, a step
// that did not write it); it is again after the next step.
TEST(AnaFold, TheQuantizedWeightAheadIsNotUsedOnceTheNoiseOrTheWeightChanged) {
  if (!ana_forward_ahead_enabled()) GTEST_SKIP() << "QL_UNFOLDED_ANA_FORWARD=1";
  for (bool bf16 : {false, true}) {
    const Case c{2, NoiseFamily::kUniform, 0.4f, false, 0.0, false, bf16};
    const Between change = [](Net& net, AnaBackwardFold& fold, int step) {
      if (step == 2) net.fc->set_noise({0.05f, 0.2f, 0.4f});   // a new sigma_forward for the fc layer
      if (step == 4) net.fc->set_noise({-0.05f, 0.2f, 0.4f});  // a new mu
      if (step == 6) {
        torch::NoGradGuard no_grad;
        net.conv->weight.mul_(0.5);  // in place: a new version
      }
      if (step == 8) {  // a new tensor: another storage
        torch::NoGradGuard no_grad;
        net.conv->weight.set_data(net.conv->weight.clone(c10::MemoryFormat::ChannelsLast));
      }
      // Step 9 moves the weights without writing their quantized copies: its new versions must
      // keep step 10 from the copies of step 8.
      fold.compute_ahead = step != 9;
    };
    int uses = -1;
    const auto folded = train(c, Fold::kAhead, 2, 12, false, change, &uses);
    expect_same(folded, train(c, Fold::kNone, 2, 12, false, change), true, name(c) + " with changes");
    // 11 steps after the first, two layers each, less the four passes after a change and step 10's two.
    EXPECT_EQ(uses, 2 * 11 - 4 - 2) << name(c);
  }
}

// A graph kept across a step (retain_graph) whose products saved the quantized weight computed
// ahead cannot run its backward again on the copy the step rewrote: it fails, as libtorch does
// for any tensor changed in place.
TEST(AnaFold, AGraphKeptAcrossAStepDoesNotReadTheRewrittenQuantizedWeight) {
  if (!ana_forward_ahead_enabled()) GTEST_SKIP() << "QL_UNFOLDED_ANA_FORWARD=1";
  torch::manual_seed(5);
  nn::AnaLinear fc(stair(2, NoiseFamily::kUniform), 40, 30);
  fc->set_noise({0.0f, 0.2f, 0.3f});
  fc->train();
  FusedAdam adam(fc->parameters(), torch::optim::AdamOptions(1e-2));
  adam.ana_fold.take(*fc, fc->parameters());
  const auto x = torch::randn({8, 40}, torch::requires_grad());
  for (int step = 0; step < 2; ++step) {
    adam.zero_grad();
    const auto loss = fc->forward(x).pow(2).sum();
    EXPECT_EQ(fc->used_quantized_ahead(), step == 1);
    loss.backward({}, /*retain_graph=*/true);
    adam.step();
    if (step == 1) EXPECT_THROW(loss.backward(), c10::Error);
  }
}

// A NaN sigma_backward (a broken noise schedule) gives NaN weights folded as unfolded, where a
// zero gradient would leave them in place and hide it.
TEST(AnaFold, ANanSpreadGivesNanWeightsAsTheOperatorDoes) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const Case c{2, NoiseFamily::kNormal, nan, false, 0.0, false};  // the density is NaN everywhere
  const auto folded = train(c, Fold::kAhead, 2, 1);
  const auto unfolded = train(c, Fold::kNone, 2, 1);
  ASSERT_EQ(folded.size(), unfolded.size());
  for (size_t i = 0; i < folded.size(); ++i)
    EXPECT_TRUE(torch::equal(torch::isnan(folded[i]), torch::isnan(unfolded[i]))) << "parameter " << i;
  EXPECT_TRUE(torch::isnan(folded[0]).all().item<bool>()) << "the convolution's weight";
  EXPECT_TRUE(torch::isnan(folded[2]).all().item<bool>()) << "the linear layer's weight";
}

// Adam's L2 term is added to the folded product in the same loop, where the compiler may contract
// another multiply-add than in the unfolded step: the gradients differ in their last bit here and
// there. Where the two terms nearly cancel, that rounding can change the gradient's sign and so
// the direction of Adam's step (lr at most): after one step, all but about 1 % of the values agree to 1e-6
// and none is further apart than two steps.
TEST(AnaFold, WithAdamsWeightDecayAgreesButForRounding) {
  for (int T : {2, 7}) {
    const Case c{T, NoiseFamily::kUniform, 0.4f, false, 0.05, false};
    const auto folded = train(c, Fold::kAhead, 2, 1);
    const auto unfolded = train(c, Fold::kNone, 2, 1);
    ASSERT_EQ(folded.size(), unfolded.size());
    for (size_t i = 0; i < folded.size(); ++i) {
      const auto differ = ((folded[i] - unfolded[i]).abs() > 1e-6).sum().item<int64_t>();
      EXPECT_LE(differ, 2 + folded[i].numel() / 100) << name(c) << " parameter " << i;
      EXPECT_LE((folded[i] - unfolded[i]).abs().max().item<double>(), 2 * 1e-2 + 1e-6) << name(c);
    }
    EXPECT_FALSE(torch::equal(folded[2], train(c, Fold::kNone, 2, 0)[2])) << "the weights did not move";
  }
}

// Folded, the weight's gradient is the quantized weight's; apply() makes it the weight's.
TEST(AnaFold, TheWeightHoldsTheQuantizedWeightsGradientUntilApplied) {
  torch::manual_seed(3);
  const AnaScheme s = stair(2, NoiseFamily::kTriangular);
  nn::AnaLinear fc(s, 40, 30);
  fc->set_noise({0.0f, 0.2f, 0.3f});
  fc->train();
  const auto x = torch::randn({8, 40});
  (fc->forward(x).pow(2).sum()).backward();
  const torch::Tensor unfolded = fc->weight.grad().clone();
  fc->weight.mutable_grad() = torch::Tensor();

  FusedAdam adam(fc->parameters(), torch::optim::AdamOptions(1e-3));
  adam.ana_fold.take(*fc, fc->parameters());
  const auto out = fc->forward(x);
  (out.pow(2).sum()).backward();
  torch::Tensor w = fc->weight;
  const auto of_quantized = torch::matmul((2 * out).t(), x).detach();  // d(sum y^2)/dWq for y = x Wq^T
  EXPECT_TRUE(torch::allclose(w.grad(), of_quantized, 1e-5, 1e-5));
  EXPECT_FALSE(torch::allclose(w.grad(), unfolded, 1e-3, 1e-3));
  EXPECT_TRUE(adam.ana_fold.pending(w).has_value());
  adam.ana_fold.apply(w);
  EXPECT_TRUE(torch::equal(w.grad(), unfolded));

  // A gradient recorded in evaluation mode went through the operator's own backward.
  fc->eval();
  w.mutable_grad() = torch::Tensor();
  (fc->forward(x).pow(2).sum()).backward();
  EXPECT_FALSE(adam.ana_fold.pending(w).has_value());
  fc->train();

  adam.ana_fold.release();
  EXPECT_FALSE(fc->backward_folded());
  EXPECT_FALSE(adam.ana_fold.pending(w).has_value());
}

// The layers fold only while their optimizer lives.
TEST(AnaFold, TheOptimizerGivesTheBackwardBackWhenDestroyed) {
  nn::AnaLinear fc(stair(2, NoiseFamily::kUniform), 4, 3);
  {
    FusedAdamW adamw(fc->parameters(), torch::optim::AdamWOptions(1e-3));
    adamw.ana_fold.take(*fc, fc->parameters());
    EXPECT_TRUE(fc->backward_folded());
  }
  EXPECT_FALSE(fc->backward_folded());
  FusedAdam other(fc->parameters(), torch::optim::AdamOptions(1e-3));
  other.ana_fold.take(*fc, {});  // its weight is not among the parameters given
  EXPECT_FALSE(fc->backward_folded());
}

// A gradient in another layout than its weight's: that step is libtorch's own, given the
// gradient with the derivative applied.
TEST(AnaFold, LibtorchsStepGetsTheDerivativeApplied) {
  const Case c{2, NoiseFamily::kUniform, 0.4f, false, 0.0, false};
  expect_same(train(c, Fold::kAhead, 2, 4, true), train(c, Fold::kNone, 2, 4, true), false, "mixed steps");
}

// A one-channel image (Fashion-MNIST's): channels-last from the network's first layer on
// (topology::conv_layout; a [N, 1, H, W] tensor's own strides say channels-first), and the first
// convolution's weight gradient, channels-last on its size-1 channel dimension beside the
// weight's channels-first strides, still takes the fused step that computes the next quantized
// weight ahead (it fell back to libtorch's step, for every parameter).
TEST(AnaFold, AOneChannelConvolutionComputesChannelsLastWithTheFusedStep) {
  if (!ana_forward_ahead_enabled() || !fused_adam_enabled() || !ana_backward_folding_enabled())
    GTEST_SKIP() << "the fold or the fused Adam is turned off";
  const torch::Tensor x = topology::conv_layout(torch::randn({8, 1, 6, 6}));
  EXPECT_EQ(x.suggest_memory_format(/*channels_last_strides_exact_match=*/true), c10::MemoryFormat::ChannelsLast);
  nn::AnaConvOptions o;
  o.in_channels = 1;
  o.out_channels = 4;
  o.kernel_size = {3};
  o.bias = false;
  nn::AnaConv conv(stair(2, NoiseFamily::kUniform), o);
  conv->set_noise({0.05f, 0.3f, 0.4f});
  conv->train();
  FusedAdam adam(conv->parameters(), torch::optim::AdamOptions(1e-2));
  adam.ana_fold.take(*conv, conv->parameters());
  for (int step = 0; step < 3; ++step) {
    adam.zero_grad();
    const torch::Tensor y = conv->forward(x, false);
    EXPECT_EQ(y.suggest_memory_format(true), c10::MemoryFormat::ChannelsLast) << "step " << step;
    y.pow(2).mean().backward();
    // The gradient as oneDNN's backward gives it, whatever this libtorch's backward gave:
    // channels-last strides on the size-1 channel dimension, beside the weight's channels-first ones.
    auto& g = conv->weight.mutable_grad();
    g = torch::empty(g.sizes(), g.options().memory_format(c10::MemoryFormat::ChannelsLast)).copy_(g);
    ASSERT_NE(g.strides(), conv->weight.strides());
    if (step > 0) EXPECT_TRUE(conv->used_quantized_ahead()) << "step " << step;
    adam.step();
  }
}

TEST(AnaFold, ExperimentsWithAdamFoldOthersDoNot) {
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json");
  cfg["indiv"]["net"]["params"]["capacity"] = 0.05;
  auto folded_layers = [](const Experiment& e) {
    int n = 0;
    for (const auto& m : e.net->modules(false))
      if (auto* l = dynamic_cast<nn::AnaWeightLayer*>(m.get())) n += l->backward_folded() ? 1 : 0;
    return n;
  };
  EXPECT_EQ(folded_layers(Experiment(cfg, "MLP", torch::kCPU)),
            ana_backward_folding_enabled() && fused_adam_enabled() ? 4 : 0);
  cfg["treat"]["optimizer"] = {{"class", "SGD"}, {"params", {{"lr", 0.1}}}};
  EXPECT_EQ(folded_layers(Experiment(cfg, "MLP", torch::kCPU)), 0);
}

}  // namespace
}  // namespace quantlab
