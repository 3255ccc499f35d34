// Sweeps run in parallel: units in processes of their own, a unit alone, SLURM tasks sharing the
// units, and named levels shown by compare (docs/EXPERIMENTS.md).
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "quantlab/experiment/compare.h"
#include "quantlab/experiment/lock.h"
#include "quantlab/experiment/logbook.h"
#include "quantlab/experiment/sweep.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
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

// --parallel=2 runs the units in processes of their own (quantlab sweep ... --unit=N), each with
// its output in units/<N>/output.log; a failing unit is recorded; the finished ones are skipped
// the next time without a process.
TEST(Sweep, ParallelRunsUnitsInProcessesOfTheirOwn) {
  Home home;
  SweepOptions s = sweep_of(home, "wide", {{"treat.optimizer.params.lr", {0.001, 0.004}}, {"+treat.data.pad", {0, 2}}});
  s.parallel = 2;
  s.launch.threads = 0;  // the sweep divides the cores; the command's own --threads=0 gives way
  s.command = {QL_BINARY,        "--problem=Toy",
               "--topology=MLP", "--home=" + home.dir.path(),
               "--device=cpu",   "--threads=0",
               "sweep",          "--name=wide",
               "--grid",         "treat.optimizer.params.lr=0.001,0.004",
               "--grid",         "+treat.data.pad=0,2"};  // 32x32 inputs for a 28x28 MLP: fails when it loads data
  std::ostringstream out;
  const SweepResult r = run_sweep(s, nullptr, out);
  EXPECT_EQ(r.units, 4);
  EXPECT_EQ(r.finished, 2) << out.str();
  EXPECT_EQ(r.failed, 2) << out.str();
  const int each = std::max(1, available_cores() / 2);
  EXPECT_NE(out.str().find("2 at a time with " + std::to_string(each) + " thread" + (each == 1 ? "" : "s") + " each"),
            std::string::npos)
      << out.str();
  const std::string dir = home.dir.path() + "/Toy/sweeps/wide";
  const auto record = read_json_file(dir + "/sweep.json");
  std::set<int64_t> ids;
  for (int k : {0, 2}) {
    EXPECT_EQ(record["units"][k]["state"], "finished") << record.dump(2);
    ids.insert(record["units"][k]["exp_id"].get<int64_t>());
  }
  EXPECT_EQ(ids.size(), 2u);  // each unit its own experiment
  EXPECT_EQ(record["units"][1]["state"], "failed");
  EXPECT_NE(record["units"][1]["error"].get<std::string>().find("[1, 32, 32]"), std::string::npos) << record.dump(2);
  for (int n = 1; n <= 4; ++n) EXPECT_TRUE(fs::exists(dir + "/units/" + std::to_string(n) + "/output.log")) << n;
  EXPECT_NE(testing::slurp(dir + "/units/1/output.log").find("test"), std::string::npos);
  std::ostringstream again;
  const SweepResult r2 = run_sweep(s, nullptr, again);
  EXPECT_EQ(r2.skipped, 2);
  EXPECT_EQ(r2.failed, 2);  // retried, and failed again
  EXPECT_EQ(Logbook::list(home.logs()).size(), 2u) << again.str();
  // A unit another process holds is left to it, without a process of its own.
  ExperimentLock held(dir + "/units/2", "unit 2");
  std::ostringstream third;
  const SweepResult r3 = run_sweep(s, nullptr, third);
  EXPECT_EQ(r3.elsewhere, 1) << third.str();
  EXPECT_EQ(r3.failed, 1) << third.str();
  EXPECT_NE(third.str().find("unit 2/4 is running in another process"), std::string::npos) << third.str();
}

// A factor of named levels: compare and the experiment's config show the level by its name, and so
// does TensorBoard's HParams session (the unit's hyperparameters are its factors).
TEST(Sweep, NamedLevelsShowByNameInCompareAndHParams) {
  Home home;
  SweepOptions s;
  s.launch = home.options();
  s.design =
      parse_design({{"name", "named"},
                    {"factors",
                     {{"size",
                       {{"small", {{"indiv.net.params.capacity", 0.02}, {"treat.optimizer.params.lr", 0.001}}},
                        {"large", {{"indiv.net.params.capacity", 0.03}, {"treat.optimizer.params.lr", 0.002}}}}}}}},
                   "design");
  std::ostringstream sink;
  EXPECT_EQ(run_sweep(s, nullptr, sink).finished, 2) << sink.str();
  CompareOptions c = compare_of(home, "named", "json");
  const auto rows = compare_json(c);
  ASSERT_EQ(rows.size(), 2u);
  std::set<std::string> sizes;
  for (const auto& r : rows) {
    EXPECT_EQ(r["factors"].size(), 1u) << r.dump();  // the factor, not the paths it set
    sizes.insert(r["factors"]["size"].get<std::string>());
  }
  EXPECT_EQ(sizes, (std::set<std::string>{"small", "large"}));
  // --by: one row per level, with the mean accuracies; a column that is not there is refused.
  c.by = "size";
  const auto levels = compare_json(c);
  ASSERT_EQ(levels.size(), 2u);
  EXPECT_EQ(levels[0]["experiments"], 1);
  EXPECT_EQ(levels[0]["tested"], 1);
  EXPECT_TRUE(levels[0]["test_accuracy_mean"].is_number()) << levels.dump();
  const double mean = levels[0]["test_accuracy_mean"].get<double>();
  bool matches = false;
  for (const auto& r : rows)
    matches |= r["factors"]["size"] == levels[0]["level"] && r["test_accuracy"].get<double>() == mean;
  EXPECT_TRUE(matches) << levels.dump() << rows.dump();
  c.by = "colour";
  EXPECT_NE(error_of([&] { compare_text(c); }).find("--by=colour: expected a column (size)"), std::string::npos);
  c.by.clear();
  const auto config = Logbook::open(home.logs(), 1).config();
  EXPECT_EQ(config["sweep"]["levels"]["size"], "large");  // factor levels in name order: large, small
  EXPECT_DOUBLE_EQ(config["indiv"]["net"]["params"]["capacity"].get<double>(), 0.03);
  // The HParams session start names the factor and its level.
  std::string events;
  for (const auto& f : fs::directory_iterator(home.logs() + "/exp001/stats"))
    if (f.path().filename().string().rfind("events.", 0) == 0) events += testing::slurp(f.path().string());
  const size_t at = events.find("_hparams_/session_start_info");
  ASSERT_NE(at, std::string::npos);
  const std::string start = events.substr(at, 160);  // the tag, then the plugin's content
  EXPECT_NE(start.find("size"), std::string::npos);
  EXPECT_NE(start.find("large"), std::string::npos);
  EXPECT_EQ(start.find("indiv.net.params.capacity"), std::string::npos);
}

// --unit=N runs one unit (a job array's task); --srun gives SLURM task i the units i, i + K, ...;
// a unit whose lock another process holds is left to it.
TEST(Sweep, AUnitAloneASlurmTasksShareAndABusyUnit) {
  Home home;
  SweepOptions s = sweep_of(home, "array", {{"treat.optimizer.params.lr", {0.001, 0.002, 0.003, 0.004}}});
  const std::string dir = home.dir.path() + "/Toy/sweeps/array";
  std::ostringstream sink;
  SweepOptions one = s;
  one.unit = 3;
  EXPECT_EQ(run_sweep(one, nullptr, sink).finished, 1);
  auto record = read_json_file(dir + "/sweep.json");
  EXPECT_EQ(record["units"][2]["state"], "finished");
  EXPECT_EQ(record["units"][0]["state"], "pending");
  one.unit = 5;
  EXPECT_NE(error_of([&] { run_sweep(one, nullptr, sink); }).find("--unit=5: sweep array has units 1 to 4"),
            std::string::npos);
  SweepOptions task = s;
  task.srun = true;
  EXPECT_NE(error_of([&] { run_sweep(task, nullptr, sink); }).find("start the sweep with srun"), std::string::npos);
  setenv("SLURM_PROCID", "0", 1);
  setenv("SLURM_NTASKS", "2", 1);
  setenv("SLURM_JOB_NODELIST", "node1", 1);
  // A batch script's own shell (the job's variables, no job step): one process, refused either way.
  EXPECT_NE(error_of([&] { run_sweep(s, nullptr, sink); }).find("under srun give --srun"), std::string::npos);
  EXPECT_NE(error_of([&] { run_sweep(task, nullptr, sink); }).find("this process was not started by srun"),
            std::string::npos);
  setenv("SLURM_STEP_ID", "0", 1);
  // Without --srun, SLURM's tasks would each run every unit: refused.
  EXPECT_NE(error_of([&] { run_sweep(s, nullptr, sink); }).find("under srun give --srun"), std::string::npos);
  std::ostringstream share;
  const SweepResult t = run_sweep(task, nullptr, share);  // units 1 and 3 (3 finished already)
  unsetenv("SLURM_PROCID");
  unsetenv("SLURM_NTASKS");
  unsetenv("SLURM_JOB_NODELIST");
  unsetenv("SLURM_STEP_ID");
  EXPECT_EQ(t.units, 2);
  EXPECT_EQ(t.skipped, 1);
  EXPECT_EQ(t.finished, 2);
  EXPECT_NE(share.str().find("task 0 of 2 runs 2 of the 4 units"), std::string::npos) << share.str();
  record = read_json_file(dir + "/sweep.json");
  EXPECT_EQ(record["units"][0]["state"], "finished");
  EXPECT_EQ(record["units"][1]["state"], "pending");
  // Unit 2 held by another process: the whole sweep leaves it and runs unit 4.
  fs::create_directories(dir + "/units/2");
  ExperimentLock held(dir + "/units/2", "unit 2");
  std::ostringstream out;
  const SweepResult w = run_sweep(s, nullptr, out);
  EXPECT_EQ(w.elsewhere, 1);
  EXPECT_EQ(w.finished, 3);
  EXPECT_NE(out.str().find("unit 2/4 is running in another process"), std::string::npos) << out.str();
  EXPECT_EQ(read_json_file(dir + "/sweep.json")["units"][3]["state"], "finished");
}

}  // namespace
}  // namespace quantlab
