// Sweep designs (docs/EXPERIMENTS.md): grids, named levels, samples and repeats made into units,
// and the errors found in them before anything is made; running sweeps in test_sweep.cpp.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

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

TEST(Sweep, DesignsGridsAndTheirErrors) {
  const SweepDesign d =
      parse_design({{"name", "s"}, {"factors", {{"a.b", {1, 2}}, {"c", {"x", "y", "z"}}}}, {"repeats", 2}}, "design");
  const auto units = design_units(d);
  ASSERT_EQ(units.size(), 12u);
  EXPECT_EQ(units[1].levels[1].second, "y");  // the last factor fastest
  EXPECT_EQ(units[6].repeat, 1);
  EXPECT_EQ(unit_overrides(units[6], {{"treat", {{"data", {{"seed", 5}}}}}}).back(), "treat.data.seed=1005");
  EXPECT_EQ(unit_overrides(units[6], nlohmann::json::object()).back(), "+treat.data.seed=1000");
  EXPECT_EQ(unit_overrides(units[0], nlohmann::json::object()), (std::vector<std::string>{"a.b=1", "c=\"x\""}));
  SweepDesign sampled = d;
  sampled.sample = 4;
  sampled.seed = 7;
  EXPECT_EQ(design_units(sampled).size(), 8u);  // 4 of the grid, twice
  EXPECT_EQ(parse_grid("p=1e-3,x").second, (std::vector<nlohmann::json>{1e-3, "x"}));
  // Lists and objects as levels: their commas are theirs (the levels were split inside them).
  EXPECT_EQ(parse_grid(R"(p=[0.3,0.3],[0.5,0.5],{"a":1,"b":"x,y"})").second,
            (std::vector<nlohmann::json>{{0.3, 0.3}, {0.5, 0.5}, {{"a", 1}, {"b", "x,y"}}}));
  const std::vector<std::pair<nlohmann::json, std::string>> bad_designs = {
      {{{"factors", {{"a", nlohmann::json::array()}}}}, "design.factors.a: expected a non-empty list of levels"},
      {{{"factors", {{"a.b", {1, 1}}}}}, R"(design.factors["a.b"][1]: the level 1 is given twice)"},
      {{{"factors", {{"a", {1}}}}, {"repeats", 0}}, "design.repeats: expected 1 to 1000 repeats"},
      {{{"factors", {{"a", {1}}}}, {"seed", -5}}, "design.seed: expected a seed >= 0"},
      {{{"factors", {{"a", {1}}}}, {"speed", 1}}, "design.speed: unknown key"}};
  for (const auto& [bad, needle] : bad_designs) {
    const std::string e = error_of([&] { parse_design(bad, "design"); });
    EXPECT_NE(e.find(needle), std::string::npos) << bad.dump() << ": " << e;
  }
  // Named levels: one level sets several paths; the record keeps the level's name.
  const SweepDesign n = parse_design({{"name", "n"},
                                      {"factors",
                                       {{"noise",
                                         {{"narrow", {{"a.noise", "normal"}, {"a.spread", 0.25}}},
                                          {"wide", {{"a.noise", "uniform"}, {"a.spread", 0.5}}}}},
                                        {"b", {1, 2}}}}},
                                     "design");
  const auto nu = design_units(n);
  ASSERT_EQ(nu.size(), 4u);
  EXPECT_EQ(nu[1].levels[1], (std::pair<std::string, nlohmann::json>{"noise", "wide"}));  // factors by name
  EXPECT_EQ(unit_overrides(nu[1], nlohmann::json::object()),
            (std::vector<std::string>{"b=1", "a.noise=\"uniform\"", "a.spread=0.5"}));
  const SweepDesign twice =
      parse_design({{"factors", {{"noise", {{"a", {{"x.y", 1}}}, {"b", {{"x.y", 1}}}}}}}}, "design");
  EXPECT_NE(error_of([&] { design_units(twice); }).find("noise=a and noise=b set the same values"), std::string::npos)
      << error_of([&] { design_units(twice); });
  const std::vector<std::pair<nlohmann::json, std::string>> bad_named = {
      {{{"factors", {{"noise", nlohmann::json::object()}}}}, "design.factors.noise: expected at least one named level"},
      {{{"factors", {{"noise", {{"narrow", nlohmann::json::object()}}}}}},
       "design.factors.noise.narrow: expected the config paths this level sets"},
      {{{"factors", {{"noise", {{"narrow", 1}}}}}}, "design.factors.noise.narrow: expected the config paths"}};
  for (const auto& [bad, needle] : bad_named) {
    const std::string e = error_of([&] { parse_design(bad, "design"); });
    EXPECT_NE(e.find(needle), std::string::npos) << bad.dump() << ": " << e;
  }
  EXPECT_NE(error_of([] { parse_grid("p=1,,2"); }).find("--grid p=1,,2: an empty level"), std::string::npos);
  EXPECT_NE(error_of([] { parse_grid("p=1,1"); }).find("--grid p=1,1: the level 1 is given twice"), std::string::npos);
  EXPECT_NE(
      error_of([] { parse_grid("p=1e-3,1e999"); }).find("--grid p=1e-3,1e999: the level 1e999 is a number beyond"),
      std::string::npos);
  EXPECT_NE(error_of([] { parse_grid("p"); }).find("--grid p: expected PATH=LEVEL,LEVEL"), std::string::npos);
  EXPECT_NE(
      error_of([] { parse_grid("p=[1,2"); }).find("--grid p=[1,2: a level opens a [, { or \" that it does not close"),
      std::string::npos);
  // --seed without a sample would be ignored; a factor of what the sweep writes itself is refused
  // before a record is made (every unit failed on it).
  Home home;
  std::string out;
  EXPECT_NE(testing::run_cli("--problem=Toy --topology=MLP --home=" + home.dir.path() +
                                 " sweep --name=s --grid treat.optimizer.params.lr=0.001,0.002 --seed=3",
                             out),
            0);
  EXPECT_NE(out.find("--seed=3: the seed of a sample (--sample=N)"), std::string::npos) << out;
  std::ostringstream sink;
  for (const char* path : {"+sweep", "+overrides"}) {
    SweepOptions own = sweep_of(home, "own", {{path, {1, 2}}});
    EXPECT_NE(
        error_of([&] { run_sweep(own, nullptr, sink); }).find(std::string("the factor ") + path + " sets " + path),
        std::string::npos)
        << error_of([&] { run_sweep(own, nullptr, sink); });
  }
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps"));
}

// A grid of millions is counted, not made, before it is refused (1e7 units took gigabytes and
// ended in std::bad_alloc), and a sample of it makes only the units it takes.
TEST(Sweep, AHugeGridIsCountedNotMade) {
  Home home;
  SweepOptions s = sweep_of(home, "huge", {});
  for (int f = 0; f < 7; ++f) {
    std::vector<nlohmann::json> levels;
    for (int v = 1; v <= 10; ++v) levels.push_back(v);
    s.design.factors.push_back({"treat.f" + std::to_string(f), levels});
  }
  EXPECT_EQ(unit_count(s.design), 10000000);
  std::ostringstream sink;
  EXPECT_NE(
      error_of([&] { run_sweep(s, nullptr, sink); }).find("the sweep has 10000000 units, more than 100; add --yes"),
      std::string::npos);
  s.yes = true;
  EXPECT_NE(error_of([&] { run_sweep(s, nullptr, sink); }).find("one sweep holds at most 1000000"), std::string::npos);
  s.design.sample = 3;
  s.design.seed = 7;
  const auto units = design_units(s.design);
  ASSERT_EQ(units.size(), 3u);
  EXPECT_EQ(unit_count(s.design), 3);
  for (int f = 0; f < 13; ++f) s.design.factors.push_back({"treat.g" + std::to_string(f), {1, 2, 3, 4, 5, 6, 7, 8, 9}});
  EXPECT_EQ(design_units(s.design).size(), 3u);  // of 9e19 points: drawn one at a time
  EXPECT_FALSE(fs::exists(home.dir.path() + "/Toy/sweeps"));
}

// A data-seed factor beside repeats: each repeat adds to the level's own seed, and units whose
// configs would come out the same are refused before anything is made, naming both; a level that
// does not fit the config names its unit, not a --set the user never typed; a design file's errors
// name the file.
TEST(Sweep, SeedFactorsBesideRepeatsAndErrorsNamingTheUnitAndTheFile) {
  nlohmann::json base = testing::toy_mlp_config(1);
  base["treat"]["data"]["seed"] = 5;
  base["treat"]["optimizer"]["params"]["lr"] = 0.001;
  SweepDesign d = parse_design({{"name", "s"}, {"factors", {{"treat.data.seed", {1, 2}}}}, {"repeats", 2}}, "design");
  auto units = design_units(d);
  ASSERT_EQ(units.size(), 4u);
  EXPECT_EQ(unit_overrides(units[3], base).back(), "treat.data.seed=1002");  // level 2, repeat 1
  EXPECT_NO_THROW(check_unit_configs(units, base));
  // A seed the factor adds ("+", the shipped configs have none): the repeats change it (they added
  // it again, and every repeat was refused as "in the config already").
  nlohmann::json seedless = base;
  seedless["treat"]["data"].erase("seed");
  d.factors[0].first = "+treat.data.seed";
  EXPECT_EQ(unit_overrides(design_units(d)[3], seedless).back(), "treat.data.seed=1002");
  EXPECT_NO_THROW(check_unit_configs(design_units(d), seedless));
  d.factors[0].first = "treat.data.seed";
  d.factors[0].second = {1, 1001};  // repeat 1 of seed 1 is seed 1001's first
  const std::string same = error_of([&] { check_unit_configs(design_units(d), base); });
  EXPECT_NE(same.find("units 2 (treat.data.seed=1001) and 3 (treat.data.seed=1, repeat 1) of the sweep give the same "
                      "config"),
            std::string::npos)
      << same;
  const SweepDesign lr = parse_design({{"name", "s"}, {"factors", {{"treat.optimizer.params.lr", {0.01, "abc"}}}}}, "");
  const std::string wrong = error_of([&] { check_unit_configs(design_units(lr), base); });
  EXPECT_EQ(wrong.rfind("unit 2 of the sweep (treat.optimizer.params.lr=abc): treat.optimizer.params.lr is a number "
                        "in the config, and the value given is a string",
                        0),
            0u)
      << wrong;
  TempDir dir;
  const std::string file = dir.path() + "/design.json";
  std::ofstream(file) << R"({"name": "s", "factors": {"treat.optimizer.params.lr": [0.001, 0.001]}})";
  const std::string twice = error_of([&] { read_design(file); });
  EXPECT_EQ(
      twice.rfind("design " + file + R"(: factors["treat.optimizer.params.lr"][1]: the level 0.001 is given twice)", 0),
      0u)
      << twice;
  // An error found in its units begins with the file too.
  Home home;
  std::ofstream(file) << R"({"name": "s", "factors": {"treat.optimizer.params.lr": [0.001, -1]}})";
  SweepOptions s = sweep_of(home, "s", {});
  s.design = read_design(file);
  const std::string unit = error_of([&] { run_sweep(s, nullptr, std::cout); });
  EXPECT_EQ(unit.rfind("design " + file + ": unit 2 of the sweep (treat.optimizer.params.lr=-1): ", 0), 0u) << unit;
}

}  // namespace
}  // namespace quantlab
