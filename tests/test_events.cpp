// Event files read back by a decoder that shares no code with the writer (event_decoder.h). And
// progress output without a terminal.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "quantlab/log/event_writer.h"
#include "event_decoder.h"
#include "quantlab/util/progress.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

using testing::decode;
using testing::Decoded;

TEST(Events, WriterOutputDecodesWithAnIndependentReader) {
  TempDir dir;
  std::string file;
  {
    EventWriter w(dir.path());
    file = w.file();
    w.add_text("config", "hello", 0);
    for (int s = 1; s <= 3; ++s) w.add_scalar("train_loss", 1.0 / s, s);
    w.add_histogram("weights/phi1_fc", torch::randn({1000}), 3);
    w.add_histogram("constant", torch::ones({10}), 3);
    w.add_session_start(2);
    w.add_hparams_session_start({{"lr", 0.01}, {"noise", "uniform"}});
    w.add_hparams_session_end(true);
  }
  EXPECT_EQ(fs::path(file).filename().string().rfind("events.out.tfevents.", 0), 0u);
  const Decoded d = decode(file);
  EXPECT_EQ(d.file_version, "brain.Event:2");
  EXPECT_EQ(d.text, "hello");
  EXPECT_FLOAT_EQ(d.scalars.at("train_loss").at(2), 0.5f);
  EXPECT_EQ(d.scalars.at("train_loss").size(), 3u);
  EXPECT_EQ(d.histograms, 2);
  EXPECT_EQ(d.session_starts, (std::vector<int64_t>{2}));
  EXPECT_EQ(d.hparams_starts, 1);
  EXPECT_EQ(d.hparams, (std::map<std::string, std::string>{{"lr", std::to_string(0.01)}, {"noise", "uniform"}}));
  EXPECT_EQ(d.hparams_status, 1);  // STATUS_SUCCESS
}

TEST(Events, CrcMatchesTheKnownValue) {
  // CRC-32C check value of "123456789" (RFC 3720).
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
}

TEST(Events, TinyRunWritesEveryTagAndAResumeRestartsTheSession) {
  TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 320, 64, 4, false);
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json");
  cfg["indiv"]["net"]["params"]["capacity"] = 0.02;
  cfg["treat"]["max_epoch"] = 3;
  cfg["treat"]["data"]["bs_train"] = 32;
  {  // phi1_fc with 8-bit weights: 256 levels, no scalar each (levels/ is for the few of ternary to 4 bits)
    nlohmann::json thresholds = nlohmann::json::array(), levels = nlohmann::json::array();
    for (int k = -128; k < 128; ++k) {
      levels.push_back(k / 128.0);
      if (k < 127) thresholds.push_back((k + 0.5) / 128.0);
    }
    cfg["indiv"]["net"]["params"]["quant_schemes"]["phi1_fc"] = {"uniform", thresholds, levels};
  }
  std::ofstream(home.path() + "/Toy/config.json") << cfg.dump();
  const std::string args = "--problem=Toy --topology=MLP --threads=1 --log_every=3 --home=" + home.path();
  std::string out;
  ASSERT_EQ(testing::run_cli(args, out), 0) << out;
  const std::string stats = home.path() + "/Toy/logs/exp001/stats";
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(stats))
    if (e.is_regular_file()) files.push_back(e.path().string());
  ASSERT_EQ(files.size(), 1u);
  const Decoded d = decode(files[0]);
  for (const char* tag : {"train_loss", "train_metric", "valid_loss", "valid_metric", "learning_rate",
                          "noise/phi1_fc/sigma_forward", "noise/phi4_fc/sigma_backward", "levels/phi2_fc/0"}) {
    ASSERT_TRUE(d.scalars.count(tag)) << tag;
    EXPECT_EQ(d.scalars.at(tag).size(), 3u) << tag;
    for (int64_t s = 1; s <= 3; ++s) EXPECT_TRUE(d.scalars.at(tag).count(s)) << tag << " step " << s;
  }
  EXPECT_EQ(d.histograms, 2 * 3 * 4);  // 4 weight layers, 3 epochs, as <layer>_w and weights/<layer>
  std::set<std::string> tags;
  for (const auto& t : d.tags) tags.insert(t.second);
  for (const char* tag : {"phi1_fc_w", "phi4_fc_w", "weights/phi1_fc", "description/text_summary", "indiv/text_summary",
                          "treat/text_summary", "protocol/text_summary", "config/text_summary"})
    EXPECT_TRUE(tags.count(tag)) << tag;
  EXPECT_NE(d.text.find("\"MLP\""), std::string::npos);
  std::vector<std::string> step_files;
  for (const auto& e : fs::directory_iterator(stats + "/steps")) step_files.push_back(e.path().string());
  ASSERT_EQ(step_files.size(), 1u);
  EXPECT_EQ(decode(step_files[0]).scalars.at("train_loss_step").size(), 3u * 3u);  // 9 batches per epoch / 3
  // The ternary levels' fractions sum to one.
  double sum = 0;
  for (const char* l : {"levels/phi3_fc/-1", "levels/phi3_fc/0", "levels/phi3_fc/1"}) sum += d.scalars.at(l).at(2);
  EXPECT_NEAR(sum, 1.0, 1e-5);
  for (const auto& [tag, values] : d.scalars) EXPECT_NE(tag.rfind("levels/phi1_fc/", 0), 0u) << tag;
  // Raise max_epoch and resume after epoch 3: a second file whose session restarts at step 4.
  cfg["treat"]["max_epoch"] = 4;
  {
    auto stored = read_json_file(home.path() + "/Toy/logs/exp001/config.json");
    stored["treat"]["max_epoch"] = 4;
    std::ofstream(home.path() + "/Toy/logs/exp001/config.json") << stored.dump();
  }
  ASSERT_EQ(testing::run_cli(args + " --exp_id=1 --load=last", out), 0) << out;
  std::vector<std::string> after;
  for (const auto& e : fs::directory_iterator(stats))
    if (e.is_regular_file()) after.push_back(e.path().string());
  ASSERT_EQ(after.size(), 2u);
  for (const auto& f : after) {
    if (f == files[0]) continue;
    const Decoded r = decode(f);
    EXPECT_EQ(r.session_starts, (std::vector<int64_t>{4}));
    EXPECT_EQ(r.scalars.at("valid_metric").count(4), 1u);
    EXPECT_TRUE(r.text.empty());
  }
}

// TensorBoard's own event loader (its EventAccumulator, from PyPI) on a tiny run and its resume:
// every scalar under the original's tags once per epoch, the weight histograms, the text
// summaries, and no step written twice or purged by the resume's session start.
TEST(Events, TensorBoardItselfReadsATinyRunAndItsResume) {
  if (!testing::tools_python_has("tensorboard")) GTEST_SKIP() << testing::tools_python_missing("tensorboard");
  TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 320, 64, 4, false);
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json");
  cfg["indiv"]["net"]["params"]["capacity"] = 0.02;
  cfg["treat"]["max_epoch"] = 2;
  cfg["treat"]["data"]["bs_train"] = 32;
  std::ofstream(home.path() + "/Toy/config.json") << cfg.dump();
  const std::string args = "--problem=Toy --topology=MLP --threads=1 --log_every=3 --home=" + home.path();
  std::string out;
  ASSERT_EQ(testing::run_cli(args, out), 0) << out;
  {
    auto stored = read_json_file(home.path() + "/Toy/logs/exp001/config.json");
    stored["treat"]["max_epoch"] = 3;
    std::ofstream(home.path() + "/Toy/logs/exp001/config.json") << stored.dump();
  }
  ASSERT_EQ(testing::run_cli(args + " --exp_id=1", out), 0) << out;
  const std::string script = R"PY(
import json, sys
from tensorboard.backend.event_processing import event_accumulator as ea
out = {}
import os
for run, _, files in os.walk(sys.argv[1]):
    if not any('tfevents' in f for f in files):
        continue
    acc = ea.EventAccumulator(run, size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    r = {'scalars': {t: [e.step for e in acc.Scalars(t)] for t in tags['scalars']},
         'histograms': {t: [e.step for e in acc.Histograms(t)] for t in tags['histograms']},
         'text': {t: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in tags['tensors']
                  if not t.startswith('_hparams_/')}}
    out[os.path.relpath(run, sys.argv[1])] = r
print(json.dumps(out))
)PY";
  std::string log;
  ASSERT_EQ(testing::run_tools_python(script, home.path() + "/Toy/logs/exp001", log), 0) << log;
  const auto runs = nlohmann::json::parse(log.substr(log.find('{')));
  ASSERT_TRUE(runs.contains("stats")) << runs.dump(1);
  const auto& r = runs["stats"];
  const std::vector<int64_t> epochs = {1, 2, 3};
  for (const char* tag : {"train_loss", "train_metric", "valid_loss", "valid_metric", "learning_rate",
                          "noise/phi1_fc/sigma_forward", "noise/phi4_fc/mu", "levels/phi2_fc/0"})
    EXPECT_EQ(r["scalars"][tag].get<std::vector<int64_t>>(), epochs) << tag;
  for (const char* tag : {"phi1_fc_w", "phi4_fc_w", "weights/phi1_fc"})
    EXPECT_EQ(r["histograms"][tag].get<std::vector<int64_t>>(), epochs) << tag;
  for (const char* tag : {"config/text_summary", "indiv/text_summary", "treat/text_summary"})
    EXPECT_TRUE(r["text"].contains(tag)) << tag << " in " << r["text"].dump();
  EXPECT_NE(r["text"]["indiv/text_summary"].get<std::string>().find("MLP"), std::string::npos);
  // The batch losses (every 3 batches of 8; 9 batches an epoch): steps 3, 6, 9, 12, ... once each,
  // over the three epochs, wherever they are kept.
  std::vector<int64_t> steps;
  for (const auto& [run, data] : runs.items())
    if (data["scalars"].contains("train_loss_step"))
      for (const auto& s : data["scalars"]["train_loss_step"]) steps.push_back(s.get<int64_t>());
  std::vector<int64_t> expected;
  for (int64_t s = 3; s <= 27; s += 3) expected.push_back(s);
  EXPECT_EQ(steps, expected) << runs.dump(1);
}

TEST(Progress, WithoutATerminalLinesAreFewAndPlain) {
  std::ostringstream out;
  Progress p(out, false, 0.2);
  p.begin("epoch 1/1 train", 100000);
  for (int i = 1; i <= 100000; ++i) p.update(i, "loss 0.1 acc 90.00%");
  p.end("loss 0.1 acc 90.00%");
  const std::string s = out.str();
  EXPECT_EQ(s.find('\r'), std::string::npos);
  const auto lines = std::count(s.begin(), s.end(), '\n');
  EXPECT_GE(lines, 1);
  EXPECT_LE(lines, 20) << s;  // 100000 updates in well under 4 s: a handful of lines at most
  EXPECT_NE(s.find("epoch 1/1 train done in"), std::string::npos);
}

TEST(Progress, OnATerminalOneLineIsRedrawn) {
  std::ostringstream out;
  Progress p(out, true, 0.0);
  p.begin("test", 3);
  for (int i = 1; i <= 3; ++i) p.update(i, "");
  p.end("");
  const std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 1);
  EXPECT_NE(s.find('\r'), std::string::npos);
}

}  // namespace
}  // namespace quantlab

namespace quantlab {
namespace {

// TensorBoard's HParams dashboard: a tiny sweep's experiments are sessions with the sweep's factor
// as their hyperparameter and the final test among their metrics, read back through the HTTP API
// of TensorBoard itself (from PyPI, on the loopback interface).
TEST(Events, TensorBoardsHParamsDashboardListsASweepsUnits) {
  if (!testing::tools_python_has("tensorboard")) GTEST_SKIP() << testing::tools_python_missing("tensorboard");
  testing::TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 160, 32, 4, false);
  std::ofstream(home.path() + "/Toy/config.json") << testing::toy_mlp_config(1).dump();
  std::string out;
  ASSERT_EQ(testing::run_cli("sweep --problem=Toy --topology=MLP --threads=1 --device=cpu --name=lr "
                             "--grid treat.optimizer.params.lr=0.001,0.004 --home=" +
                                 home.path(),
                             out),
            0)
      << out;
  std::string log;
  ASSERT_EQ(testing::run_script_file(testing::tools_python(),
                                     std::string(QL_SOURCE_DIR) + "/tests/python/tensorboard_hparams.py",
                                     {home.path() + "/Toy/logs", "2"}, log),
            0)
      << log;
  const auto r = nlohmann::json::parse(log.substr(log.find('{')));
  EXPECT_EQ(r["runs"], nlohmann::json({"exp001/stats", "exp002/stats"})) << r["runs"];
  const auto& infos = r["experiment"]["hparamInfos"];
  ASSERT_EQ(infos.size(), 1u) << infos;
  EXPECT_EQ(infos[0]["name"], "treat.optimizer.params.lr");
  const auto& groups = r["groups"]["sessionGroups"];
  ASSERT_EQ(groups.size(), 2u) << groups;
  std::map<double, double> test_by_lr;
  for (const auto& g : groups) {
    EXPECT_EQ(g["sessions"][0]["status"], "STATUS_SUCCESS") << g;
    for (const auto& m : g["metricValues"])
      if (m["name"]["tag"] == "test_accuracy") test_by_lr[g["hparams"]["treat.optimizer.params.lr"]] = m["value"];
  }
  ASSERT_EQ(test_by_lr.size(), 2u) << groups;
  // The same figures as status.json's.
  for (int id : {1, 2}) {
    const auto st = read_json_file(home.path() + "/Toy/logs/exp00" + std::to_string(id) + "/saves/status.json");
    const double lr = id == 1 ? 0.001 : 0.004;
    EXPECT_NEAR(test_by_lr[lr], st["test"]["accuracy"].get<double>(), 1e-4);
  }
}

}  // namespace
}  // namespace quantlab
