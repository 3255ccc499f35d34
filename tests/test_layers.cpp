// Quantized modules: they compute the float layer on ANA(weights), start as the original does,
// and re-quantize cached weights when the weights change.
#include <gtest/gtest.h>

#include "quantlab/nn/ana_layers.h"
#include "quantlab/nn/products.h"
#include "test_names.h"
#include "test_util.h"

namespace quantlab {
namespace {

AnaScheme ternary() {
  AnaScheme a;
  a.quantizer = Quantizer::from_stair({-0.5f, 0.5f}, {-1.0f, 0.0f, 1.0f});
  return a;
}

torch::Tensor hard(const torch::Tensor& w) { return (w >= 0.5f).to(torch::kFloat32) - (w < -0.5f).to(torch::kFloat32); }

TEST(AnaLayers, LinearUsesTheQuantizedWeights) {
  torch::manual_seed(0);
  nn::AnaLinear fc(ternary(), 12, 5, true);
  fc->eval();
  const auto x = torch::randn({3, 12});
  torch::NoGradGuard ng;
  EXPECT_TRUE(torch::allclose(fc->forward(x), torch::nn::functional::linear(x, hard(fc->weight), fc->bias)));
}

TEST(AnaLayers, InitialisationIsThresholdPlusUniformNoise) {
  torch::manual_seed(0);
  nn::AnaLinear fc(ternary(), 100, 50);
  const float bound = 1.0f / 10.0f;
  const auto w = fc->weight.detach();
  const auto near_low = (w + 0.5f).abs() <= bound;
  const auto near_high = (w - 0.5f).abs() <= bound;
  EXPECT_TRUE((near_low | near_high).all().item<bool>());
  const double frac_low = near_low.to(torch::kFloat64).mean().item<double>();
  EXPECT_NEAR(frac_low, 0.5, 0.05);
}

TEST(AnaLayers, ConvolutionsOfEveryRankWithGroupsStridePaddingDilation) {
  torch::manual_seed(1);
  for (int dim = 1; dim <= 3; ++dim) {
    nn::AnaConvOptions o;
    o.dim = dim;
    o.in_channels = 4;
    o.out_channels = 6;
    o.kernel_size = {3};
    o.stride = {2};
    o.padding = {1};
    o.dilation = {2};
    o.groups = 2;
    o.bias = true;
    nn::AnaConv conv(ternary(), o);
    conv->eval();
    std::vector<int64_t> shape{2, 4};
    for (int d = 0; d < dim; ++d) shape.push_back(9);
    const auto x = torch::randn(shape);
    torch::NoGradGuard ng;
    const auto w = hard(conv->weight);
    torch::Tensor ref;
    if (dim == 1) ref = torch::conv1d(x, w, conv->bias, 2, 1, 2, 2);
    if (dim == 2) ref = torch::conv2d(x, w, conv->bias, 2, 1, 2, 2);
    if (dim == 3) ref = torch::conv3d(x, w, conv->bias, 2, 1, 2, 2);
    const auto y = conv->forward(x);
    EXPECT_EQ(y.sizes(), ref.sizes()) << "dim " << dim;
    EXPECT_TRUE(torch::allclose(y, ref)) << "dim " << dim;
  }
  nn::AnaConvOptions depthwise;
  depthwise.in_channels = depthwise.out_channels = depthwise.groups = 8;
  depthwise.kernel_size = {3, 3};
  nn::AnaConv dw(ternary(), depthwise);
  EXPECT_EQ(dw->weight.sizes(), (std::vector<int64_t>{8, 1, 3, 3}));
}

TEST(AnaLayers, EvaluationCacheFollowsWeightUpdates) {
  nn::AnaLinear fc(ternary(), 4, 2);
  fc->eval();
  const auto x = torch::ones({1, 4});
  torch::NoGradGuard ng;
  const auto y1 = fc->forward(x);
  fc->weight.fill_(1.0f);  // every weight now quantizes to +1
  const auto y2 = fc->forward(x);
  EXPECT_TRUE(torch::equal(y2, torch::full({1, 2}, 4.0f))) << y1 << y2;
}

// The gradient of the real weights is the quantized weights' gradient times the derivative of
// the smoothed stair, computed here by hand: for uniform noise of spread s around the thresholds
// -0.5 and 0.5 (unit steps), d/dw = (1 / 2s) * #{thresholds t : |w - t| <= s}.
TEST(AnaLayers, TrainingGradientReachesTheRealWeights) {
  torch::manual_seed(3);
  nn::AnaLinear fc(ternary(), 4, 3);
  const float s = 0.3f;
  fc->set_noise({0.0f, s, s});
  fc->train();
  const auto x = torch::randn({2, 4});
  fc->forward(x).sum().backward();
  ASSERT_TRUE(fc->weight.grad().defined());
  // y = x Wq^T summed: dL/dWq[j][i] = sum_n x[n][i] for every output j.
  const auto dwq = x.sum(0).unsqueeze(0).expand({3, 4});
  const auto w = fc->weight.detach();
  const auto window = ((w + 0.5f).abs() <= s).to(torch::kFloat32) + ((w - 0.5f).abs() <= s).to(torch::kFloat32);
  const auto expected = dwq * window / (2 * s);
  EXPECT_TRUE(torch::allclose(fc->weight.grad(), expected, 1e-5, 1e-6)) << fc->weight.grad() << expected;
  EXPECT_GT(window.sum().item<float>(), 0.0f);  // some weights are inside a window: the test can fail
}

TEST(AnaLayers, ActivationQuantizesItsInput) {
  nn::AnaActivation act(ternary());
  act->eval();
  const auto y = act->forward(torch::tensor({-0.7f, 0.2f, 0.5f}));
  EXPECT_TRUE(torch::equal(y, torch::tensor({-1.0f, 0.0f, 1.0f})));
}

// --amp's products where the CPU has no bfloat16 units: the operands rounded to bfloat16, summed
// in float32, the result rounded to bfloat16; on the way back the incoming gradient and the
// operands' gradients rounded to bfloat16 as well, as native bfloat16 products round them.
TEST(Bf16Products, EmulatedProductsAreTheRoundedOperandsSummedInFloat32) {
  const testing::Bf16ProductsMode emulated(nn::Bf16Products::kEmulated);
  torch::manual_seed(3);
  const auto bf = [](const torch::Tensor& t) { return t.detach().to(torch::kBFloat16).to(torch::kDouble); };
  const auto x = torch::randn({8, 40}, torch::requires_grad()), w = torch::randn({12, 40}, torch::requires_grad());
  const auto gy = torch::randn({8, 12});
  const torch::Tensor y = nn::bf16_linear(x, w, torch::Tensor());
  ASSERT_EQ(y.scalar_type(), torch::kBFloat16);
  const auto ref = bf(x).mm(bf(w).t()).to(torch::kBFloat16).to(torch::kFloat32);
  // Only the order of the float32 sums differs from the exact sum: one bfloat16 step at most.
  EXPECT_TRUE(torch::allclose(y.to(torch::kFloat32), ref, 1.0 / 128, 1e-6));
  y.to(torch::kFloat32).backward(gy);
  const auto gx_ref = bf(gy).mm(bf(w)).to(torch::kFloat32), gw_ref = bf(gy).t().mm(bf(x)).to(torch::kFloat32);
  for (const auto& [g, r] : {std::make_pair(x.grad(), gx_ref), std::make_pair(w.grad(), gw_ref)}) {
    EXPECT_EQ(g.scalar_type(), torch::kFloat32);
    EXPECT_TRUE(torch::equal(g, g.to(torch::kBFloat16).to(torch::kFloat32))) << "a gradient not rounded to bfloat16";
    EXPECT_TRUE(torch::allclose(g, r, 1.0 / 128, 1e-5)) << (g - r).abs().max().item<float>();
  }
  // A channels-last convolution: the same numbers as the exact convolution of the rounded operands.
  const auto xc = torch::randn({2, 6, 7, 7}).contiguous(c10::MemoryFormat::ChannelsLast);
  const auto wc = torch::randn({5, 6, 3, 3});
  const torch::Tensor yc = nn::bf16_conv(xc, wc, torch::Tensor(), 2, {1, 1}, {1, 1}, {1, 1}, 1);
  ASSERT_EQ(yc.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(yc.is_contiguous(c10::MemoryFormat::ChannelsLast));
  const auto refc = torch::conv2d(bf(xc), bf(wc), {}, 1, 1).to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(yc.to(torch::kFloat32), refc, 1.0 / 128, 1e-5));
}

// The layers run their --amp products through them: an emulated quantized linear layer gives the
// emulated product of its quantized weight.
TEST(Bf16Products, QuantizedLayersUseThem) {
  const testing::Bf16ProductsMode emulated(nn::Bf16Products::kEmulated);
  torch::manual_seed(4);
  nn::AnaLinear fc(ternary(), 16, 8);
  fc->eval();
  const auto x = torch::randn({4, 16});
  torch::NoGradGuard no_grad;
  const auto y = fc->forward(x, true, true);
  EXPECT_EQ(y.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(torch::equal(y, nn::bf16_linear(x, hard(fc->weight), fc->bias)));  // evaluation: the hard stair
}

}  // namespace
}  // namespace quantlab
