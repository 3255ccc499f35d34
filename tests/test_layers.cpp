// Quantized modules: they compute the float layer on ANA(weights), start as the original does,
// and re-quantize cached weights when the weights change.
#include <gtest/gtest.h>

#include "quantlab/nn/ana_layers.h"
#include "test_names.h"

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

}  // namespace
}  // namespace quantlab
