// The ANA operator against independent computations: Monte-Carlo averages of the noisy stair,
// finite differences, the straight-through estimator, sampling frequencies, and the tensor-op
// formulation.
#include <gtest/gtest.h>

#include <cmath>

#include "quantlab/core/ana.h"
#include "quantlab/core/ana_kernel.h"
#ifdef QL_WITH_CUDA
#include "quantlab/core/ana_cuda.h"
#endif
#include "quantlab/util/error.h"
#include "test_names.h"

namespace quantlab {
namespace {

AnaScheme ternary(NoiseFamily f, ForwardStrategy s = ForwardStrategy::kExpectation) {
  AnaScheme a;
  a.quantizer = Quantizer::from_stair({-0.5f, 0.5f}, {-1.0f, 0.0f, 1.0f});
  a.noise = f;
  a.strategy = s;
  return a;
}

// Samples of the zero-mean noise of family f with spread sigma, as defined in docs/ANA.md.
torch::Tensor sample_noise(NoiseFamily f, double sigma, int64_t n) {
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  switch (f) {
    case NoiseFamily::kUniform:
      return (torch::rand({n}, opts) * 2 - 1) * sigma;
    case NoiseFamily::kTriangular:  // sum of two uniforms of half-width sigma/2
      return (torch::rand({n}, opts) + torch::rand({n}, opts) - 1) * sigma;
    case NoiseFamily::kNormal:
      return torch::randn({n}, opts) * sigma;
    case NoiseFamily::kLogistic: {
      auto u = torch::rand({n}, opts).clamp(1e-12, 1 - 1e-12);
      return torch::log(u / (1 - u)) * sigma;
    }
  }
  return {};
}

// Q(v) with H(0) = 1, in double precision.
torch::Tensor hard_stair(const torch::Tensor& v, const Quantizer& q) {
  auto y = torch::full_like(v, q.levels[0]);
  for (int i = 0; i < q.num_thresholds(); ++i)
    y += (q.levels[i + 1] - q.levels[i]) * (v >= q.thresholds[i]).to(v.scalar_type());
  return y;
}

torch::Tensor forward(const torch::Tensor& x, const AnaScheme& s, NoiseState n, bool training = true) {
  return ana(x, stair_tensor(s.quantizer, torch::kCPU), s, n, training);
}

torch::Tensor gradient(const torch::Tensor& x0, const AnaScheme& s, NoiseState n) {
  auto x = x0.clone().requires_grad_(true);
  forward(x, s, n).sum().backward();
  return x.grad();
}

const NoiseFamily kFamilies[] = {NoiseFamily::kUniform, NoiseFamily::kTriangular, NoiseFamily::kNormal,
                                 NoiseFamily::kLogistic};

TEST(AnaOperator, ExpectationEqualsMonteCarloAverageForEachFamily) {
  torch::manual_seed(1);
  const std::vector<float> xs = {-1.3f, -0.7f, -0.45f, -0.1f, 0.0f, 0.2f, 0.55f, 0.9f, 1.6f};
  const auto x = torch::tensor(xs);
  for (NoiseFamily f : kFamilies) {
    const AnaScheme s = ternary(f);
    const double sigma = 0.4;
    const auto y = forward(x, s, {0.0f, static_cast<float>(sigma), static_cast<float>(sigma)});
    for (size_t i = 0; i < xs.size(); ++i) {
      const auto samples = hard_stair(xs[i] + sample_noise(f, sigma, 400000), s.quantizer);
      const double mc = samples.mean().item<double>();
      // Standard error <= 1/sqrt(4e5) ~ 1.6e-3: 5 sigma.
      EXPECT_NEAR(y[i].item<double>(), mc, 8e-3) << noise_family_name(f) << " at x = " << xs[i];
    }
  }
}

TEST(AnaOperator, MeanShiftsTheStair) {
  const AnaScheme s = ternary(NoiseFamily::kUniform);
  const auto x = torch::tensor({0.6f, 0.8f});
  const auto y = forward(x, s, {0.2f, 0.0f, 0.0f});
  EXPECT_FLOAT_EQ(y[0].item<float>(), 0.0f);  // 0.6 - 0.2 = 0.4 < 0.5
  EXPECT_FLOAT_EQ(y[1].item<float>(), 1.0f);
  const auto ys = forward(x, s, {0.2f, 0.3f, 0.3f});
  const auto ref = forward(x - 0.2f, s, {0.0f, 0.3f, 0.3f});
  EXPECT_TRUE(torch::allclose(ys, ref, 1e-6, 1e-6));
}

TEST(AnaOperator, BackwardEqualsFiniteDifferenceWhenSpreadsAreEqual) {
  for (NoiseFamily f : kFamilies) {
    const AnaScheme s = ternary(f);
    const float sigma = 0.4f;
    const NoiseState n{0.0f, sigma, sigma};
    // Points away from the kinks of the uniform and triangular densities (t +- sigma, t).
    const auto x = torch::tensor({-1.2f, -0.7f, -0.3f, 0.05f, 0.2f, 0.65f, 1.2f}, torch::kFloat64);
    const auto g = gradient(x.to(torch::kFloat32), s, n).to(torch::kFloat64);
    const double h = 1e-3;
    const auto fd = (forward((x + h).to(torch::kFloat32), s, n).to(torch::kFloat64) -
                     forward((x - h).to(torch::kFloat32), s, n).to(torch::kFloat64)) /
                    (2 * h);
    EXPECT_TRUE(torch::allclose(g, fd, 2e-3, 2e-3))
        << noise_family_name(f) << "\nanalytic " << g << "\nfinite difference " << fd;
  }
}

TEST(AnaOperator, ZeroForwardSpreadIsTheStraightThroughEstimator) {
  const AnaScheme s = ternary(NoiseFamily::kUniform);
  const auto x = torch::tensor({-1.0f, -0.6f, -0.4f, 0.0f, 0.5f, 0.7f, 1.2f});
  const NoiseState n{0.0f, 0.0f, 0.25f};
  const auto y = forward(x, s, n);
  EXPECT_TRUE(torch::equal(y, torch::tensor({-1.0f, -1.0f, 0.0f, 0.0f, 1.0f, 1.0f, 1.0f})));
  // Rectangular window of half-width 0.25 around each threshold, height d / (2 sigma_b) = 2.
  const auto g = gradient(x, s, n);
  EXPECT_TRUE(torch::allclose(g, torch::tensor({0.0f, 2.0f, 2.0f, 0.0f, 2.0f, 2.0f, 0.0f})));
}

TEST(AnaOperator, ZeroBackwardSpreadGivesZeroGradient) {
  const AnaScheme s = ternary(NoiseFamily::kNormal);
  const auto g = gradient(torch::linspace(-2, 2, 41), s, {0.0f, 0.5f, 0.0f});
  EXPECT_EQ(g.abs().sum().item<float>(), 0.0f);
}

TEST(AnaOperator, EvaluationModeAndZeroSpreadGiveTheHardStair) {
  const auto x = torch::linspace(-2, 2, 401);
  for (NoiseFamily f : kFamilies) {
    const AnaScheme s = ternary(f);
    const auto expected = hard_stair(x.to(torch::kFloat64), s.quantizer).to(torch::kFloat32);
    EXPECT_TRUE(torch::equal(forward(x, s, {0.0f, 0.5f, 0.5f}, false), expected));
    EXPECT_TRUE(torch::equal(forward(x, s, {0.0f, 0.0f, 0.5f}, true), expected));
  }
  // H(0) = 1: exactly at a threshold the upper level.
  EXPECT_EQ(forward(torch::tensor({0.5f}), ternary(NoiseFamily::kUniform), {}, false).item<float>(), 1.0f);
}

TEST(AnaOperator, RandomStrategyPicksEachLevelWithThePredictedFrequency) {
  torch::manual_seed(3);
  for (NoiseFamily f : kFamilies) {
    const AnaScheme s = ternary(f, ForwardStrategy::kRandom);
    const float sigma = 0.6f, x0 = 0.3f;
    const int64_t n = 200000;
    const auto y = forward(torch::full({n}, x0), s, {0.0f, sigma, sigma});
    // p_k from the expectation's CDFs: F_i = E-part of threshold i.
    const AnaScheme e = ternary(f);
    const auto y_exp = forward(torch::tensor({x0}), e, {0.0f, sigma, sigma}).item<double>();
    // Two thresholds: F_0 - F_1 = p_1, F_0 + F_1 - 1 = E, so check the mean and level set.
    EXPECT_NEAR(y.to(torch::kFloat64).mean().item<double>(), y_exp, 6e-3) << noise_family_name(f);
    const double p_up = (y == 1.0f).to(torch::kFloat64).mean().item<double>();
    const double p_down = (y == -1.0f).to(torch::kFloat64).mean().item<double>();
    const double p_mid = (y == 0.0f).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(p_up + p_down + p_mid, 1.0, 1e-12);
    // Direct probabilities: P(x + nu >= 0.5) and P(x + nu < -0.5).
    const auto nu = sample_noise(f, sigma, 400000);
    const double q_up = (x0 + nu >= 0.5).to(torch::kFloat64).mean().item<double>();
    const double q_down = (x0 + nu < -0.5).to(torch::kFloat64).mean().item<double>();
    EXPECT_NEAR(p_up, q_up, 6e-3) << noise_family_name(f);
    EXPECT_NEAR(p_down, q_down, 6e-3) << noise_family_name(f);
  }
}

TEST(AnaOperator, ModeStrategyPicksTheMostProbableLevel) {
  const AnaScheme s = ternary(NoiseFamily::kUniform, ForwardStrategy::kMode);
  // sigma = 0.5, x = 0.3: P(up) = P(nu >= 0.2) = 0.3, P(down) = 0, P(mid) = 0.7 -> 0.
  // x = 0.9: P(up) = P(nu >= -0.4) = 0.9 -> 1.
  const auto y = forward(torch::tensor({0.3f, 0.9f, -0.9f}), s, {0.0f, 0.5f, 0.5f});
  EXPECT_TRUE(torch::equal(y, torch::tensor({0.0f, 1.0f, -1.0f})));
}

// True when every y[j] is a level whose bin probability is within 1e-5 of the largest one.
bool is_a_most_probable_level(const torch::Tensor& x, const torch::Tensor& y, const AnaScheme& s, NoiseState n) {
  const auto& q = s.quantizer;
  const auto xd = x.to(torch::kFloat64);
  std::vector<torch::Tensor> f;  // F_i = P(x + nu >= t_i), in double, from one-step stairs
  for (int i = 0; i < q.num_thresholds(); ++i) {
    AnaScheme step = s;
    step.strategy = ForwardStrategy::kExpectation;
    step.quantizer = Quantizer::from_stair({q.thresholds[i]}, {0.0f, 1.0f});
    f.push_back(ana_tensor_ops_forward(xd, step, n.mu, n.sigma_forward));
  }
  std::vector<torch::Tensor> p;
  for (int k = 0; k <= q.num_thresholds(); ++k) {
    const auto upper = k == 0 ? torch::ones_like(xd) : f[k - 1];
    const auto lower = k == q.num_thresholds() ? torch::zeros_like(xd) : f[k];
    p.push_back(upper - lower);
  }
  const auto probs = torch::stack(p, 1);
  const auto best = std::get<0>(probs.max(1));
  auto chosen = torch::zeros_like(xd);
  for (int k = 0; k <= q.num_thresholds(); ++k)
    chosen = torch::where((y - q.levels[k]).abs() < 1e-6, probs.select(1, k), chosen);
  return (chosen >= best - 1e-5).all().item<bool>();
}

TEST(AnaOperator, FusedKernelEqualsTensorOpFormulation) {
  // Sizes below and above the threaded path and not multiples of the kernel's chunk.
  for (int64_t n : {1, 37, 5000, 100003}) {
    torch::manual_seed(n);
    const auto x = torch::randn({n}) * 1.5;
    const auto gy = torch::randn({n});
    for (NoiseFamily f : kFamilies) {
      for (ForwardStrategy st : {ForwardStrategy::kExpectation, ForwardStrategy::kMode, ForwardStrategy::kRandom}) {
        AnaScheme s = ternary(f, st);
        s.quantizer = Quantizer::from_nbits(3, true, false, 0.5f);  // 8 levels
        for (NoiseState ns :
             {NoiseState{0.0f, 0.3f, 0.3f}, NoiseState{0.1f, 0.7f, 0.2f}, NoiseState{0.0f, 0.0f, 0.4f}}) {
          torch::manual_seed(7);
          auto xg = x.clone().requires_grad_(true);
          const auto y = forward(xg, s, ns);
          y.backward(gy);
          torch::manual_seed(7);
          const auto uniform = torch::rand({n});
          const auto y_ref = ana_tensor_ops_forward(x, s, ns.mu, ns.sigma_forward, uniform);
          const auto g_ref = ana_tensor_ops_backward(x, gy, s, ns.mu, ns.sigma_backward);
          const std::string what = noise_family_name(f) + "/" + forward_strategy_name(st) + " n=" + std::to_string(n);
          if (st == ForwardStrategy::kMode && ns.sigma_forward > 0) {
            // Bins fully covered by uniform noise tie exactly; rounding may break a tie either way.
            EXPECT_TRUE(is_a_most_probable_level(x, y, s, ns)) << what;
          } else {
            // Random compares probabilities to uniforms: allow a rare 1-ulp flip.
            const double mismatch = (y - y_ref).abs().gt(1e-4).to(torch::kFloat64).mean().item<double>();
            EXPECT_LE(mismatch, st == ForwardStrategy::kExpectation ? 0.0 : 1e-3) << what;
          }
          EXPECT_TRUE(torch::allclose(xg.grad(), g_ref, 1e-4, 1e-5)) << what;
        }
      }
    }
  }
}

// The CUDA kernels against the CPU kernels (same uniforms for the random strategy) and the whole
// operator on the GPU against the CPU. Runs only where QuantLab was built with CUDA and a GPU is
// present; elsewhere it says why it skipped.
TEST(AnaOperator, CudaKernelEqualsCpuKernel) {
#ifndef QL_WITH_CUDA
  GTEST_SKIP() << "built without CUDA";
#else
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const torch::Device gpu(torch::kCUDA, 0);
  for (int64_t n : {1, 37, 100003}) {
    torch::manual_seed(n);
    const auto x = torch::randn({n}) * 1.5;
    const auto gy = torch::randn({n});
    const auto r = torch::rand({n});
    const auto xg = x.to(gpu), gyg = gy.to(gpu), rg = r.to(gpu);
    for (NoiseFamily f : kFamilies) {
      for (ForwardStrategy st : {ForwardStrategy::kExpectation, ForwardStrategy::kMode, ForwardStrategy::kRandom}) {
        AnaScheme s = ternary(f, st);
        s.quantizer = Quantizer::from_nbits(3, true, false, 0.5f);
        const auto stair_cpu = stair_tensor(s.quantizer, torch::kCPU);
        const auto stair_gpu = stair_tensor(s.quantizer, gpu);
        const int T = s.quantizer.num_thresholds();
        const kernel::Stair sc{stair_cpu.data_ptr<float>(), stair_cpu.data_ptr<float>() + T, T};
        const kernel::Stair sg{stair_gpu.data_ptr<float>(), stair_gpu.data_ptr<float>() + T, T};
        for (NoiseState ns :
             {NoiseState{0.0f, 0.3f, 0.3f}, NoiseState{0.1f, 0.7f, 0.2f}, NoiseState{0.0f, 0.0f, 0.0f}}) {
          auto y = torch::empty({n}), g = torch::empty({n});
          kernel::ana_forward(x.data_ptr<float>(), y.data_ptr<float>(), n, sc, f, st, ns.mu, ns.sigma_forward,
                              r.data_ptr<float>(), 1);
          kernel::ana_backward(x.data_ptr<float>(), gy.data_ptr<float>(), g.data_ptr<float>(), n, sc, f, ns.mu,
                               ns.sigma_backward, 1);
          auto yg = torch::empty({n}, xg.options()), gg = torch::empty({n}, xg.options());
          kernel::ana_forward_cuda(xg.data_ptr<float>(), yg.data_ptr<float>(), n, sg, f, st, ns.mu, ns.sigma_forward,
                                   rg.data_ptr<float>(), nullptr);
          kernel::ana_backward_cuda(xg.data_ptr<float>(), gyg.data_ptr<float>(), gg.data_ptr<float>(), n, sg, f, ns.mu,
                                    ns.sigma_backward, nullptr);
          const std::string what = noise_family_name(f) + "/" + forward_strategy_name(st) + " n=" + std::to_string(n);
          // Different erfc/exp implementations: a rare flip where a uniform or a tie sits on the edge.
          const double mismatch = (yg.cpu() - y).abs().gt(1e-4).to(torch::kFloat64).mean().item<double>();
          EXPECT_LE(mismatch, st == ForwardStrategy::kExpectation ? 0.0 : 1e-3) << what;
          EXPECT_TRUE(torch::allclose(gg.cpu(), g, 1e-4, 1e-5)) << what;
        }
      }
    }
    // The autograd operator on the GPU takes the kernel path and agrees with the CPU.
    const AnaScheme s = ternary(NoiseFamily::kNormal);
    const NoiseState ns{0.05f, 0.4f, 0.4f};
    auto xc = x.clone().requires_grad_(true);
    auto xgr = xg.clone().requires_grad_(true);
    ana(xc, stair_tensor(s.quantizer, torch::kCPU), s, ns, true).backward(gy);
    const auto yg = ana(xgr, stair_tensor(s.quantizer, gpu), s, ns, true);
    yg.backward(gyg);
    EXPECT_TRUE(torch::allclose(yg.cpu(), ana(x, stair_tensor(s.quantizer, torch::kCPU), s, ns, true), 1e-5, 1e-5));
    EXPECT_TRUE(torch::allclose(xgr.grad().cpu(), xc.grad(), 1e-4, 1e-5));
  }
#endif
}

// bf16_out (the quantized weight of a bfloat16 product under --amp): the kernel writes the float32
// result rounded to bfloat16, and takes a bfloat16 incoming gradient as its float32 value; every
// family and strategy, the hard stair, a channels-last weight, sizes around one chunk and threads.
TEST(AnaOperator, BfloatOutputIsTheFloatOutputRoundedAndItsGradientTheSame) {
  torch::manual_seed(4);
  const ForwardStrategy strategies[] = {ForwardStrategy::kExpectation, ForwardStrategy::kMode};
  for (const int64_t n : {int64_t{7}, int64_t{512}, int64_t{1000}, int64_t{70000}}) {
    at::set_num_threads(n > 50000 ? 2 : 1);
    const auto x0 = torch::randn({n}) * 0.8;
    const auto gy = (torch::randn({n}) * 3).to(torch::kBFloat16);
    for (NoiseFamily f : kFamilies) {
      for (ForwardStrategy st : strategies) {
        for (const float sigma : {0.0f, 0.3f}) {
          const AnaScheme s = ternary(f, st);
          const NoiseState ns{0.05f, sigma, 0.4f};
          const auto stair = stair_tensor(s.quantizer, torch::kCPU);
          auto xf = x0.clone().requires_grad_(true);
          auto xb = x0.clone().requires_grad_(true);
          const auto yf = ana(xf, stair, s, ns, true);
          const auto yb = ana(xb, stair, s, ns, true, /*bf16_out=*/true);
          ASSERT_EQ(yb.scalar_type(), torch::kBFloat16);
          EXPECT_TRUE(torch::equal(yb, yf.to(torch::kBFloat16))) << "n " << n << " sigma " << sigma;
          yf.backward(gy.to(torch::kFloat32));
          yb.backward(gy);
          ASSERT_EQ(xb.grad().scalar_type(), torch::kFloat32);
          EXPECT_TRUE(torch::equal(xb.grad(), xf.grad())) << "n " << n << " sigma " << sigma;
        }
      }
    }
  }
  at::set_num_threads(1);
  const AnaScheme s = ternary(NoiseFamily::kUniform);
  const auto w = torch::randn({8, 3, 3, 3}).contiguous(c10::MemoryFormat::ChannelsLast);
  const auto y = ana(w, stair_tensor(s.quantizer, torch::kCPU), s, {0.0f, 0.3f, 0.3f}, true, true);
  EXPECT_TRUE(y.is_contiguous(c10::MemoryFormat::ChannelsLast));
  EXPECT_TRUE(torch::equal(y, forward(w, s, {0.0f, 0.3f, 0.3f}).to(torch::kBFloat16)));
}

TEST(AnaOperator, NonContiguousAndDoubleInputs) {
  const AnaScheme s = ternary(NoiseFamily::kTriangular);
  const auto x = torch::randn({8, 6}).t();
  const NoiseState n{0.0f, 0.4f, 0.4f};
  EXPECT_TRUE(torch::allclose(forward(x, s, n), forward(x.contiguous(), s, n)));
  const auto xd = x.to(torch::kFloat64);
  EXPECT_TRUE(torch::allclose(forward(xd, s, n).to(torch::kFloat32), forward(x, s, n), 1e-5, 1e-6));
}

TEST(Quantizer, NbitsForms) {
  const auto q = Quantizer::from_nbits(2, true, false, 1.0f);
  EXPECT_EQ(q.levels, (std::vector<float>{-2, -1, 0, 1}));
  EXPECT_EQ(q.thresholds, (std::vector<float>{-1.5f, -0.5f, 0.5f}));
  const auto t = Quantizer::from_nbits(2, true, true, 0.25f);  // balanced ternary, eps 0.25
  EXPECT_EQ(t.levels, (std::vector<float>{-0.25f, 0.0f, 0.25f}));
  EXPECT_EQ(t.thresholds, (std::vector<float>{-0.125f, 0.125f}));
  EXPECT_EQ(t.scale, 0.25f);
  const auto u = Quantizer::from_nbits(1, false, false, 1.0f);
  EXPECT_EQ(u.levels, (std::vector<float>{0, 1}));
}

TEST(Quantizer, RejectsBadStairs) {
  EXPECT_THROW(Quantizer::from_stair({0.5f, -0.5f}, {-1, 0, 1}), ConfigError);
  EXPECT_THROW(Quantizer::from_stair({-0.5f, 0.5f}, {-1, 1}), ConfigError);
  EXPECT_THROW(Quantizer::from_stair({}, {0}), ConfigError);
  EXPECT_THROW(Quantizer::from_nbits(0, true, false, 1.0f), ConfigError);
  // balanced applies to signed ranges only, as the successor's setup_quantizer.
  EXPECT_EQ(Quantizer::from_nbits(2, false, true, 1.0f).levels, Quantizer::from_nbits(2, false, false, 1.0f).levels);
}

}  // namespace
}  // namespace quantlab
