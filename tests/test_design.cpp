// Many experiments from one design: --set overrides, compare and diff (docs/EXPERIMENTS.md).
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <functional>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "quantlab/config/overrides.h"
#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/sweep.h"
#include "quantlab/train/experiment.h"
#include "quantlab/train/optimizer_state.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "test_util.h"
#include "toy_home.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::error_of;
using testing::Home;
using testing::run;
using testing::TempDir;

TEST(Overrides, DottedPathsJsonValuesAndTheirRecord) {
  nlohmann::json c = {{"treat",
                       {{"optimizer", {{"class", "Adam"}, {"params", {{"lr", 1e-3}}}}},
                        {"thermostat", {{"bindings", {{{"forward", {{"class", "uniform"}}}}}}}}}},
                      {"indiv", {{"net", {{"pretrained", nullptr}}}}}};
  apply_overrides(
      c, std::vector<std::string>{"treat.optimizer.params.lr=0.003", "treat.optimizer.class=SGD",
                                  "treat.thermostat.bindings.0.forward.class=normal",
                                  "+treat.optimizer.params.momentum=0.9", R"(indiv.net.pretrained={"exp_id": 1})"});
  EXPECT_DOUBLE_EQ(c["treat"]["optimizer"]["params"]["lr"].get<double>(), 0.003);
  EXPECT_EQ(c["treat"]["optimizer"]["class"], "SGD");  // not JSON: a string
  EXPECT_EQ(c["treat"]["thermostat"]["bindings"][0]["forward"]["class"], "normal");
  EXPECT_DOUBLE_EQ(c["treat"]["optimizer"]["params"]["momentum"].get<double>(), 0.9);
  EXPECT_EQ(c["indiv"]["net"]["pretrained"]["exp_id"], 1);  // a null takes anything
  ASSERT_EQ(c["overrides"].size(), 5u);
  EXPECT_EQ(c["overrides"][0], "treat.optimizer.params.lr=0.003");
  // Refused, naming the argument and the path.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"treat.optimizer.params.lrr=0.1", "treat.optimizer.params has no key lrr (keys: lr, momentum)"},
      {"treat.optimiser.class=SGD", "treat has no key optimiser (keys: optimizer, thermostat)"},
      {"treat.optimizer.params.lr=fast",
       "treat.optimizer.params.lr is a number in the config, and the value given is a string"},
      {"treat.thermostat.bindings.3.forward.class=x", "treat.thermostat.bindings has no element 3 (it has 1 elements)"},
      {"+treat.optimizer.params.lr=1", "treat.optimizer.params.lr is in the config already"},
      {"treat..lr=1", "an empty step in the path"},
      {"treat.optimizer.params.lr", "expected PATH=VALUE"},
      {"treat.optimizer.class.x=1", "treat.optimizer.class is a string, not an object or list"},
  };
  for (const auto& [arg, needle] : bad) {
    nlohmann::json copy = c;
    const std::string e = error_of([&] { apply_overrides(copy, std::vector<std::string>{arg}); });
    EXPECT_NE(e.find("--set " + arg + ": "), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << arg << ": " << e;
  }
}

TEST(Overrides, AStarStepSetsEveryKeyOrElement) {
  nlohmann::json c = {{"schemes",
                       {{"phi1", {{"noise", "uniform"}, {"spread", {0.5, 0.5}}}},
                        {"phi2", {{"noise", "uniform"}, {"spread", {0.5, 0.5}}}}}},
                      {"groups", {{{"t", 1}}, {{"t", 2}}, {{"t", 3}}}},
                      {"empty", nlohmann::json::object()}};
  apply_overrides(c, std::vector<std::string>{"schemes.*.noise=logistic", "schemes.*.spread=[0.1, 0.2]", "groups.*.t=7",
                                              "+schemes.*.strategy=mode"});
  for (const char* m : {"phi1", "phi2"}) {
    EXPECT_EQ(c["schemes"][m]["noise"], "logistic");
    EXPECT_EQ(c["schemes"][m]["spread"], nlohmann::json({0.1, 0.2}));
    EXPECT_EQ(c["schemes"][m]["strategy"], "mode");
  }
  for (const auto& g : c["groups"]) EXPECT_EQ(g["t"], 7);
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"empty.*.x=1", "empty is empty, so * matches nothing"},
      {"schemes.phi1.noise.*=1", "schemes.phi1.noise is a string, so * matches nothing"},
      {"schemes.*=1", "schemes.phi1 is an object in the config, and the value given is a number"},
      {"schemes.*.nois=x", "schemes.phi1 has no key nois"},
      {"groups.*.t=x", "groups.0.t is a number in the config, and the value given is a string"},
  };
  for (const auto& [arg, needle] : bad) {
    nlohmann::json copy = c;
    const std::string e = error_of([&] { apply_overrides(copy, std::vector<std::string>{arg}); });
    EXPECT_NE(e.find("--set " + arg + ": "), std::string::npos) << e;
    EXPECT_NE(e.find(needle), std::string::npos) << arg << ": " << e;
  }
}

TEST(Overrides, ALaunchRecordsThemAndABadOneCreatesNothing) {
  Home home;
  auto o = home.options();
  o.overrides = {"treat.optimizer.params.lr=0.004", "indiv.net.params.capacity=0.03"};
  run(o);
  const auto stored = read_json_file(home.logs() + "/exp001/config.json");
  EXPECT_DOUBLE_EQ(stored["treat"]["optimizer"]["params"]["lr"].get<double>(), 0.004);
  EXPECT_DOUBLE_EQ(stored["indiv"]["net"]["params"]["capacity"].get<double>(), 0.03);
  EXPECT_EQ(stored["overrides"], nlohmann::json({"treat.optimizer.params.lr=0.004", "indiv.net.params.capacity=0.03"}));
  // The problem's own config is left as it is.
  EXPECT_EQ(read_json_file(home.dir.path() + "/Toy/config.json").count("overrides"), 0u);
  // A missing path, a wrong type, and a key the parser does not know: nothing is created.
  for (const std::string bad : {"treat.optimizer.params.lrr=1", "treat.max_epoch=\"two\"", "+treat.speed=3"}) {
    auto b = home.options();
    b.overrides = {bad};
    const std::string e = error_of([&] { run(b); });
    EXPECT_NE(e.find("treat."), std::string::npos) << bad << ": " << e;
    EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1})) << bad;
  }
  // --set with --exp_id alone is refused (the experiment has its config); with --branch it is the
  // branch's change, recorded after the parent's.
  auto r = home.options();
  r.exp_id = 1;
  r.overrides = {"treat.max_epoch=2"};
  EXPECT_NE(error_of([&] { run(r); }).find("add --branch"), std::string::npos);
  r.branch = true;
  r.load = "last";
  EXPECT_EQ(run(r).epochs_done, 2);
  const auto branch = read_json_file(home.logs() + "/exp002/config.json");
  EXPECT_EQ(branch["treat"]["max_epoch"], 2);
  EXPECT_EQ(branch["overrides"].size(), 3u);
  EXPECT_EQ(branch["overrides"][2], "treat.max_epoch=2");
}

// Experiment 1 of `home`, trained one epoch, then its config.json changed by `change`: the config
// it now has.
nlohmann::json trained_then_edited(const Home& home, const std::function<void(nlohmann::json&)>& change) {
  run(home.options());
  const std::string config_file = home.logs() + "/exp001/config.json";
  auto cfg = read_json_file(config_file);
  change(cfg);
  std::ofstream(config_file) << cfg.dump(2);
  return cfg;
}

// A resume trains with the optimizer settings of the experiment's config as it is now (edited
// after a divergence, as the error advises), and a branch with its --set: the rate of the
// schedule at that epoch, the weight decay. A branch whose --set the checkpoint cannot take (the
// network's size) is refused before it is made; one with another optimizer class starts it anew.
TEST(Overrides, AResumeOrABranchTrainsWithTheConfigsOptimizerSettings) {
  Home home;
  const nlohmann::json cfg = trained_then_edited(home, [](nlohmann::json& c) {
    c["treat"]["max_epoch"] = 2;
    c["treat"]["optimizer"]["params"]["lr"] = 5e-4;
    c["treat"]["optimizer"]["params"]["weight_decay"] = 0.01;
  });
  auto o = home.options();
  o.exp_id = 1;
  std::ostringstream out;
  EXPECT_EQ(experiment::launch(o, nullptr, out).epochs_done, 2);
  EXPECT_NE(out.str().find("note: the config gives epoch 2 the learning rate 0.0005, the checkpoint's run 0.001"),
            std::string::npos)
      << out.str();
  EXPECT_NE(out.str().find("epoch 2/2 |"), std::string::npos) << out.str();
  EXPECT_NE(out.str().find("| lr 0.0005 |"), std::string::npos) << out.str();
  {  // the settings epoch 2 trained with, as its checkpoint's optimizer archive keeps them
    const Checkpoint c = load_checkpoint(home.logs() + "/exp001/saves/last.ckpt");
    EXPECT_DOUBLE_EQ(c.lr, 5e-4);
    Experiment probe(cfg, "MLP", torch::kCPU);
    torch::serialize::InputArchive archive;
    std::istringstream is(std::string(static_cast<const char*>(c.optimizer.data_ptr()), c.optimizer.numel()));
    archive.load_from(is);
    train::load_optimizer_state(*probe.optimizer, archive);
    const auto& adam = static_cast<const torch::optim::AdamOptions&>(probe.optimizer->param_groups()[0].options());
    EXPECT_DOUBLE_EQ(adam.weight_decay(), 0.01);
  }
  auto b = home.options();
  b.exp_id = 1, b.branch = true, b.load = "last";
  b.overrides = {"indiv.net.params.capacity=0.05"};
  const std::string e = error_of([&] { run(b); });
  EXPECT_NE(e.find("last.ckpt cannot start a branch with this config (its --set changes what the checkpoint holds?)"),
            std::string::npos)
      << e;
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1}));
  b.overrides = {"treat.optimizer.class=SGD", "treat.max_epoch=3"};
  std::ostringstream branched;
  EXPECT_EQ(experiment::launch(b, nullptr, branched).epochs_done, 3) << branched.str();
  EXPECT_NE(branched.str().find("note: experiment 1 trained with Adam: the branch's SGD optimizer starts anew"),
            std::string::npos)
      << branched.str();
  // A checkpoint of another optimizer class: refused for training on, its weights taken for a test
  // or an export (a branch's inherited best.ckpt).
  const Checkpoint adam = load_checkpoint(home.logs() + "/exp001/saves/last.ckpt");
  nlohmann::json sgd = cfg;
  sgd["treat"]["optimizer"]["class"] = "SGD";
  sgd["treat"]["optimizer"]["params"] = {{"lr", 0.01}};
  Experiment other(sgd, "MLP", torch::kCPU);
  EXPECT_THROW(restore(other, adam), OptimizerMismatch);
  EXPECT_NO_THROW(restore(other, adam, false));
  // A ReduceLROnPlateau run that had reduced its rate keeps it, restored once or twice (a branch
  // restores before it is made and again when it starts).
  nlohmann::json plateau = cfg;
  plateau["treat"]["lr_scheduler"] = {
      {"class", "ReduceLROnPlateau"}, {"step_metric", "valid_metric"}, {"params", {{"patience", 0}}}};
  Experiment reduced(plateau, "MLP", torch::kCPU);
  Checkpoint at_tenth = adam;
  at_tenth.first_lr = reduced.first_lr;
  at_tenth.lr = reduced.first_lr / 10;
  at_tenth.lr_scheduler = reduced.lr_scheduler->state();
  for (int k = 0; k < 2; ++k) {
    restore(reduced, at_tenth);
    EXPECT_DOUBLE_EQ(train::get_lr(*reduced.optimizer), reduced.first_lr / 10) << k;
  }
  // amsgrad switched on since the checkpoint: its state starts at zero, as a new optimizer's.
  nlohmann::json ams = cfg;
  ams["treat"]["optimizer"]["params"]["amsgrad"] = true;
  Experiment amsgrad(ams, "MLP", torch::kCPU);
  restore(amsgrad, adam);
  for (const auto& p : amsgrad.net->parameters()) {
    auto& state = amsgrad.optimizer->state();
    const auto it = state.find(train::optimizer_state_key(*amsgrad.optimizer, p));
    ASSERT_NE(it, state.end());
    EXPECT_TRUE(static_cast<torch::optim::AdamParamState&>(*it->second).max_exp_avg_sq().defined());
  }
}

// Another learning-rate schedule since the checkpoint (config.json edited, or a branch's --set):
// the config's starts anew with a note, where the restore stopped with "the checkpoint holds state
// for another scheduler class" and no config path.
TEST(Overrides, AResumeOrABranchTakesTheConfigsNewSchedule) {
  Home home;
  nlohmann::json cfg = trained_then_edited(home, [](nlohmann::json& c) {
    c["treat"]["max_epoch"] = 2;
    c["treat"]["lr_scheduler"] = {
        {"class", "ReduceLROnPlateau"}, {"step_metric", "valid_metric"}, {"params", {{"patience", 0}}}};
  });
  const std::string config_file = home.logs() + "/exp001/config.json";
  auto o = home.options();
  o.exp_id = 1;
  std::ostringstream out;
  EXPECT_EQ(experiment::launch(o, nullptr, out).epochs_done, 2) << out.str();
  EXPECT_NE(out.str().find("note: the checkpoint's run had another learning-rate schedule (HandScheduler, now "
                           "ReduceLROnPlateau of valid_metric, mode min; treat.lr_scheduler changed): the config's "
                           "takes over from epoch 2 with its own state"),
            std::string::npos)
      << out.str();
  EXPECT_EQ(load_checkpoint(home.logs() + "/exp001/saves/last.ckpt").lr_schedule,
            "ReduceLROnPlateau of valid_metric, mode min");
  auto b = home.options();  // and back, in a branch
  b.exp_id = 1, b.branch = true, b.load = "last";
  b.overrides = {R"(treat.lr_scheduler={"class": "StepLR", "params": {"step_size": 5}})", "treat.max_epoch=3"};
  std::ostringstream branched;
  EXPECT_EQ(experiment::launch(b, nullptr, branched).epochs_done, 3) << branched.str();
  EXPECT_NE(branched.str().find("another learning-rate schedule (ReduceLROnPlateau of valid_metric, mode min, now "
                                "StepLR;"),
            std::string::npos)
      << branched.str();
  // Another statistic for the same class: its counters compared another quantity.
  const std::string branch_config = home.logs() + "/exp002/config.json";
  auto branch_cfg = read_json_file(branch_config);
  branch_cfg["treat"]["max_epoch"] = 4;
  std::ofstream(branch_config) << branch_cfg.dump(2);
  o.exp_id = 1;
  cfg["treat"]["max_epoch"] = 3;
  cfg["treat"]["lr_scheduler"]["step_metric"] = "train_loss";
  std::ofstream(config_file) << cfg.dump(2);
  std::ostringstream metric;
  EXPECT_EQ(experiment::launch(o, nullptr, metric).epochs_done, 3) << metric.str();
  EXPECT_NE(metric.str().find("(ReduceLROnPlateau of valid_metric, mode min, now ReduceLROnPlateau of train_loss, "
                              "mode min;"),
            std::string::npos)
      << metric.str();
  // An ordinary resume says nothing of it.
  o.exp_id = 2;
  std::ostringstream plain;
  EXPECT_EQ(experiment::launch(o, nullptr, plain).epochs_done, 4) << plain.str();
  EXPECT_EQ(plain.str().find("another learning-rate schedule"), std::string::npos) << plain.str();
}

TEST(Compare, RowsWithTheDifferingPathsAndDiff) {
  Home home;
  for (const char* lr : {"0.004", "0.002"}) {
    auto o = home.options();
    o.overrides = {std::string("treat.optimizer.params.lr=") + lr};
    run(o);
  }
  run(home.options());
  CompareOptions c;
  c.home = home.dir.path(), c.problem = "Toy";
  std::ostringstream table;
  compare_experiments(c, table);
  const std::string t = table.str();
  EXPECT_NE(t.find("treat.optimizer.params.lr"), std::string::npos) << t;
  EXPECT_EQ(t.find("capacity"), std::string::npos) << t;  // the same everywhere: no column
  EXPECT_NE(t.find("exp001"), std::string::npos) << t;
  EXPECT_NE(t.find("0.004"), std::string::npos) << t;
  EXPECT_NE(t.find("finished"), std::string::npos) << t;
  // JSON, sorted by the column.
  c.format = "json";
  c.sort = "treat.optimizer.params.lr";
  std::ostringstream js;
  compare_experiments(c, js);
  const auto rows = nlohmann::json::parse(js.str());
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0]["exp_id"], 3);  // 1e-3, the config's own
  EXPECT_EQ(rows[1]["exp_id"], 2);
  EXPECT_EQ(rows[2]["exp_id"], 1);
  EXPECT_TRUE(rows[0]["test_accuracy"].is_number());
  EXPECT_GT(rows[0]["train_seconds"].get<double>(), 0.0);
  c.format = "csv";
  c.sort = "exp";
  c.ids = {1, 2};
  std::ostringstream csv;
  compare_experiments(c, csv);
  const std::string lines = csv.str();
  EXPECT_EQ(lines.rfind("exp,treat.optimizer.params.lr,best epoch", 0), 0u) << lines;
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 3) << lines;
  c.sort = "speed";
  EXPECT_NE(error_of([&] { compare_experiments(c, csv); }).find("--sort=speed: expected exp, valid, test"),
            std::string::npos);
  c.ids = {1, 9};
  EXPECT_NE(error_of([&] { compare_experiments(c, csv); }), "");
  // diff
  std::ostringstream d;
  diff_experiments(home.dir.path(), "Toy", 1, 3, d);
  EXPECT_NE(d.str().find("treat.optimizer.params.lr"), std::string::npos) << d.str();
  EXPECT_NE(d.str().find("0.004 -> 0.001"), std::string::npos) << d.str();
  std::ostringstream same;
  diff_experiments(home.dir.path(), "Toy", 1, 1, same);
  EXPECT_NE(same.str().find("have the same config"), std::string::npos);
  EXPECT_EQ(parse_id_list("1,3,5-7"), (std::vector<int64_t>{1, 3, 5, 6, 7}));
  EXPECT_THROW(parse_id_list("1,x"), Error);
  EXPECT_THROW(parse_id_list("5-2"), Error);
}

TEST(Compare, CommandLine) {
  Home home;
  std::string out;
  const std::string base = "--problem=Toy --topology=MLP --device=cpu --threads=1 --home=" + home.dir.path();
  ASSERT_EQ(testing::run_cli(base + " --set treat.optimizer.params.lr=0.002 --set=indiv.net.params.capacity=0.03", out),
            0)
      << out;
  ASSERT_EQ(testing::run_cli(base, out), 0) << out;
  ASSERT_EQ(testing::run_cli("compare --problem=Toy --format=markdown --home=" + home.dir.path(), out), 0) << out;
  EXPECT_NE(out.find("| exp | indiv.net.params.capacity | treat.optimizer.params.lr |"), std::string::npos) << out;
  ASSERT_EQ(testing::run_cli("diff --problem=Toy 1 2 --home=" + home.dir.path(), out), 0) << out;
  EXPECT_NE(out.find("indiv.net.params.capacity"), std::string::npos) << out;
  EXPECT_NE(testing::run_cli(base + " --set treat.optimizer.params.lrr=1", out), 0);
  EXPECT_NE(out.find("--set treat.optimizer.params.lrr=1: treat.optimizer.params has no key lrr"), std::string::npos)
      << out;
}

}  // namespace
}  // namespace quantlab
