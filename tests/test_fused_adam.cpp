// The fused Adam / AdamW step (train/fused_adam.h) against libtorch's own step: the same
// parameters and moments after several steps, for every option, layout and size (one thread's
// range and several); the fallback for parameters the kernel does not take; checkpoints
// interchangeable with libtorch's optimizer.
#include <gtest/gtest.h>

#include <sstream>

#include "quantlab/train/fused_adam.h"
#include "quantlab/train/optimizer_state.h"
#include "test_names.h"

namespace quantlab {
namespace {

// Parameters of several shapes and layouts: a channels-last convolution weight, a matrix larger
// than one thread's range, a vector shorter than a vector register, a scalar.
std::vector<torch::Tensor> make_params(uint64_t seed) {
  torch::manual_seed(seed);
  return {torch::randn({8, 3, 3, 3}).contiguous(c10::MemoryFormat::ChannelsLast).requires_grad_(true),
          torch::randn({300, 500}).requires_grad_(true), torch::randn({5}).requires_grad_(true),
          torch::randn({}).requires_grad_(true)};
}

// Gives every parameter the gradient of a step-dependent quadratic, in the parameter's layout.
void set_grads(std::vector<torch::Tensor>& ps, int step) {
  for (auto& p : ps) {
    if (p.grad().defined()) p.grad().zero_();
    ((p * p * (0.5 + 0.1 * step) + p.sin()).sum()).backward();
  }
}

template <typename Optim, typename Options>
std::vector<torch::Tensor> run(const Options& o, int steps, int threads, std::vector<torch::Tensor>* moments) {
  at::set_num_threads(threads);
  auto ps = make_params(7);
  Optim opt(ps, o);
  for (int s = 0; s < steps; ++s) {
    set_grads(ps, s);
    opt.step();
  }
  if (moments != nullptr) {
    for (auto& p : ps) {
      const auto& st = opt.state().at(optimizer_state_key(opt, p));
      if constexpr (std::is_same_v<Options, torch::optim::AdamOptions>) {
        const auto& a = static_cast<const torch::optim::AdamParamState&>(*st);
        moments->push_back(a.exp_avg());
        moments->push_back(a.exp_avg_sq());
        EXPECT_EQ(a.step(), steps);
      } else {
        const auto& a = static_cast<const torch::optim::AdamWParamState&>(*st);
        moments->push_back(a.exp_avg());
        moments->push_back(a.exp_avg_sq());
        EXPECT_EQ(a.step(), steps);
      }
    }
  }
  at::set_num_threads(1);
  return ps;
}

void expect_close(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].strides(), b[i].strides()) << what << " tensor " << i;
    const double diff = (a[i] - b[i]).abs().max().item<double>();
    const double scale = b[i].abs().max().item<double>();
    EXPECT_LE(diff, 2e-6 * (1 + scale)) << what << " tensor " << i;
  }
}

TEST(FusedAdam, StepsAsLibtorchsAdamForEveryOption) {
  using torch::optim::AdamOptions;
  const std::vector<std::pair<std::string, AdamOptions>> cases = {
      {"defaults", AdamOptions(1e-3)},
      {"betas, eps", AdamOptions(1e-2).betas({0.8, 0.99}).eps(1e-6)},
      {"weight decay", AdamOptions(1e-2).weight_decay(0.1)},
      {"amsgrad", AdamOptions(1e-2).weight_decay(0.01).amsgrad(true)},
  };
  for (const auto& [name, o] : cases) {
    for (int threads : {1, 2}) {
      std::vector<torch::Tensor> mf, mr;
      const auto fused = run<FusedAdam>(o, 6, threads, &mf);
      const auto ref = run<torch::optim::Adam>(o, 6, threads, &mr);
      expect_close(fused, ref, name + " parameters, threads " + std::to_string(threads));
      expect_close(mf, mr, name + " moments, threads " + std::to_string(threads));
      EXPECT_FALSE(torch::equal(fused[1], make_params(7)[1])) << "the parameters did not move";
    }
  }
}

TEST(FusedAdam, StepsAsLibtorchsAdamW) {
  using torch::optim::AdamWOptions;
  for (const auto& o : {AdamWOptions(1e-2), AdamWOptions(1e-2).weight_decay(0.3).amsgrad(true)}) {
    std::vector<torch::Tensor> mf, mr;
    const auto fused = run<FusedAdamW>(o, 5, 2, &mf);
    const auto ref = run<torch::optim::AdamW>(o, 5, 2, &mr);
    expect_close(fused, ref, "AdamW parameters");
    expect_close(mf, mr, "AdamW moments");
  }
}

// A gradient in another layout than its parameter's: that step is libtorch's own, which carries on
// from the moments the fused steps left.
TEST(FusedAdam, FallsBackToLibtorchsStepForAnotherLayout) {
  const auto o = torch::optim::AdamOptions(1e-2);
  auto run_mixed = [&](bool fused_optimizer) {
    auto ps = make_params(3);
    std::unique_ptr<torch::optim::Optimizer> opt;
    if (fused_optimizer)
      opt = std::make_unique<FusedAdam>(ps, o);
    else
      opt = std::make_unique<torch::optim::Adam>(ps, o);
    for (int s = 0; s < 4; ++s) {
      set_grads(ps, s);
      if (s == 2) ps[0].mutable_grad() = ps[0].grad().contiguous();  // NCHW gradient, NHWC parameter
      opt->step();
    }
    return ps;
  };
  expect_close(run_mixed(true), run_mixed(false), "mixed steps");
}

// Saved from the fused optimizer, loaded into libtorch's (and back): the same state, so
// checkpoints of either resume in the other.
TEST(FusedAdam, CheckpointsAreLibtorchsAdams) {
  const auto o = torch::optim::AdamOptions(1e-2).weight_decay(0.01);
  auto ps = make_params(5);
  FusedAdam fused(ps, o);
  for (int s = 0; s < 3; ++s) {
    set_grads(ps, s);
    fused.step();
  }
  torch::serialize::OutputArchive out;
  fused.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);

  auto qs = ps;
  for (auto& q : qs) q = q.detach().clone().requires_grad_(true);
  torch::optim::Adam plain(qs, o);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  load_optimizer_state(plain, in);
  set_grads(ps, 3);
  set_grads(qs, 3);
  fused.step();
  plain.step();
  expect_close(ps, qs, "after resuming in libtorch's Adam");
}

}  // namespace
}  // namespace quantlab
