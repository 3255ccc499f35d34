// The learning-rate schedules: PyTorch's values, ReduceLROnPlateau's patience, the original's
// HandScheduler keys, and no epoch at a rate of NaN or 0.
#include <gtest/gtest.h>

#include "quantlab/train/lr_scheduler.h"
#include "quantlab/util/error.h"
#include "test_util.h"

namespace quantlab {
namespace {

double sched_lr(const nlohmann::json& spec, int64_t epoch, double base = 1.0, int64_t max_epoch = 100) {
  auto s = make_lr_scheduler(JsonNode(spec, "treat.lr_scheduler"), {base, max_epoch});
  return s->lr_for_epoch(epoch, base, 0.0);
}

TEST(LrScheduler, PureSchedulesAsPyTorch) {
  EXPECT_DOUBLE_EQ(sched_lr({{"class", "HandScheduler"}, {"params", {{"schedule", {{"5", 0.1}, {"8", 0.01}}}}}}, 4),
                   1.0);
  EXPECT_DOUBLE_EQ(sched_lr({{"class", "HandScheduler"}, {"params", {{"schedule", {{"5", 0.1}, {"8", 0.01}}}}}}, 5),
                   0.1);
  EXPECT_DOUBLE_EQ(sched_lr({{"class", "HandScheduler"}, {"params", {{"schedule", {{"5", 0.1}, {"8", 0.01}}}}}}, 9),
                   0.01);
  EXPECT_NEAR(sched_lr({{"class", "StepLR"}, {"params", {{"step_size", 3}, {"gamma", 0.5}}}}, 7), 0.25, 1e-12);
  EXPECT_NEAR(sched_lr({{"class", "MultiStepLR"}, {"params", {{"milestones", {2, 5}}}}}, 5), 0.01, 1e-12);
  EXPECT_NEAR(sched_lr({{"class", "MultiStepLR"}, {"params", {{"milestones", {2, 5}}}}}, 4), 0.1, 1e-12);
  EXPECT_NEAR(sched_lr({{"class", "CosineAnnealingLR"}, {"params", {{"T_max", 10}}}}, 5, 1.0, 10), 0.5, 1e-12);
  EXPECT_NEAR(sched_lr({{"class", "CosineAnnealingLR"}, {"params", {{"T_max", 10}, {"eta_min", 0.1}}}}, 10), 0.1,
              1e-12);
}

TEST(LrScheduler, ReduceOnPlateauWaitsPatienceEpochs) {
  const nlohmann::json spec = {
      {"class", "ReduceLROnPlateau"}, {"step_metric", "valid_metric"}, {"params", {{"patience", 2}, {"factor", 0.5}}}};
  auto s = make_lr_scheduler(JsonNode(spec, "s"), {1.0, 100});
  EXPECT_EQ(s->step_metric(), Statistic::kValidMetric);
  double lr = 1.0;
  const double metrics[] = {10, 9, 9, 9, 9, 8, 8, 8};
  std::vector<double> lrs;
  for (int e = 0; e < 8; ++e) lrs.push_back(lr = s->lr_for_epoch(e + 1, lr, metrics[e]));
  // Improvement at 0, 1; bad epochs 2, 3, 4 -> reduce after the third; 5 improves; 6, 7 bad.
  EXPECT_EQ(lrs, (std::vector<double>{1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5}));
}

// Settings that made a rate of NaN or 0 are refused or kept positive: OneCycleLR with a phase of
// no steps (pct_start x total_steps = 1: 0/0 in its first epoch's rate, which the whole-run check
// did not evaluate), ReduceLROnPlateau with a negative eps (a factor of 1e-300 then reached 0).
TEST(LrScheduler, NoScheduleTrainsAnEpochAtARateOfNaNOrZero) {
  const nlohmann::json one_cycle = {{"class", "OneCycleLR"},
                                    {"params", {{"max_lr", 0.01}, {"total_steps", 20}, {"pct_start", 0.05}}}};
  try {
    make_lr_scheduler(JsonNode(one_cycle, "treat.lr_scheduler"), {1e-3, 20});
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("treat.lr_scheduler.params.pct_start: pct_start x total_steps = 1.000000 "
                                         "gives phase 1 of the schedule no steps"),
              std::string::npos)
        << e.what();
  }
  nlohmann::json fine = one_cycle;
  fine["params"]["pct_start"] = 0.06;
  EXPECT_GT(make_lr_scheduler(JsonNode(fine, "treat.lr_scheduler"), {1e-3, 20})->initial_lr(1e-3), 0.0);
  nlohmann::json plateau = {{"class", "ReduceLROnPlateau"},
                            {"step_metric", "train_loss"},
                            {"params", {{"patience", 0}, {"factor", 1e-300}, {"eps", -1}}}};
  try {
    make_lr_scheduler(JsonNode(plateau, "treat.lr_scheduler"), {1e-3, 10});
    ADD_FAILURE() << "accepted";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("treat.lr_scheduler.params.eps: expected a non-negative change of rate"),
              std::string::npos)
        << e.what();
  }
  plateau["params"]["eps"] = 0;  // every reduction is taken, but none to 0
  auto s = make_lr_scheduler(JsonNode(plateau, "treat.lr_scheduler"), {1e-3, 10});
  double lr = 1e-3;
  for (int e = 1; e <= 5; ++e) {
    lr = s->lr_for_epoch(e, lr, 1.0);  // no improvement after the first
    EXPECT_GT(lr, 0.0) << e;
  }
}

TEST(LrScheduler, HandSchedulerKeysAreEpochsAsTheOriginalWritesThem) {
  for (const char* key : {"0700", "+700", " 700", "700 "}) {
    const nlohmann::json spec = {{"class", "HandScheduler"}, {"params", {{"schedule", {{key, 0.1}}}}}};
    try {
      make_lr_scheduler(JsonNode(spec, "treat.lr_scheduler"), {1.0, 1000});
      ADD_FAILURE() << "'" << key << "' accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("treat.lr_scheduler.params.schedule"), std::string::npos) << e.what();
    }
  }
}

}  // namespace
}  // namespace quantlab
