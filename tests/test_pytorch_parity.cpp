// QuantLab's schedules, losses, optimizers and validation split against what PyTorch computes for
// the same parameters (Debian's python3-torch, which `make test` installs; skipped without it).
#include <gtest/gtest.h>

#include <cmath>

#include "quantlab/data/split.h"
#include "quantlab/train/loss.h"
#include "quantlab/train/lr_scheduler.h"
#include "quantlab/train/optimizer.h"
#include "quantlab/train/trainer.h"
#include "test_util.h"

namespace quantlab {
namespace {

#define REQUIRE_PYTHON_TORCH() \
  if (!testing::python_torch_available()) GTEST_SKIP() << testing::python_torch_missing()

nlohmann::json python_json(const std::string& script, const nlohmann::json& arg) {
  std::string out;
  const int code = testing::run_python(script, arg.dump(), out);
  EXPECT_EQ(code, 0) << out;
  const auto line = out.substr(out.rfind('{') == std::string::npos ? 0 : out.rfind("\n{") + 1);
  return nlohmann::json::parse(line);
}

// The rate each of `epochs` epochs trains with (and the momentum), as QuantLab sets them.
struct Course {
  std::vector<double> lr, momentum;
};

double momentum_of(const torch::optim::Optimizer& opt) {
  const auto& o = opt.param_groups().front().options();
  if (const auto* s = dynamic_cast<const torch::optim::SGDOptions*>(&o)) return s->momentum();
  if (const auto* a = dynamic_cast<const torch::optim::AdamOptions*>(&o)) return std::get<0>(a->betas());
  return NAN;
}

Course quantlab_course(const nlohmann::json& optimizer, const nlohmann::json& schedule, int epochs,
                       const std::vector<double>& metrics) {
  auto param = torch::zeros({1}, torch::requires_grad());
  auto opt = make_optimizer(JsonNode(optimizer, "treat.optimizer"), {param});
  auto sched = make_lr_scheduler(JsonNode(schedule, "treat.lr_scheduler"), {get_lr(*opt), epochs});
  // As Experiment and Trainer do: the schedule's start, then one step after each epoch.
  set_lr(*opt, sched->initial_lr(get_lr(*opt)));
  if (const auto m = sched->momentum_at(0)) set_momentum(*opt, *m);
  Course c;
  for (int e = 1; e <= epochs; ++e) {
    c.lr.push_back(get_lr(*opt));
    c.momentum.push_back(momentum_of(*opt));
    set_lr(*opt, sched->lr_for_epoch(e, get_lr(*opt), metrics[static_cast<size_t>(e - 1)]));
    if (const auto m = sched->momentum_at(e)) set_momentum(*opt, *m);
  }
  return c;
}

// Every case in one Python process (importing torch is most of a case's time).
const char* const kSchedulePython = R"PY(
import json, sys, torch
out = []
for a in json.loads(sys.argv[1])["cases"]:
    p = torch.nn.Parameter(torch.zeros(1))
    opt = getattr(torch.optim, a["optimizer"]["class"])([p], **a["optimizer"]["params"])
    s = a["schedule"]
    if s["class"] == "HandScheduler":
        # The original's HandScheduler, written as the rate factor of the last listed epoch <= e.
        table = {int(k): v for k, v in s["params"]["schedule"].items()}
        factor = lambda e: ([1.0] + [table[k] for k in sorted(table) if k <= e])[-1]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    else:
        sched = getattr(torch.optim.lr_scheduler, s["class"])(opt, **s["params"])
    lr, mom = [], []
    for e in range(a["epochs"]):
        g = opt.param_groups[0]
        lr.append(g["lr"])
        mom.append(g["momentum"] if "momentum" in g else g["betas"][0])
        if s["class"] == "ReduceLROnPlateau":
            sched.step(a["metrics"][e])
        else:
            sched.step()
    out.append({"lr": lr, "momentum": mom})
print(json.dumps({"courses": out}))
)PY";

TEST(PyTorchParity, EveryLearningRateScheduleStepsAsPyTorchsPerEpoch) {
  REQUIRE_PYTHON_TORCH();
  const nlohmann::json adam = {{"class", "Adam"}, {"params", {{"lr", 0.01}}}};
  const nlohmann::json sgd = {{"class", "SGD"}, {"params", {{"lr", 0.1}, {"momentum", 0.9}}}};
  std::vector<double> metrics;
  for (int e = 0; e < 40; ++e) metrics.push_back(e < 6 ? 10.0 - e : (e % 7 == 0 ? 3.0 : 4.0 + 0.01 * e));
  const std::vector<std::pair<nlohmann::json, const char*>> cases = {
      {adam, R"({"class": "HandScheduler", "params": {"schedule": {"0": 0.5, "7": 0.1, "20": 0.01}}})"},
      {adam, R"({"class": "StepLR", "params": {"step_size": 6, "gamma": 0.5}})"},
      {adam, R"({"class": "MultiStepLR", "params": {"milestones": [5, 12, 12, 30], "gamma": 0.3}})"},
      {adam, R"({"class": "ExponentialLR", "params": {"gamma": 0.9}})"},
      {adam, R"({"class": "CosineAnnealingLR", "params": {"T_max": 15, "eta_min": 1e-4}})"},
      {sgd,
       R"({"class": "CyclicLR", "params": {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 5, "step_size_down": 3}})"},
      {sgd,
       R"({"class": "CyclicLR", "params": {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 4, "mode": "triangular2"}})"},
      {sgd, R"({"class": "CyclicLR", "params": {"base_lr": 0.001, "max_lr": 0.1, "step_size_up": 4, "mode": "exp_range",
                "gamma": 0.95}})"},
      {sgd, R"({"class": "OneCycleLR", "params": {"max_lr": 0.2, "total_steps": 40}})"},
      {sgd,
       R"({"class": "OneCycleLR", "params": {"max_lr": 0.2, "epochs": 45, "steps_per_epoch": 1, "anneal_strategy": "linear",
                "three_phase": true}})"},
      {adam, R"({"class": "OneCycleLR", "params": {"max_lr": 0.05, "total_steps": 40, "cycle_momentum": false}})"},
      {adam, R"({"class": "ReduceLROnPlateau", "step_metric": "valid_metric",
                 "params": {"patience": 2, "factor": 0.5, "cooldown": 1, "threshold": 0.01}})"},
      {adam, R"({"class": "ReduceLROnPlateau", "step_metric": "valid_loss",
                 "params": {"mode": "max", "patience": 1, "threshold_mode": "abs", "min_lr": 0.004}})"},
  };
  const int epochs = 40;
  nlohmann::json python_cases = nlohmann::json::array();
  for (const auto& [optimizer, text] : cases) {
    nlohmann::json python_schedule = nlohmann::json::parse(text);
    python_schedule.erase("step_metric");
    python_cases.push_back(
        {{"optimizer", optimizer}, {"schedule", python_schedule}, {"epochs", epochs}, {"metrics", metrics}});
  }
  const auto courses = python_json(kSchedulePython, {{"cases", python_cases}})["courses"];
  ASSERT_EQ(courses.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [optimizer, text] = cases[i];
    const nlohmann::json schedule = nlohmann::json::parse(text);
    const auto& py = courses[i];
    const Course ql = quantlab_course(optimizer, schedule, epochs, metrics);
    ASSERT_EQ(py["lr"].size(), ql.lr.size());
    for (int e = 0; e < epochs; ++e) {
      const double want = py["lr"][e].get<double>();
      EXPECT_NEAR(ql.lr[e], want, 1e-12 + 1e-9 * std::abs(want)) << schedule.dump() << " epoch " << e + 1;
      if (optimizer["class"] == "SGD")
        EXPECT_NEAR(ql.momentum[e], py["momentum"][e].get<double>(), 1e-12)
            << schedule.dump() << " momentum, epoch " << e + 1;
    }
  }
}

const char* const kLossPython = R"PY(
import json, sys, torch
a = json.loads(sys.argv[1])
s = torch.tensor(a["scores"], dtype=torch.float64)
y = torch.tensor(a["labels"])
out = []
for spec in a["losses"]:
    cls, params = spec["class"], dict(spec.get("params", {}))
    if "weight" in params: params["weight"] = torch.tensor(params["weight"], dtype=torch.float64)
    if cls == "HingeLoss":  # the original's, written out: mean of max(0, margin - s * (+1 label, -1 else))^p
        t = -torch.ones_like(s); t[torch.arange(len(y)), y] = 1
        out.append(float(torch.clamp(params.get("margin", 1.0) - s * t, min=0).pow(params.get("p", 2.0)).mean()))
    elif cls == "MSELoss":
        out.append(float(torch.nn.MSELoss(**params)(s, torch.nn.functional.one_hot(y, s.shape[1]).double())))
    else:
        out.append(float(getattr(torch.nn, cls)(**params)(s, y)))
print(json.dumps({"loss": out}))
)PY";

TEST(PyTorchParity, LossesComputeWhatPyTorchsComputes) {
  REQUIRE_PYTHON_TORCH();
  torch::manual_seed(5);
  const auto scores = torch::randn({6, 4}, torch::kFloat64);
  const std::vector<int64_t> labels = {0, 3, 1, 1, 2, 3};
  const nlohmann::json losses = {
      {{"class", "CrossEntropyLoss"}},
      {{"class", "CrossEntropyLoss"}, {"params", {{"label_smoothing", 0.1}, {"reduction", "sum"}}}},
      {{"class", "CrossEntropyLoss"}, {"params", {{"weight", {1.0, 2.0, 0.5, 1.5}}, {"ignore_index", 1}}}},
      {{"class", "NLLLoss"}},
      {{"class", "NLLLoss"}, {"params", {{"weight", {1.0, 2.0, 0.5, 1.5}}}}},
      {{"class", "MultiMarginLoss"}},
      {{"class", "MultiMarginLoss"}, {"params", {{"p", 2}, {"margin", 0.5}}}},
      {{"class", "MSELoss"}},
      {{"class", "HingeLoss"}, {"params", {{"num_classes", 4}}}},
      {{"class", "HingeLoss"}, {"params", {{"num_classes", 4}, {"margin", 0.5}, {"p", 1.0}}}},
  };
  std::vector<std::vector<double>> rows;
  for (int64_t i = 0; i < 6; ++i) {
    std::vector<double> r;
    for (int64_t j = 0; j < 4; ++j) r.push_back(scores[i][j].item<double>());
    rows.push_back(r);
  }
  const auto py = python_json(kLossPython, {{"scores", rows}, {"labels", labels}, {"losses", losses}});
  const auto y = torch::tensor(labels);
  for (size_t k = 0; k < losses.size(); ++k) {
    const double ql = make_loss(JsonNode(losses[k], "indiv.loss_function"))(scores, y).item<double>();
    EXPECT_NEAR(ql, py["loss"][k].get<double>(), 1e-9) << losses[k].dump();
  }
}

const char* const kOptimizerPython = R"PY(
import json, sys, torch
a = json.loads(sys.argv[1])
out = []
for spec in a["optimizers"]:
    p = torch.nn.Parameter(torch.tensor(a["start"], dtype=torch.float64))
    opt = getattr(torch.optim, spec["class"])([p], **spec["params"])
    for k in range(a["steps"]):
        opt.zero_grad()
        loss = ((p - torch.tensor(a["target"], dtype=torch.float64)) ** 2).sum() * (1 + 0.1 * k)
        loss.backward()
        opt.step()
    out.append(p.detach().tolist())
print(json.dumps({"params": out}))
)PY";

TEST(PyTorchParity, OptimizersStepAsPyTorchsWithTheirDefaults) {
  REQUIRE_PYTHON_TORCH();
  const std::vector<double> start = {0.5, -1.0, 2.0}, target = {1.0, 0.0, -1.0};
  const nlohmann::json optimizers = {
      {{"class", "SGD"}, {"params", {{"lr", 0.05}}}},
      {{"class", "SGD"}, {"params", {{"lr", 0.05}, {"momentum", 0.9}, {"nesterov", true}, {"weight_decay", 0.01}}}},
      {{"class", "SGD"}, {"params", {{"lr", 0.05}, {"momentum", 0.5}, {"dampening", 0.1}}}},
      {{"class", "Adam"}, {"params", nlohmann::json::object()}},
      {{"class", "Adam"}, {"params", {{"lr", 0.01}, {"betas", {0.8, 0.99}}, {"weight_decay", 0.1}, {"amsgrad", true}}}},
      {{"class", "AdamW"}, {"params", {{"lr", 0.01}}}},
      {{"class", "Adagrad"}, {"params", nlohmann::json::object()}},
      {{"class", "Adagrad"}, {"params", {{"lr", 0.1}, {"lr_decay", 0.01}, {"initial_accumulator_value", 0.1}}}},
      {{"class", "RMSprop"}, {"params", nlohmann::json::object()}},
      {{"class", "RMSprop"}, {"params", {{"lr", 0.01}, {"momentum", 0.5}, {"centered", true}, {"weight_decay", 0.01}}}},
  };
  const int steps = 7;
  const auto py = python_json(kOptimizerPython,
                              {{"optimizers", optimizers}, {"start", start}, {"target", target}, {"steps", steps}});
  const auto goal = torch::tensor(target, torch::kFloat64);
  for (size_t k = 0; k < optimizers.size(); ++k) {
    auto p = torch::tensor(start, torch::kFloat64).requires_grad_(true);
    auto opt = make_optimizer(JsonNode(optimizers[k], "treat.optimizer"), {p});
    for (int s = 0; s < steps; ++s) {
      clear_gradients(*opt);  // as the trainer does; PyTorch 1.13's zero_grad() zeroes them
      ((p - goal).pow(2).sum() * (1 + 0.1 * s)).backward();
      opt->step();
    }
    for (size_t i = 0; i < start.size(); ++i)
      EXPECT_NEAR(p[static_cast<int64_t>(i)].item<double>(), py["params"][k][i].get<double>(), 1e-12)
          << optimizers[k].dump() << " parameter " << i;
  }
}

// With the same seed, the validation images are the original's: torch.manual_seed(1234) and
// torch.randperm(N), the first int(N * (1 - fraction)) training.
TEST(PyTorchParity, ValidationSplitIsTheOriginals) {
  REQUIRE_PYTHON_TORCH();
  const auto py = python_json(R"PY(
import json, sys, torch
torch.manual_seed(1234)
perm = torch.randperm(60000).tolist()
n = int(60000 * (1.0 - 0.1))
print(json.dumps({"valid": perm[n:n + 50], "count": 60000 - n, "train_head": perm[:20]}))
)PY",
                              nlohmann::json::object());
  const data::Split s = data::split_indices(60000, 0.1, 1234);
  ASSERT_EQ(static_cast<int64_t>(s.valid.size()), py["count"].get<int64_t>());
  for (size_t i = 0; i < 50; ++i) EXPECT_EQ(s.valid[i], py["valid"][i].get<int64_t>()) << i;
  for (size_t i = 0; i < 20; ++i) EXPECT_EQ(s.train[i], py["train_head"][i].get<int64_t>()) << i;
}

}  // namespace
}  // namespace quantlab
