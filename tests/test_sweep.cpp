// Sweeps: many experiments from one design, their record, resume, and compare over them
// (docs/EXPERIMENTS.md); designs in test_sweep_design.cpp, parallel units in test_sweep_parallel.cpp.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/sweep.h"
#include "quantlab/util/error.h"
#include "sweep_home.h"
#include "test_util.h"
#include "toy_home.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using namespace sweep_testing;  // NOLINT(google-build-using-namespace): the sweep tests' helpers
using testing::error_of;
using testing::Home;
using testing::TempDir;

TEST(Sweep, RunsStopsResumesAndReportsAFailedUnit) {
  Home home;
  // A padding of 2 makes 32x32 inputs for the MLP's 28x28: a unit that fails when it loads its data.
  SweepOptions s =
      sweep_of(home, "study", {{"treat.optimizer.params.lr", {0.001, 0.004}}, {"+treat.data.pad", {0, 2}}});
  // Missing or wrong flags, which every unit's launch would refuse, are found before anything is made.
  std::ostringstream sink;
  SweepOptions untyped = s;
  untyped.launch.topology = "";
  EXPECT_NE(error_of([&] { run_sweep(untyped, nullptr, sink); }).find("--problem and --topology are required"),
            std::string::npos);
  untyped.launch.topology = "VGG";
  EXPECT_NE(error_of([&] { run_sweep(untyped, nullptr, sink); })
                .find("unit 1 of the sweep (treat.optimizer.params.lr=0.001, +treat.data.pad=0): "
                      "indiv.net.class: class 'MLP' belongs to topology 'MLP', not to --topology=VGG"),
            std::string::npos)
      << error_of([&] { run_sweep(untyped, nullptr, sink); });
  // Unknown paths are found before anything is made.
  SweepOptions wrong = s;
  wrong.design.factors.push_back({"treat.optimiser.lr", {1}});
  EXPECT_NE(error_of([&] { run_sweep(wrong, nullptr, sink); }).find("treat has no key optimiser"), std::string::npos);
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps"));
  // A level that the experiment's own checks refuse is found before anything is made too (it was
  // found when its unit's turn came, after the units before it had trained).
  SweepOptions negative = s;
  negative.design.factors[1] = {"indiv.net.params.capacity", {0.02, -1}};
  EXPECT_NE(error_of([&] { run_sweep(negative, nullptr, sink); })
                .find("unit 2 of the sweep (treat.optimizer.params.lr=0.001, indiv.net.params.capacity=-1): "
                      "indiv.net.params.capacity: expected a positive width factor"),
            std::string::npos)
      << error_of([&] { run_sweep(negative, nullptr, sink); });
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps"));
  SweepOptions bad_set = s;  // and a --set that no launch takes (its record blocked the sweep's name)
  bad_set.launch.overrides = {"treat.max_epoch=0"};
  EXPECT_NE(error_of([&] { run_sweep(bad_set, nullptr, sink); }).find("treat.max_epoch: expected a number of epochs"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps"));
  SweepOptions many = s;
  many.max_units = 3;
  EXPECT_NE(error_of([&] { run_sweep(many, nullptr, sink); }).find("add --yes"), std::string::npos);
  // Stopped at once, during the first unit's start-up: nothing is made, the unit is still pending.
  std::atomic<int> stop{SIGINT};
  const SweepResult first = run_sweep(s, &stop, sink);
  EXPECT_EQ(first.interrupted_by, SIGINT);
  const std::string record_file = home.dir.path() + "/Toy/sweeps/study/sweep.json";
  auto record = read_json_file(record_file);
  EXPECT_EQ(record["units"][0]["state"], "pending");
  EXPECT_TRUE(record["units"][0]["exp_id"].is_null());
  EXPECT_TRUE(Logbook::list(home.logs()).empty());
  // Again: the padded units fail with their error, the rest run.
  std::ostringstream out;
  const SweepResult second = run_sweep(s, nullptr, out);
  EXPECT_EQ(second.units, 4);
  EXPECT_EQ(second.finished, 2);
  EXPECT_EQ(second.failed, 2);
  record = read_json_file(record_file);
  EXPECT_EQ(record["units"][1]["state"], "failed");
  EXPECT_NE(record["units"][1]["error"].get<std::string>().find("[1, 32, 32]"), std::string::npos) << record.dump(2);
  EXPECT_TRUE(record["units"][1]["exp_id"].is_null()) << record.dump(2);
  EXPECT_EQ(record["units"][0]["exp_id"], 1);
  EXPECT_EQ(record["units"][2]["exp_id"], 2);
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1, 2}));
  // A third time: the finished units are skipped.
  const SweepResult third = run_sweep(s, nullptr, sink);
  EXPECT_EQ(third.skipped, 2);
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1, 2}));
  // Unit 1 as a run killed in its first epoch of two leaves it, before the record had its number:
  // found by its config's "sweep" entry and resumed.
  {
    auto c = read_json_file(home.logs() + "/exp001/config.json");
    c["treat"]["max_epoch"] = 2;
    std::ofstream(home.logs() + "/exp001/config.json") << c.dump(2);
    const std::string status = home.logs() + "/exp001/saves/status.json";
    auto st = read_json_file(status);
    st["finished"] = false;
    st.erase("test");
    std::ofstream(status) << st.dump(2);
    auto r = read_json_file(record_file);
    r["units"][0]["exp_id"] = nullptr;
    r["units"][0]["state"] = "running";
    std::ofstream(record_file) << r.dump(2);
  }
  std::ostringstream resumed;
  const SweepResult fourth = run_sweep(s, nullptr, resumed);
  EXPECT_EQ(fourth.finished, 2) << resumed.str();
  EXPECT_EQ(fourth.skipped, 1) << resumed.str();
  EXPECT_NE(resumed.str().find("resuming experiment 1"), std::string::npos) << resumed.str();
  EXPECT_EQ(Logbook::list(home.logs()), (std::vector<int64_t>{1, 2}));
  record = read_json_file(record_file);
  EXPECT_EQ(record["units"][0]["exp_id"], 1);
  EXPECT_EQ(read_json_file(home.logs() + "/exp001/saves/status.json")["epochs_done"], 2);
  // The same name with another design, and a record edited by hand, are refused.
  SweepOptions other = s;
  other.design.factors.pop_back();
  EXPECT_NE(error_of([&] { run_sweep(other, nullptr, sink); }).find("another design"), std::string::npos);
  std::ofstream(record_file) << "{ edited";
  EXPECT_NE(error_of([&] { run_sweep(s, nullptr, sink); }).find("the record of sweep study"), std::string::npos);
  // compare --sweep takes the sweep's experiments.
  std::ofstream(record_file) << record.dump();
  const auto rows = compare_json(compare_of(home, "study", "json"));
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[1]["factors"]["treat.optimizer.params.lr"], 0.004);
}

// A launch tells its caller the number of a new experiment (or branch) once its folder is made and
// before its first epoch, so that a sweep's record names a unit's experiment while it trains (a
// kill no longer leaves it unnamed); a launch that makes none does not call it.
TEST(Sweep, ANewExperimentsNumberIsToldBeforeItsFirstEpoch) {
  Home home;
  LaunchOptions o = home.options();
  std::vector<int64_t> told;
  std::vector<bool> had_checkpoint;
  o.on_created = [&](int64_t id) {
    told.push_back(id);
    had_checkpoint.push_back(fs::exists(home.logs() + "/" + Logbook::folder_name(id) + "/saves/last.ckpt"));
  };
  const LaunchResult made = testing::run(o);
  EXPECT_EQ(told, std::vector<int64_t>{made.exp_id});
  EXPECT_EQ(had_checkpoint, std::vector<bool>{false});
  LaunchOptions test = o;
  test.exp_id = made.exp_id;
  test.mode = LaunchMode::kTest;
  testing::run(test);
  EXPECT_EQ(told.size(), 1u);
  LaunchOptions branch = o;
  branch.exp_id = made.exp_id;
  branch.load = "last";
  branch.branch = true;
  const LaunchResult branched = testing::run(branch);
  EXPECT_EQ(told, (std::vector<int64_t>{made.exp_id, branched.exp_id}));
  EXPECT_NE(branched.exp_id, made.exp_id);
}

// A sweep made again under the name of a deleted one never takes that one's experiments (before,
// a failed or restarted unit was given the old sweep's experiment of the same number and counted
// finished); an experiment deleted by hand makes its unit run again, and compare --sweep says so.
TEST(Sweep, ASweepMadeAgainAndAnExperimentDeletedByHand) {
  Home home;
  SweepOptions s = sweep_of(home, "cap", {{"indiv.net.params.capacity", {0.02}}});
  std::ostringstream sink;
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 1);
  const std::string dir = home.dir.path() + "/Toy/sweeps/cap";
  fs::remove_all(dir);
  s.design.factors = {{"+treat.data.pad", {2}}};  // fails at its launch (32x32 inputs for a 28x28 MLP)
  const SweepResult again = run_sweep(s, nullptr, sink);
  EXPECT_EQ(again.failed, 1);
  EXPECT_EQ(again.finished, 0);
  EXPECT_TRUE(read_json_file(dir + "/sweep.json")["units"][0]["exp_id"].is_null());
  EXPECT_EQ(run_sweep(s, nullptr, sink).failed, 1);  // and again: still not taken as finished
  fs::remove_all(dir);
  // Two units; unit 2's experiment (the newest) deleted by hand and its number taken by a plain
  // launch; a branch of unit 1's experiment, then unit 1's deleted.
  s.design.name = "two";
  s.design.factors = {{"treat.optimizer.params.lr", {0.001, 0.002}}};
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 2);
  const std::string record_file = home.dir.path() + "/Toy/sweeps/two/sweep.json";
  const auto record = read_json_file(record_file);
  const int64_t first = record["units"][0]["exp_id"].get<int64_t>(), gone = record["units"][1]["exp_id"].get<int64_t>();
  fs::remove_all(home.logs() + "/" + Logbook::folder_name(gone));
  auto plain = home.options();
  plain.overrides = {"treat.optimizer.params.lr=0.009"};
  EXPECT_EQ(launch(plain, nullptr, sink).exp_id, gone);  // the freed number
  auto branch = home.options();
  branch.exp_id = first;
  branch.load = "last";
  branch.branch = true;
  const int64_t branched = launch(branch, nullptr, sink).exp_id;
  EXPECT_FALSE(Logbook::open(home.logs(), branched).config().contains("sweep"));  // not a unit of the sweep
  const std::string table = compare_text(compare_of(home, "two"));
  EXPECT_NE(table.find("unit 2: its experiment " + std::to_string(gone) + " is gone"), std::string::npos) << table;
  EXPECT_EQ(table.find("0.009"), std::string::npos) << table;
  std::ostringstream out;
  SweepResult r = run_sweep(s, nullptr, out);
  EXPECT_EQ(r.finished, 2) << out.str();
  EXPECT_EQ(r.skipped, 1) << out.str();
  EXPECT_NE(out.str().find("unit 2/2: its experiment " + std::to_string(gone) + " is gone"), std::string::npos)
      << out.str();
  auto after = read_json_file(record_file);
  EXPECT_EQ(after["units"][1]["state"], "finished");
  const int64_t rerun = after["units"][1]["exp_id"].get<int64_t>();
  EXPECT_NE(rerun, gone);
  EXPECT_DOUBLE_EQ(Logbook::open(home.logs(), rerun).config()["treat"]["optimizer"]["params"]["lr"].get<double>(),
                   0.002);
  fs::remove_all(home.logs() + "/" + Logbook::folder_name(first));
  r = run_sweep(s, nullptr, sink);
  EXPECT_EQ(r.skipped, 1);
  after = read_json_file(record_file);
  EXPECT_NE(after["units"][0]["exp_id"], branched);  // the branch is not taken as unit 1
  EXPECT_NE(after["units"][0]["exp_id"], first);
}

// compare over the units of two sweeps: each row shows its own factor's level and, for the other
// sweep's factor, the value its config has (before: "(absent)").
TEST(Sweep, CompareOverTwoSweepsShowsEachRowsOwnValues) {
  Home home;
  std::ostringstream sink;
  for (const auto& [name, path, a, b] : std::vector<std::tuple<std::string, std::string, double, double>>{
           {"lr", "treat.optimizer.params.lr", 0.001, 0.002}, {"cap", "indiv.net.params.capacity", 0.02, 0.03}}) {
    SweepOptions s = sweep_of(home, name, {{path, {a, b}}});
    EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 2);
  }
  const auto rows = compare_json(compare_of(home, "", "json"));
  ASSERT_EQ(rows.size(), 4u);
  for (const auto& r : rows) {
    EXPECT_TRUE(r["factors"]["treat.optimizer.params.lr"].is_number()) << rows.dump();
    EXPECT_TRUE(r["factors"]["indiv.net.params.capacity"].is_number()) << rows.dump();
  }
  EXPECT_DOUBLE_EQ(rows[2]["factors"]["treat.optimizer.params.lr"].get<double>(), 0.001);  // the config's
}

// Units of two sweeps compared together: the path one sweep's named levels set shows each row's
// own value beside the other sweep's factor of that path, and --by groups by it. Each named row
// showed "(absent)" there, and --by averaged the two learning rates as one "(absent)" level.
TEST(Sweep, UnitsOfTwoSweepsShowTheirOwnValues) {
  Home home;
  std::ostringstream sink;
  SweepOptions grid = sweep_of(home, "grid", {{"treat.optimizer.params.lr", {0.001, 0.002}}});
  ASSERT_EQ(run_sweep(grid, nullptr, sink).finished, 2) << sink.str();
  SweepOptions named;
  named.launch = home.options();
  named.design = parse_design(
      {{"name", "opt"},
       {"factors",
        {{"opt",
          {{"fast", {{"treat.optimizer.params.lr", 0.003}}}, {"slow", {{"treat.optimizer.params.lr", 0.0005}}}}}}}},
      "design");
  ASSERT_EQ(run_sweep(named, nullptr, sink).finished, 2) << sink.str();
  CompareOptions c = compare_of(home, "", "json");
  std::map<int64_t, nlohmann::json> lr;
  for (const auto& r : compare_json(c)) lr[r["exp_id"].get<int64_t>()] = r["factors"]["treat.optimizer.params.lr"];
  EXPECT_EQ(lr, (std::map<int64_t, nlohmann::json>{{1, 0.001}, {2, 0.002}, {3, 0.003}, {4, 0.0005}}));
  c.by = "treat.optimizer.params.lr";
  EXPECT_EQ(compare_json(c).size(), 4u) << compare_text(c);  // four levels, none of them "(absent)"
}

// Within one sweep, compare shows the factors rather than the paths the units' own levels set: a
// repeat's added seed, and a path that one named level adds and the other leaves out.
TEST(Sweep, OneSweepsUnitsShowTheirFactorsOnly) {
  Home home;
  std::ostringstream sink;
  SweepOptions s;
  s.launch = home.options();
  s.design = parse_design({{"name", "opt"},
                           {"factors",
                            {{"opt",
                              {{"sgd", {{"treat.optimizer.class", "SGD"}, {"+treat.optimizer.params.momentum", 0.9}}},
                               {"adam", {{"treat.optimizer.class", "Adam"}}}}}}},
                           {"repeats", 2}},
                          "design");
  ASSERT_EQ(run_sweep(s, nullptr, sink).finished, 4) << sink.str();
  for (const auto& r : compare_json(compare_of(home, "opt", "json"))) {
    std::set<std::string> columns;
    for (const auto& [k, v] : r["factors"].items()) columns.insert(k);
    EXPECT_EQ(columns, (std::set<std::string>{"opt", "repeat"})) << r.dump();
  }
}

// The base config changed between two runs of a sweep is refused, naming what changed; compare
// --sweep shows the factors even where one unit has run, and says how many have not.
TEST(Sweep, AChangedBaseConfigIsRefusedAndCompareShowsTheFactorsOfOneUnit) {
  Home home;
  SweepOptions s = sweep_of(home, "mid", {{"treat.optimizer.params.lr", {0.001, 0.002}}});
  s.unit = 1;
  std::ostringstream sink;
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 1);
  const std::string table = compare_text(compare_of(home, "mid"));
  EXPECT_NE(table.find("treat.optimizer.params.lr"), std::string::npos) << table;
  EXPECT_NE(table.find("(1 of the 2 units have no experiment yet)"), std::string::npos) << table;
  auto cfg = read_json_file(home.dir.path() + "/Toy/config.json");
  const auto bs = cfg["treat"]["data"]["bs_train"];
  cfg["treat"]["data"]["bs_train"] = bs.get<int64_t>() / 2;
  std::ofstream(home.dir.path() + "/Toy/config.json") << cfg.dump(2);
  s.unit = 2;
  const std::string e = error_of([&] { run_sweep(s, nullptr, sink); });
  EXPECT_NE(e.find("is not the config sweep mid was made from (treat.data.bs_train " + bs.dump() + " -> " +
                   std::to_string(bs.get<int64_t>() / 2) + ")"),
            std::string::npos)
      << e;
  EXPECT_EQ(Logbook::list(home.logs()).size(), 1u);
}

// --set on a sweep changes the config every unit starts from: each unit's experiment has it (before
// the unit's own levels), a resumed unit is not given it again, a run of the sweep without it is
// refused, naming the path, and one on a factor's path (or above or below it) is refused before
// anything is made. compare shows it as a config value where two sweeps' units differ in it.
TEST(Sweep, SetChangesTheConfigOfEveryUnit) {
  Home home;
  std::ostringstream sink;
  SweepOptions s = sweep_of(home, "set", {{"treat.optimizer.params.lr", {0.001, 0.002}}});
  for (const std::string bad :
       {"treat.optimizer.params.lr=0.01", "treat.optimizer.params={\"lr\": 0.01}", "treat.*.params.lr=0.01"}) {
    s.launch.overrides = {bad};
    const std::string e = error_of([&] { run_sweep(s, nullptr, sink); });
    EXPECT_NE(e.find("--set " + bad + ": the sweep's units set treat.optimizer.params.lr"), std::string::npos) << e;
  }
  s.launch.overrides = {"+sweep={}"};
  EXPECT_NE(error_of([&] { run_sweep(s, nullptr, sink); }).find("the sweep writes \"sweep\" itself"),
            std::string::npos);
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps/set"));
  const int64_t bs = read_json_file(home.dir.path() + "/Toy/config.json")["treat"]["data"]["bs_train"].get<int64_t>();
  const std::string half = "treat.data.bs_train=" + std::to_string(bs / 2);
  s.launch.overrides = {half};
  s.unit = 1;
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 1);
  s.unit.reset();
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 2);  // the second unit made, the first one skipped
  const auto ids = Logbook::list(home.logs());
  ASSERT_EQ(ids.size(), 2u);
  for (size_t k = 0; k < ids.size(); ++k) {
    const nlohmann::json c = Logbook::open(home.logs(), ids[k]).config();
    EXPECT_EQ(c["treat"]["data"]["bs_train"], bs / 2) << k;
    EXPECT_EQ(c["treat"]["optimizer"]["params"]["lr"], k == 0 ? 0.001 : 0.002) << k;
    ASSERT_EQ(c["overrides"].size(), 3u) << c["overrides"].dump();  // the sweep's --set, the unit's level, its record
    EXPECT_EQ(c["overrides"][0], half);
    EXPECT_EQ(c["overrides"][1], std::string("treat.optimizer.params.lr=") + (k == 0 ? "0.001" : "0.002"));
    EXPECT_EQ(c["sweep"]["set"], nlohmann::json::array({half}));
  }
  {  // the first unit's experiment as one stopped after its first epoch of two: resumed
    const std::string dir = Logbook::open(home.logs(), ids[0]).dir();
    auto c = read_json_file(dir + "/config.json");
    c["treat"]["max_epoch"] = 2;
    std::ofstream(dir + "/config.json") << c.dump(2);
    auto st = read_json_file(dir + "/saves/status.json");
    st["finished"] = false;
    st.erase("test");
    std::ofstream(dir + "/saves/status.json") << st.dump(2);
  }
  std::ostringstream resumed;
  EXPECT_EQ(run_sweep(s, nullptr, resumed).finished, 2) << resumed.str();
  EXPECT_NE(resumed.str().find("resuming experiment " + std::to_string(ids[0])), std::string::npos) << resumed.str();
  EXPECT_EQ(Logbook::list(home.logs()).size(), 2u);
  s.launch.overrides.clear();
  const std::string without = error_of([&] { run_sweep(s, nullptr, sink); });
  EXPECT_NE(without.find("is not the config sweep set was made from (treat.data.bs_train " + std::to_string(bs / 2) +
                         " -> " + std::to_string(bs)),
            std::string::npos)
      << without;
  // Another sweep of the same factor without --set: compare shows each unit's batch size.
  SweepOptions plain = sweep_of(home, "plain", {{"treat.optimizer.params.lr", {0.001, 0.002}}});
  EXPECT_EQ(run_sweep(plain, nullptr, sink).finished, 2);
  const auto rows = compare_json(compare_of(home, "", "json"));
  ASSERT_EQ(rows.size(), 4u);
  for (size_t k = 0; k < rows.size(); ++k)
    EXPECT_EQ(rows[k]["factors"]["treat.data.bs_train"], k < 2 ? bs / 2 : bs) << rows.dump();
}

}  // namespace
}  // namespace quantlab
