// Losses, optimizers, and tiny training runs through the library and the command line (the
// schedules: test_lr_scheduler.cpp).
#include <gtest/gtest.h>

#include <dlfcn.h>

#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <type_traits>

#include "quantlab/train/optimizer.h"
#include "quantlab/train/trainer.h"
#include "quantlab/util/cpu_features.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "test_util.h"

namespace quantlab {
namespace {

using testing::run_cli;
using testing::TempDir;

TEST(Loss, HingeLossAsTheOriginal) {
  const auto scores = torch::tensor({{2.0f, -0.5f, 0.0f}});
  const auto labels = torch::tensor({1}, torch::kLong);
  // targets (-1, +1, -1): max(0, 1 + 2)^2, max(0, 1 - 0.5)^2, max(0, 1)^2 -> mean of 9, 2.25, 1.
  EXPECT_NEAR(hinge_loss(scores, labels, 1.0, 2.0).item<double>(), (9 + 2.25 + 1) / 3.0, 1e-6);
}

// The trainer clears the gradients before each step (train::clear_gradients) where libtorch 1.13's
// zero_grad() zeroes them in place and autograd then adds the new ones to the zeros: the same
// steps, bit for bit, for every optimizer, of a parameter the loss uses at every step (w) or at
// none (u: no gradient, no step). One it uses only at the first step (z) is skipped at the later
// steps, as on libtorch 2.x, where 1.13 stepped it with zeros (its momentum moved it on).
TEST(Optimizer, ClearedGradientsStepAsZeroedOnes) {
  const nlohmann::json optimizers = {
      {{"class", "SGD"}, {"params", {{"lr", 0.05}, {"momentum", 0.9}, {"weight_decay", 0.01}}}},
      {{"class", "Adam"}, {"params", {{"lr", 0.01}, {"weight_decay", 0.1}}}},
      {{"class", "AdamW"}, {"params", {{"lr", 0.01}}}},
      {{"class", "Adagrad"}, {"params", {{"lr", 0.1}}}},
      {{"class", "RMSprop"}, {"params", {{"lr", 0.01}, {"momentum", 0.5}}}},
  };
  torch::manual_seed(3);
  const auto x = torch::randn({16, 8}), start_w = torch::randn({4, 8}), start_u = torch::randn({4});
  for (const auto& spec : optimizers) {
    std::vector<torch::Tensor> ends[2];
    torch::Tensor z_after_first;
    for (int cleared = 0; cleared < 2; ++cleared) {
      auto w = start_w.clone().requires_grad_(true), u = start_u.clone().requires_grad_(true);
      auto z = start_u.clone().requires_grad_(true);
      auto opt = make_optimizer(JsonNode(spec, "treat.optimizer"), {w, u, z});
      for (int s = 0; s < 5; ++s) {
        if (cleared == 1) {
          clear_gradients(*opt);
          for (const auto& p : {w, u, z}) EXPECT_FALSE(p.grad().defined()) << spec.dump();
        } else {
          for (const auto& p : {w, u, z})
            if (p.grad().defined()) p.mutable_grad().zero_();
        }
        auto loss = x.matmul(w.t()).tanh().pow(2).sum() * (1 + 0.1 * s);
        if (s == 0) loss = loss + z.pow(2).sum();
        loss.backward();
        EXPECT_FALSE(u.grad().defined()) << spec.dump();
        opt->step();
        if (s == 0 && cleared == 1) z_after_first = z.detach().clone();
      }
      ends[cleared] = {w.detach(), u.detach(), z.detach()};
    }
    EXPECT_TRUE(torch::equal(ends[1][0], ends[0][0])) << spec.dump();
    EXPECT_FALSE(torch::equal(ends[1][0], start_w)) << spec.dump();
    EXPECT_TRUE(torch::equal(ends[1][1], start_u)) << spec.dump();
    EXPECT_FALSE(torch::equal(z_after_first, start_u)) << spec.dump();
    EXPECT_TRUE(torch::equal(ends[1][2], z_after_first)) << spec.dump();
  }
}

nlohmann::json tiny_config(const std::string& cls, int epochs) {
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json");
  cfg["indiv"]["net"]["class"] = cls;
  cfg["indiv"]["net"]["params"]["capacity"] = 0.05;  // 102 hidden units
  auto& bindings = cfg["treat"]["thermostat"]["params"]["bindings"];
  for (size_t k = 0; k < bindings.size(); ++k)
    bindings[k]["forward"]["params"] = {{"t_start", static_cast<int>(k)}, {"t_decay", 1}};
  if (cls == "MLPBaseline") {
    cfg["indiv"]["net"]["params"].erase("quant_schemes");
    cfg["treat"].erase("thermostat");
  }
  cfg["treat"]["max_epoch"] = epochs;
  cfg["treat"]["lr_scheduler"] = nullptr;
  cfg["treat"]["data"]["bs_train"] = 32;
  return cfg;
}

struct TinyRun {
  std::vector<EpochRecord> records;
  EpochStats test;
};

// A Trainer of `cfg` (topology MLP, seed 0) on the toy problem written in `dir`, given to `use`
// (with its Experiment where `use` takes it).
template <typename F>
auto with_trainer(const nlohmann::json& cfg, const std::string& dir, F use, TrainerOptions options = {}) {
  torch::manual_seed(0);
  Experiment exp(cfg, "MLP", torch::kCPU);
  const auto data = data::load_idx_problem(dir, exp.data);
  std::ostringstream sink;
  Progress progress(sink, false);
  Trainer trainer(exp, data, progress, std::move(options));
  if constexpr (std::is_invocable_v<F, Trainer&, Experiment&>)
    return use(trainer, exp);
  else
    return use(trainer);
}

TinyRun tiny_run(const std::string& cls, int epochs) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 640, 200, 4, false);
  return with_trainer(tiny_config(cls, epochs), dir.path(), [&](Trainer& trainer) {
    TinyRun r;
    r.records = trainer.fit(epochs);
    r.test = trainer.test();
    return r;
  });
}

// Numbers beyond float32's range are refused by their path: the first step multiplied float32
// tensors by them and stopped with libtorch's "value cannot be converted to type float without
// overflow", after the experiment was made.
TEST(Optimizer, NumbersBeyondFloat32AreRefusedByPath) {
  auto w = torch::zeros({2}, torch::requires_grad());
  const std::vector<std::pair<nlohmann::json, std::string>> bad = {
      {{{"class", "SGD"}, {"params", {{"lr", 1e300}}}},
       "treat.optimizer.params.lr: expected a positive learning rate, at most float32's 3.4e38"},
      {{{"class", "Adam"}, {"params", {{"weight_decay", 1e39}}}},
       "treat.optimizer.params.weight_decay: expected a non-negative number, at most float32's 3.4e38"},
      {{{"class", "SGD"}, {"params", {{"lr", 0.1}, {"dampening", -1e300}}}},
       "treat.optimizer.params.dampening: expected a number within float32's range"}};
  for (const auto& [spec, needle] : bad) {
    try {
      make_optimizer(JsonNode(spec, "treat.optimizer"), {w});
      ADD_FAILURE() << "accepted: " << spec.dump();
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  }
}

// A loss with reduction "sum" is reported, like a mean one, as its mean over the samples (it was
// multiplied by the batch size): the same network evaluated with both reports one value.
TEST(Training, ASummedLossIsReportedPerSample) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 160, 200, 4, false);
  std::vector<double> reported;
  for (const char* reduction : {"mean", "sum"}) {
    nlohmann::json cfg = tiny_config("MLPBaseline", 1);
    cfg["indiv"]["loss_function"] = {{"class", "CrossEntropyLoss"}, {"params", {{"reduction", reduction}}}};
    cfg["treat"]["data"]["bs_valid"] = 64;  // 200 test images: a last batch of 8
    reported.push_back(with_trainer(cfg, dir.path(), [](Trainer& trainer) { return trainer.test().loss; }));
  }
  EXPECT_GT(reported[0], 0.5);
  EXPECT_NEAR(reported[1], reported[0], 1e-5 * reported[0]);
}

// ReduceLROnPlateau on the training metric, measured every second epoch: the epochs without it are
// no bad epochs (with patience 0 the rate fell after epoch 1, where nothing was measured).
TEST(Training, APlateauScheduleSkipsEpochsThatDidNotMeasureItsStatistic) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 160, 32, 4, false);
  nlohmann::json cfg = tiny_config("MLPBaseline", 3);
  cfg["treat"]["lr_scheduler"] = {
      {"class", "ReduceLROnPlateau"}, {"step_metric", "train_metric"}, {"params", {{"patience", 0}}}};
  cfg["protocol"]["metric_period"] = 2;
  const auto records = with_trainer(cfg, dir.path(), [](Trainer& trainer) { return trainer.fit(3); });
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].lr, records[0].lr);  // epoch 1 measured nothing: epoch 2 keeps the rate
  // Epoch 2 measured the first value (an improvement on nothing): epoch 3 keeps it too.
  EXPECT_EQ(records[2].lr, records[0].lr);
}

// A cycling schedule that switches RMSprop's momentum on after the first steps (its momentum 0 at
// epoch 1, 0.5 later): the state the first steps made has no momentum buffer, and the step that
// needs one must find it (libtorch's step read the undefined buffer).
TEST(Training, AMomentumACyclingScheduleSwitchesOnLaterFindsItsBuffer) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 160, 32, 4, false);
  nlohmann::json cfg = tiny_config("MLPBaseline", 3);
  cfg["treat"]["optimizer"] = {{"class", "RMSprop"}, {"params", {{"lr", 1e-3}}}};
  cfg["treat"]["lr_scheduler"] = {
      {"class", "CyclicLR"},
      {"params",
       {{"base_lr", 1e-4}, {"max_lr", 1e-3}, {"step_size_up", 1}, {"base_momentum", 0.5}, {"max_momentum", 0.0}}}};
  TrainerOptions options;
  options.max_batches_per_epoch = 2;
  with_trainer(
      cfg, dir.path(),
      [](Trainer& trainer, Experiment& exp) {
        const auto& rms = [&] {
          return static_cast<const torch::optim::RMSpropOptions&>(exp.optimizer->param_groups()[0].options());
        };
        EXPECT_EQ(rms().momentum(), 0.0);
        ASSERT_NO_THROW(trainer.fit(3));
        EXPECT_GT(rms().momentum() + 0.5, 0.5);  // switched on at some epoch
        for (const auto& p : exp.net->parameters()) EXPECT_TRUE(torch::isfinite(p).all().item<bool>());
      },
      options);
}

// The trainer's steps clear the gradients rather than zero them (train::clear_gradients): a step
// makes every gradient anew and leaves the last step's tensors as they were. Zeroing in place
// (libtorch 1.13's zero_grad()) would overwrite them: two more passes over every gradient per step.
TEST(Training, EachStepMakesNewGradientsInsteadOfZeroingTheOldOnes) {
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 160, 32, 4, false);
  TrainerOptions options;
  options.max_batches_per_epoch = 2;
  with_trainer(
      tiny_config("MLP", 2), dir.path(),
      [](Trainer& trainer, Experiment& exp) {
        trainer.train_epoch(1);
        std::vector<torch::Tensor> held, values;
        for (const auto& p : exp.net->parameters()) {
          ASSERT_TRUE(p.grad().defined());
          held.push_back(p.grad());
          values.push_back(p.grad().clone());
        }
        trainer.train_epoch(2);
        const auto params = exp.net->parameters();
        for (size_t k = 0; k < params.size(); ++k) {
          ASSERT_TRUE(params[k].grad().defined());
          EXPECT_FALSE(params[k].grad().is_same(held[k])) << k;
          EXPECT_TRUE(torch::equal(held[k], values[k])) << "parameter " << k << ": its last gradient was written over";
        }
      },
      options);
}

TEST(Training, TernaryMlpLearnsAToyProblem) {
  const auto r = tiny_run("MLP", 6);
  ASSERT_EQ(r.records.size(), 6u);
  // All four groups annealed by epoch 5: the hard-quantized network must classify the toy bands.
  EXPECT_GT(r.records.back().valid.accuracy(), 90.0);
  EXPECT_GT(r.test.accuracy(), 90.0);
  EXPECT_EQ(r.test.samples, 200);
}

TEST(Training, BaselineMlpLearnsAToyProblem) {
  const auto r = tiny_run("MLPBaseline", 2);
  EXPECT_LT(r.records.back().train.loss, r.records.front().train.loss * 1.01);
  EXPECT_GT(r.test.accuracy(), 95.0);
}

TEST(Training, OriginalMnistConfigRunsUnchanged) {
  const std::string file = std::string(QL_SOURCE_DIR) + "/../shared/reference/original-quantlab/MNIST/config.json";
  if (!std::filesystem::exists(file)) GTEST_SKIP() << file << " is not beside this checkout";
  TempDir dir;
  testing::write_toy_idx_problem(dir.path(), 600, 64, 10, true);
  Experiment exp(read_json_file(file), "MLP", torch::kCPU);
  const auto data = data::load_idx_problem(dir.path(), exp.data);
  std::ostringstream sink;
  Progress progress(sink, false);
  TrainerOptions opts;
  opts.max_batches_per_epoch = 2;  // two steps of the full-size network
  Trainer trainer(exp, data, progress, opts);
  const auto records = trainer.fit(1);
  EXPECT_EQ(records[0].train.samples, 2 * 256);
  EXPECT_TRUE(std::isfinite(records[0].train.loss));
  EXPECT_EQ(exp.thermostat->clock(), 1);
}

TEST(Cli, TrainsAndReportsTestAccuracyWithoutATerminal) {
  TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 640, 100, 4, true);
  std::ofstream(home.path() + "/Toy/config.json") << tiny_config("MLP", 5).dump(2);
  std::string out;
  ASSERT_EQ(run_cli("--problem=Toy --topology=MLP --device=cpu --threads=1 --home=" + home.path(), out), 0) << out;
  EXPECT_NE(out.find("epoch 5/5 | train loss"), std::string::npos) << out;
  EXPECT_NE(out.find("test with the weights of the best epoch"), std::string::npos) << out;
  EXPECT_EQ(out.find('\r'), std::string::npos) << "carriage returns in non-terminal output";
}

TEST(Cli, BadInputStopsWithAMessage) {
  TempDir home;
  std::string out;
  EXPECT_EQ(run_cli("--problem=../etc --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("--problem='../etc': expected a plain folder name"), std::string::npos) << out;
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --config=Toy/config.json --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("--config='Toy/config.json': expected a plain file name in <home>/<Problem>/"), std::string::npos)
      << out;
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("--problem=Toy: no folder " + home.path() + "/Toy"), std::string::npos) << out;
  std::filesystem::create_directories(home.path() + "/Toy");
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("/Toy/config.json: no such file"), std::string::npos) << out;
  std::ofstream(home.path() + "/Toy/config.json") << "{\"indiv\": ";
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("not valid JSON"), std::string::npos) << out;
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --ckpt_every=abc", out), 2);  // a command line it cannot parse
  auto cfg = tiny_config("MLP", 1);
  cfg["treat"]["optimizer"]["params"]["lr"] = -1;
  std::ofstream(home.path() + "/Toy/config.json") << cfg.dump();
  EXPECT_EQ(run_cli("--problem=Toy --topology=MLP --home=" + home.path(), out), 1);
  EXPECT_NE(out.find("treat.optimizer.params.lr: expected a positive learning rate"), std::string::npos) << out;
}

// OpenBLAS's generic kernels on a CPU with AVX2 or AVX-512 are said out loud, with the fix.
TEST(Cli, SaysWhenOpenBlasRunsItsGenericKernels) {
  if (!__builtin_cpu_supports("avx2")) GTEST_SKIP() << "this CPU has no AVX2: the generic kernels are the right ones";
  if (!dlsym(RTLD_DEFAULT, "openblas_get_corename"))
    GTEST_SKIP() << "this libtorch does not use OpenBLAS (PyPI's PyTorch uses MKL): there is no note to give";
  TempDir home;
  std::filesystem::create_directories(home.path() + "/Toy");
  std::ofstream(home.path() + "/Toy/config.json") << "{}";
  std::string out;
  setenv("OPENBLAS_CORETYPE", "Prescott", 1);
  run_cli("--problem=Toy --topology=MLP --device=cpu --home=" + home.path(), out);
  unsetenv("OPENBLAS_CORETYPE");
  EXPECT_NE(out.find("note: OpenBLAS runs its generic Prescott kernels on this"), std::string::npos) << out;
  EXPECT_NE(out.find("export OPENBLAS_CORETYPE="), std::string::npos) << out;
}

// --amp on the CPU is fast only with AMX-BF16 or AVX512-BF16: read from /proc/cpuinfo's flags
// (both processor lines alike; the first one counts), named in the run's header, and a CPU without
// them is told so.
TEST(CpuFeatures, ReadsTheBfloat16FlagsOfCpuinfo) {
  const std::string sapphire =
      "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8481C\n"
      "flags\t\t: fpu sse2 avx2 avx512f avx512_vnni avx512_bf16 amx_bf16 amx_tile amx_int8\n\n"
      "processor\t: 1\nflags\t\t: fpu sse2\n";
  const CpuFeatures s = cpu_features_from_cpuinfo(sapphire);
  EXPECT_EQ(s.model, "Intel(R) Xeon(R) Platinum 8481C");
  EXPECT_TRUE(s.avx2 && s.avx512f && s.avx512_bf16 && s.amx_bf16 && s.avx512_vnni);
  EXPECT_TRUE(s.has_bf16_products());
  EXPECT_EQ(s.bf16_summary(), "AMX-BF16, AVX512-BF16, AVX512-VNNI");
  EXPECT_EQ(cpu_amp_note(s), "");

  const CpuFeatures skylake =
      cpu_features_from_cpuinfo("model name : Intel(R) Xeon(R) Gold 6130\nflags : avx2 avx512f amx_bf16\n");
  EXPECT_FALSE(skylake.amx_bf16);  // AMX needs its tiles too
  EXPECT_FALSE(skylake.has_bf16_products());
  EXPECT_EQ(skylake.bf16_summary(), "none of AMX-BF16, AVX512-BF16, AVX512-VNNI");
  EXPECT_NE(cpu_amp_note(skylake).find("--amp on a CPU without AMX-BF16 or AVX512-BF16 (Intel(R) Xeon(R) Gold 6130)"),
            std::string::npos);
  EXPECT_FALSE(cpu_features_from_cpuinfo("").has_bf16_products());
}

TEST(Cli, NamesTheCpusBfloat16SupportWithAmp) {
  TempDir home;
  std::filesystem::create_directories(home.path() + "/Toy");
  std::ofstream(home.path() + "/Toy/config.json") << "{}";
  std::string out;
  run_cli("--problem=Toy --topology=MLP --device=cpu --amp --home=" + home.path(), out);
  EXPECT_NE(out.find("bfloat16 products (--amp; this CPU: " + cpu_features().bf16_summary() + ")"), std::string::npos)
      << out;
  EXPECT_EQ(out.find("--amp on a CPU without") != std::string::npos, !cpu_features().has_bf16_products()) << out;
}

// Left unset, OPENBLAS_CORETYPE is set by QuantLab itself (one re-run at start-up) to the kernels of
// this CPU, and the run says so; QL_KEEP_OPENBLAS_CORETYPE keeps OpenBLAS's own (generic) choice.
TEST(Cli, ChoosesOpenBlasKernelsForACpuItDoesNotRecognise) {
  if (getenv("OPENBLAS_CORETYPE") != nullptr) GTEST_SKIP() << "OPENBLAS_CORETYPE is set for the tests";
  const std::string core = blas_better_coretype();
  if (core.empty()) GTEST_SKIP() << "OpenBLAS runs the right kernels here (or the BLAS is not OpenBLAS)";
  TempDir home;
  std::filesystem::create_directories(home.path() + "/Toy");
  std::ofstream(home.path() + "/Toy/config.json") << "{}";
  std::string out;
  run_cli("--problem=Toy --topology=MLP --device=cpu --home=" + home.path(), out);
  EXPECT_NE(out.find("note: OpenBLAS runs its " + core + " kernels: QuantLab set OPENBLAS_CORETYPE=" + core),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("runs its generic"), std::string::npos) << out;
  setenv("QL_KEEP_OPENBLAS_CORETYPE", "1", 1);
  run_cli("--problem=Toy --topology=MLP --device=cpu --home=" + home.path(), out);
  unsetenv("QL_KEEP_OPENBLAS_CORETYPE");
  EXPECT_NE(out.find("note: OpenBLAS runs its generic"), std::string::npos) << out;
  EXPECT_EQ(out.find("QuantLab set OPENBLAS_CORETYPE"), std::string::npos) << out;
}

// The command sets OMP_WAIT_POLICY before the program (and libgomp in it) loads, so the program
// starts once: libgomp's own report of its settings (OMP_DISPLAY_ENV) appears once, with the
// passive policy's spin count of 0. A re-run of the program would print two reports, the first
// with the default spin count.
TEST(Cli, TheProgramStartsOnceWithThePassiveOpenMpPolicy) {
  TempDir tmp;
  const std::string log = tmp.path() + "/log";
  // An environment without OMP_WAIT_POLICY; OpenBLAS's kernels are left alone (their re-run is the
  // test above).
  const std::vector<std::pair<std::string, std::string>> env{{"OMP_DISPLAY_ENV", "VERBOSE"},
                                                             {"QL_KEEP_OPENBLAS_CORETYPE", "1"}};
  const int code = testing::wait_exit(testing::spawn_program(QL_BINARY, {"--version"}, env, log, {"OMP_WAIT_POLICY"}));
  const std::string out = testing::slurp(log);
  ASSERT_EQ(code, 0) << out;
  size_t reports = 0;
  for (size_t at = out.find("OPENMP DISPLAY ENVIRONMENT BEGIN"); at != std::string::npos;
       at = out.find("OPENMP DISPLAY ENVIRONMENT BEGIN", at + 1))
    ++reports;
  if (reports == 0) GTEST_SKIP() << "this libtorch's OpenMP runtime is not libgomp (no OMP_DISPLAY_ENV report)";
  EXPECT_EQ(reports, 1u) << out;
  EXPECT_NE(out.find("GOMP_SPINCOUNT = '0'"), std::string::npos) << out;
  EXPECT_NE(out.find("QuantLab "), std::string::npos) << out;
}

}  // namespace
}  // namespace quantlab
