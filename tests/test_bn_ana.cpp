// Batch norm fused with the ANA activation after it (core/bn_ana.h) against the batch norm module
// followed by the ANA operator: forward, gradients, running statistics, bfloat16 input and output;
// and a network whose training steps take the fused path against the same network run step by step.
#include <gtest/gtest.h>

#include "quantlab/core/bn_ana.h"
#include "quantlab/nn/ana_site.h"
#include "quantlab/topology/step_network.h"
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

core::BatchNormRefs refs_of(torch::nn::BatchNorm2d& m) {
  return {m->weight, m->bias, m->running_mean, m->running_var, m->num_batches_tracked, 0.1, m->options.eps()};
}

// A batch norm over `channels` with weights and biases away from 1 and 0.
torch::nn::BatchNorm2d make_bn(int64_t channels) {
  torch::nn::BatchNorm2d bn(channels);
  torch::NoGradGuard ng;
  bn->weight.uniform_(0.5, 1.5);
  bn->bias.uniform_(-0.3, 0.3);
  return bn;
}

// x in the layout the fused operator takes: [rows, C] or channels-last [N, C, H, W].
torch::Tensor input(const std::vector<int64_t>& shape, torch::ScalarType t = torch::kFloat32) {
  auto x = (torch::randn(shape) * 2.0 + 0.7).to(t);
  return shape.size() == 4 ? x.contiguous(c10::MemoryFormat::ChannelsLast) : x;
}

struct Grads {
  torch::Tensor y, gx, gw, gb;
};

Grads run(bool fused, const torch::Tensor& x0, const torch::Tensor& gy, torch::nn::BatchNorm2d& bn, const AnaScheme& s,
          const NoiseState& n, torch::ScalarType out = torch::kFloat32) {
  bn->train();
  for (auto& p : bn->parameters()) p.mutable_grad() = torch::Tensor();
  const torch::Tensor x = x0.detach().requires_grad_(true);
  torch::Tensor y;
  if (fused) {
    EXPECT_TRUE(core::bn_ana_fusable(x, refs_of(bn)));
    y = core::bn_ana(x, refs_of(bn), core::stair_tensor(s.quantizer, torch::kCPU), s, n, out);
  } else {  // the module wants [N, C, ...]; a [rows, C] matrix is [rows, C, 1, 1]
    const torch::Tensor x4 = x.dim() == 2 ? x.unsqueeze(2).unsqueeze(3) : x;
    torch::Tensor z = bn->forward(x4.to(torch::kFloat32));
    z = core::ana(z, core::stair_tensor(s.quantizer, torch::kCPU), s, n, true);
    y = (x.dim() == 2 ? z.squeeze(3).squeeze(2) : z).to(out);
  }
  y.backward(gy.to(y.scalar_type()));
  return {y.detach(), x.grad(), bn->weight.grad().clone(), bn->bias.grad().clone()};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double rtol, double atol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const auto af = a.to(torch::kFloat32), bf = b.to(torch::kFloat32);
  EXPECT_TRUE(torch::allclose(af, bf, rtol, atol))
      << what << ": max difference " << (af - bf).abs().max().item<float>();
}

TEST(BnAna, MatchesTheBatchNormModuleThenTheAnaOperator) {
  // Rows shorter and longer than the kernel's chunk (512 values), a last chunk that is not full.
  // The last shape is large enough for two threads, which split its rows.
  const std::vector<std::vector<int64_t>> shapes = {{37, 5}, {9, 600}, {3, 7, 5, 4}, {2, 520, 3, 3}, {70, 520}};
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  for (const auto& shape : shapes)
    for (NoiseFamily f :
         {NoiseFamily::kUniform, NoiseFamily::kTriangular, NoiseFamily::kNormal, NoiseFamily::kLogistic}) {
      torch::manual_seed(3);
      const AnaScheme s = ternary(f);
      const NoiseState n{0.05f, 0.4f, 0.6f};
      const auto x = input(shape);
      const auto gy = torch::randn(x.sizes()).contiguous(x.suggest_memory_format());
      auto bn_a = make_bn(shape[1]);
      auto bn_b = torch::nn::BatchNorm2d(shape[1]);
      {
        torch::NoGradGuard ng;
        bn_b->weight.copy_(bn_a->weight);
        bn_b->bias.copy_(bn_a->bias);
      }
      const Grads want = run(false, x, gy, bn_b, s, n), got = run(true, x, gy, bn_a, s, n);
      const std::string what =
          "shape " + std::to_string(shape.size()) + "-d, C " + std::to_string(shape[1]) + ", " + noise_family_name(f);
      expect_close(got.y, want.y, 1e-4, 1e-5, what + ", y");
      expect_close(got.gx, want.gx, 1e-3, 1e-5, what + ", grad x");
      expect_close(got.gw, want.gw, 1e-3, 1e-4, what + ", grad gamma");
      expect_close(got.gb, want.gb, 1e-3, 1e-4, what + ", grad beta");
      expect_close(bn_a->running_mean, bn_b->running_mean, 1e-5, 1e-6, what + ", running mean");
      expect_close(bn_a->running_var, bn_b->running_var, 1e-5, 1e-6, what + ", running var");
      EXPECT_EQ(bn_a->num_batches_tracked.item<int64_t>(), 1);
    }
  at::set_num_threads(threads);
}

TEST(BnAna, HardStairModeAndNoBackwardSpread) {
  torch::manual_seed(4);
  const auto x = input({4, 16, 6, 6});
  const auto gy = torch::randn(x.sizes()).contiguous(c10::MemoryFormat::ChannelsLast);
  for (ForwardStrategy st : {ForwardStrategy::kExpectation, ForwardStrategy::kMode}) {
    const AnaScheme s = ternary(NoiseFamily::kNormal, st);
    const NoiseState n{0.0f, st == ForwardStrategy::kMode ? 0.3f : 0.0f, 0.0f};  // sigma_b 0: no gradient
    auto bn_a = make_bn(16), bn_b = torch::nn::BatchNorm2d(16);
    {
      torch::NoGradGuard ng;
      bn_b->weight.copy_(bn_a->weight);
      bn_b->bias.copy_(bn_a->bias);
    }
    const Grads want = run(false, x, gy, bn_b, s, n), got = run(true, x, gy, bn_a, s, n);
    // Levels of a stair: a value on a threshold may round either way; none here does.
    EXPECT_TRUE(torch::equal(got.y, want.y));
    EXPECT_EQ(got.gx.abs().max().item<float>(), 0.0f);
    EXPECT_EQ(got.gw.abs().max().item<float>(), 0.0f);
  }
}

TEST(BnAna, ReadsAndWritesBFloat16WithFloat32Arithmetic) {
  torch::manual_seed(5);
  const AnaScheme s = ternary(NoiseFamily::kUniform);
  const NoiseState n{0.0f, 0.5f, 0.5f};
  const auto x = input({4, 24, 8, 8}, torch::kBFloat16);
  const auto gy = torch::randn(x.sizes()).to(torch::kBFloat16).contiguous(c10::MemoryFormat::ChannelsLast);
  auto bn_a = make_bn(24), bn_b = torch::nn::BatchNorm2d(24);
  {
    torch::NoGradGuard ng;
    bn_b->weight.copy_(bn_a->weight);
    bn_b->bias.copy_(bn_a->bias);
  }
  // The reference: the bfloat16 values as float32, batch norm and ANA in float32, the result rounded.
  const Grads want = run(false, x, gy, bn_b, s, n, torch::kBFloat16);
  const Grads got = run(true, x, gy, bn_a, s, n, torch::kBFloat16);
  EXPECT_EQ(got.y.scalar_type(), torch::kBFloat16);
  EXPECT_EQ(got.gx.scalar_type(), torch::kBFloat16);
  EXPECT_TRUE(got.y.is_contiguous(c10::MemoryFormat::ChannelsLast));
  // Equal but where float rounding moved a value across a bfloat16 rounding boundary (one unit of
  // 2^-8 relative).
  const double same = got.y.eq(want.y).to(torch::kFloat64).mean().item<double>();
  EXPECT_GT(same, 0.98) << same;
  expect_close(got.y, want.y, 1.0 / 128, 1e-6, "y");
  expect_close(got.gx, want.gx, 1.0 / 64, 1e-4, "grad x");
  expect_close(got.gw, want.gw, 1e-3, 1e-3, "grad gamma");
  // A float32 output of a bfloat16 input, and the reverse.
  const Grads f32 = run(true, x, gy, bn_a, s, n, torch::kFloat32);
  EXPECT_EQ(f32.y.scalar_type(), torch::kFloat32);
  expect_close(f32.y, want.y, 1.0 / 128, 1e-6, "float32 y");
  const Grads from32 = run(true, x.to(torch::kFloat32), gy, bn_a, s, n, torch::kBFloat16);
  EXPECT_EQ(from32.gx.scalar_type(), torch::kFloat32);
}

TEST(BnAna, TakesOnlyWhatItCanCompute) {
  auto bn = make_bn(8);
  const auto r = refs_of(bn);
  EXPECT_TRUE(core::bn_ana_fusable(torch::randn({4, 8}), r));
  EXPECT_TRUE(core::bn_ana_fusable(torch::randn({2, 8, 3, 3}).contiguous(c10::MemoryFormat::ChannelsLast), r));
  EXPECT_FALSE(core::bn_ana_fusable(torch::randn({2, 8, 3, 3}), r));  // channels-first
  EXPECT_FALSE(core::bn_ana_fusable(torch::randn({1, 8}), r));        // one value per channel
  EXPECT_FALSE(core::bn_ana_fusable(torch::randn({4, 8}).to(torch::kFloat64), r));
  EXPECT_FALSE(core::bn_ana_fusable(torch::randn({4, 6}), r));  // not its channels
}

// conv - max pool - bn - act - conv - bn - act - flatten - linear - bn - act: every batch norm fused.
std::shared_ptr<topology::StepNetwork> small_net() {
  using namespace topology::step;  // NOLINT(google-build-using-namespace)
  topology::Steps steps = {conv("c1", 3, 8, 3, 1, 1),    max_pool(2, 2), bn2d("b1", 8), act("a1"),
                           conv("c2", 8, 16, 3, 1, 1),   bn2d("b2", 16), act("a2"),     flatten(),
                           linear("f3", 16 * 4 * 4, 10), bn1d("b3", 10), act("a3")};
  nlohmann::json schemes;
  for (const char* m : {"c1", "a1", "c2", "a2", "f3", "a3"}) schemes[m] = {"uniform", {-0.5, 0.5}, {-1.0, 0.0, 1.0}};
  auto net =
      topology::make_step_network("Small", steps, config::JsonNode({{"quant_schemes", schemes}}, "params"), false);
  for (auto& m : net->modules())
    if (auto* site = dynamic_cast<nn::AnaSite*>(m.get())) site->set_noise({0.0f, 0.4f, 0.5f});
  return std::dynamic_pointer_cast<topology::StepNetwork>(net);
}

TEST(BnAna, ANetworkTrainsTheSameFusedAndStepByStep) {
  for (bool amp : {false, true}) {
    torch::manual_seed(6);
    auto a = small_net(), b = small_net();
    {
      torch::NoGradGuard ng;
      auto pa = a->parameters(), pb = b->parameters();
      for (size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
    }
    a->set_mixed_precision(amp);
    b->set_mixed_precision(amp);
    a->train();
    b->train();
    const auto x = torch::randn({6, 3, 8, 8}).contiguous(c10::MemoryFormat::ChannelsLast);
    const torch::Tensor ya = a->forward(x);  // fused
    const torch::Tensor yb = b->forward(x, [](const topology::Step&, const torch::Tensor&, const torch::Tensor&) {});
    ASSERT_NE(ya.grad_fn(), nullptr);
    EXPECT_NE(ya.grad_fn()->name().find("BnAnaFunction"), std::string::npos) << ya.grad_fn()->name();
    EXPECT_EQ(yb.grad_fn()->name().find("BnAnaFunction"), std::string::npos) << yb.grad_fn()->name();
    ya.pow(2).sum().backward();
    yb.pow(2).sum().backward();
    const double tol = amp ? 2e-2 : 1e-4;
    expect_close(ya, yb, tol, tol, std::string("output") + (amp ? " (--amp)" : ""));
    auto pa = a->named_parameters(), pb = b->named_parameters();
    for (const auto& p : pa) {
      const auto& q = pb[p.key()];
      const double scale = std::max(1e-3, q.grad().abs().max().item<double>());
      expect_close(p.value().grad() / scale, q.grad() / scale, tol, tol, "grad " + p.key() + (amp ? " (--amp)" : ""));
    }
  }
}

}  // namespace
}  // namespace quantlab
