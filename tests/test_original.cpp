// What the original QuantLab accepts and produces, accepted and produced here: its experiment
// folders and checkpoints, its pretrained references, its baselines, its configs (templates
// included) and its metric_period.
#include <caffe2/serialize/inline_container.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <regex>
#include <sstream>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/experiment/launch.h"
#include "quantlab/experiment/torch_file.h"
#include "quantlab/experiment/transfer.h"
#include "quantlab/topology/mlp.h"
#include "quantlab/topology/vgg.h"
#include "quantlab/train/experiment.h"
#include "test_util.h"

namespace quantlab {
namespace {

namespace fs = std::filesystem;
using testing::TempDir;

nlohmann::json toy_config(int epochs) { return testing::toy_mlp_config(epochs); }

LaunchOptions options(const std::string& home) {
  LaunchOptions o;
  o.problem = "Toy";
  o.topology = "MLP";
  o.home = home;
  o.device = "cpu";
  o.threads = 1;
  return o;
}

// Converts a QuantLab checkpoint of the toy MLP into the original's checkpoint layout, and
// evaluates it with the original's evaluation forward written out in PyTorch (hard ternary stair
// with H(0) = 1, batch norm in evaluation mode), on the IDX test files.
const char* const kOriginalPython = R"PY(
import gzip, json, struct, sys, torch
from collections import OrderedDict
a = json.loads(sys.argv[1])
ours = torch.load(a["quantlab_checkpoint"])["net"]
net = OrderedDict()
for k in sorted(ours):
    net[k] = ours[k]
for m in ["phi1_fc", "phi1_act", "phi2_fc", "phi2_act", "phi3_fc", "phi3_act", "phi4_fc"]:
    net[m + ".thresholds"] = torch.tensor([-0.5, 0.5])
    net[m + ".quant_levels"] = torch.tensor([-1.0, 0.0, 1.0])
    net[m + ".stddev"] = torch.tensor([0.0, 0.5])
ckpt = {"indiv": {"net": net},
        "treat": {"thermostat": {"t": 5}, "optimizer": {"state": {}, "param_groups": [{"lr": 0.001, "params": [0]}]},
                  "lr_scheduler": {"last_epoch": 5}, "i_epoch": 5},
        "protocol": {"metrics": {"train_loss": 0.5, "train_metric": torch.tensor(12.5), "valid_loss": 0.6, "valid_metric": 20.0}}}
for f in a["save_to"]:
    torch.save(ckpt, f)
def idx(path):
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return torch.frombuffer(bytearray(data[4 + 4 * ndim:]), dtype=torch.uint8).reshape(dims)
x = idx(a["images"]).float().div(255.0).reshape(-1, 784)
y = idx(a["labels"]).long()
def stair(v):
    return -1.0 + (v - (-0.5) >= 0).float() + (v - 0.5 >= 0).float()
def bn(v, p):
    return (v - net[p + ".running_mean"]) / torch.sqrt(net[p + ".running_var"] + 1e-5) * net[p + ".weight"] + net[p + ".bias"]
h = x
for k in range(1, 5):
    h = bn(h @ stair(net["phi%d_fc.weight" % k]).t(), "phi%d_bn" % k)
    if k < 4:
        h = stair(h)
accuracy = 100.0 * float((h.argmax(1) == y).float().mean())
print(json.dumps({"accuracy": accuracy}))
)PY";

double accuracy_in(const std::string& out) {
  const std::regex re("acc ([0-9.]+)%");
  std::smatch m;
  EXPECT_TRUE(std::regex_search(out, m, re)) << out;
  return m.empty() ? -1 : std::stod(m[1]);
}

TEST(Original, ItsCheckpointIsTestedAsItsTestModeWould) {
  if (!testing::python_torch_available()) GTEST_SKIP() << testing::python_torch_missing();
  TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 640, 700, 4, true);
  const auto cfg = toy_config(4);
  std::ofstream(home.path() + "/Toy/config.json") << cfg.dump(2);
  std::ostringstream sink;
  launch(options(home.path()), nullptr, sink);  // a trained QuantLab network to convert
  // The original's experiment folder: exp000 with its config and its checkpoints.
  const std::string exp0 = home.path() + "/Toy/logs/exp000";
  fs::create_directories(exp0 + "/saves");
  fs::create_directories(home.path() + "/Toy/MLP/pretrained");
  fs::copy_file(home.path() + "/Toy/config.json", exp0 + "/config.json");
  std::string out;
  const nlohmann::json arg = {{"quantlab_checkpoint", home.path() + "/Toy/logs/exp001/saves/last.ckpt"},
                              {"save_to",
                               {exp0 + "/saves/best.ckpt", exp0 + "/saves/epoch0005.ckpt",
                                home.path() + "/Toy/MLP/pretrained/original_mlp.ckpt"}},
                              {"images", home.path() + "/Toy/data/t10k-images-idx3-ubyte.gz"},
                              {"labels", home.path() + "/Toy/data/t10k-labels-idx1-ubyte.gz"}};
  ASSERT_EQ(testing::run_python(kOriginalPython, arg.dump(), out), 0) << out;
  const double original = nlohmann::json::parse(out.substr(out.rfind('{')))["accuracy"].get<double>();
  EXPECT_GT(original, 40.0) << "a trained network: the comparison means something";
  // --mode=test on the original's experiment folder reports the original's accuracy.
  ASSERT_EQ(
      testing::run_cli(
          "--problem=Toy --topology=MLP --device=cpu --threads=1 --mode=test --exp_id=0 --home=" + home.path(), out),
      0)
      << out;
  EXPECT_NEAR(accuracy_in(out), original, 0.05) << out;
  std::cout << "original test mode (written out in PyTorch): " << original
            << " %, quantlab --mode=test: " << accuracy_in(out) << " %" << std::endl;
  EXPECT_NE(out.find("is a checkpoint of the original QuantLab (after epoch 5)"), std::string::npos) << out;
  EXPECT_NE(out.find("test (best.ckpt, after epoch 5)"), std::string::npos) << out;
  // Training it on is refused with what can be done instead.
  EXPECT_EQ(
      testing::run_cli(
          "--problem=Toy --topology=MLP --device=cpu --threads=1 --exp_id=0 --load=best --home=" + home.path(), out),
      1);
  EXPECT_NE(out.find("is a checkpoint of the original QuantLab: --mode=test evaluates it"), std::string::npos) << out;
  // Its weights start a new experiment through the original's two forms of `pretrained`.
  for (const nlohmann::json& pretrained :
       {nlohmann::json{{"file", {{"exp_id", 0}, {"epoch", 5}}}, {"parameters", {"phi1", "phi2"}}},
        nlohmann::json{{"file", "original_mlp.ckpt"}, {"parameters", {"phi1", "phi2"}}}}) {
    auto c = cfg;
    c["indiv"]["net"]["pretrained"] = pretrained;
    c["treat"]["data"]["seed"] = 7;
    Experiment exp(c, "MLP", torch::kCPU);
    ProblemPaths paths{home.path() + "/Toy", home.path() + "/Toy/data", home.path() + "/Toy/logs"};
    // phi1_fc.weight, phi1_bn.{weight, bias, running_mean, running_var}, and phi2's.
    EXPECT_EQ(apply_pretrained(exp, paths), 10) << pretrained.dump();
    const auto source = read_network_tensors(exp0 + "/saves/epoch0005.ckpt");
    EXPECT_TRUE(torch::equal(named_state(*exp.net).at("phi2_fc.weight"), source.at("phi2_fc.weight")));
    EXPECT_FALSE(torch::equal(named_state(*exp.net).at("phi3_fc.weight"), source.at("phi3_fc.weight")));
  }
}

// The last.ckpt of experiment 1 of the toy problem (`train` images) trained one epoch in `home`.
std::string trained_toy_checkpoint(const std::string& home, int64_t train) {
  testing::write_toy_idx_problem(home + "/Toy/data", train, 64, 4, true);
  std::ofstream(home + "/Toy/config.json") << toy_config(1).dump(2);
  std::ostringstream sink;
  launch(options(home), nullptr, sink);
  return home + "/Toy/logs/exp001/saves/last.ckpt";
}

// The torch.save reader takes libtorch's own pickles too (typed containers), value for value.
TEST(TorchFile, ReadsWhatLibtorchWrites) {
  TempDir home;
  const std::string file = trained_toy_checkpoint(home.path(), 320);
  const c10::IValue v = read_torch_file(file);
  ASSERT_TRUE(v.isGenericDict());
  const auto d = v.toGenericDict();
  EXPECT_EQ(d.at("format").toStringRef(), "quantlab.checkpoint");
  const Checkpoint c = load_checkpoint(file);
  size_t n = 0;
  for (const auto& kv : d.at("net").toGenericDict()) {
    EXPECT_TRUE(torch::equal(kv.value().toTensor(), c.net.at(kv.key().toStringRef()))) << kv.key().toStringRef();
    ++n;
  }
  EXPECT_EQ(n, c.net.size());
  EXPECT_EQ(d.at("lr_scheduler").toListRef().size(), c.lr_scheduler.size());
  EXPECT_THROW(read_torch_file(home.path() + "/Toy/config.json"), IoError);
}

// A torch.save file written byte by byte: `pickle`'s tensors view the float32 storage "0".
std::string hand_made_torch_file(const std::string& dir, const std::string& pickle, const std::vector<float>& data) {
  std::vector<char> bytes;
  caffe2::serialize::PyTorchStreamWriter writer([&](const void* b, size_t n) {
    bytes.insert(bytes.end(), static_cast<const char*>(b), static_cast<const char*>(b) + n);
    return n;
  });
  writer.writeRecord("data.pkl", pickle.data(), pickle.size());
  writer.writeRecord("data/0", data.data(), data.size() * sizeof(float));
  writer.writeEndOfFile();
  const std::string file = dir + "/hand.pt";
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return file;
}

// The pickle of torch._utils._rebuild_tensor_v2(storage "0" of `numel` floats, 0, size, stride)
// (without PROTO and STOP), `size` and `stride` as pickle tuples.
std::string tensor_pickle(int numel, const std::string& size, const std::string& stride) {
  std::string p = "ctorch._utils\n_rebuild_tensor_v2\n((";
  p += std::string("\x8c\x07") + "storage" + "ctorch\nFloatStorage\n" + "\x8c\x01" + "0" + "\x8c\x03" + "cpu";
  p += 'K';
  p += static_cast<char>(numel);
  p += "tQ";
  p += 'K';
  p += '\0';  // the offset
  p += size + stride + "\x89" + "ccollections\nOrderedDict\n)RtR";
  return p;
}
std::string one_tensor(int numel, const std::string& size, const std::string& stride) {
  return "\x80\x02" + tensor_pickle(numel, size, stride) + ".";
}

// A hand-made file is read within bounds: a view whose strides do not match its sizes, one beyond
// its storage, or one that repeats a small storage into more than the machine's memory, is
// refused by name; a storage that several tensors view is read once and serves them all.
TEST(TorchFile, HandMadeViewsAreBoundedAndAStorageIsReadOnce) {
  TempDir dir;
  const std::vector<float> data = {1, 2, 3, 4, 5, 6};
  const auto read = [&](const std::string& pickle) {
    return read_torch_file(hand_made_torch_file(dir.path(), pickle, data));
  };
  const auto error = [&](const std::string& pickle) {
    try {
      read(pickle);
    } catch (const IoError& e) {
      return std::string(e.what());
    }
    return std::string("(read)");
  };
  const c10::IValue t = read(one_tensor(6, "(K\x02K\x03t", "(K\x03K\x01t"));
  EXPECT_TRUE(torch::equal(t.toTensor(), torch::tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f}).view({2, 3})));
  std::string e = error(one_tensor(6, "(K\x02K\x03t", "(K\x01t"));
  EXPECT_NE(e.find("a tensor with 2 sizes and 1 strides"), std::string::npos) << e;
  e = error(one_tensor(6, "(K\x07t", "(K\x01t"));
  EXPECT_NE(e.find("a tensor larger than its storage"), std::string::npos) << e;
  // 2^40 copies of one element (LONG1 of 6 bytes).
  e = error(one_tensor(6, std::string("(\x8a\x06\0\0\0\0\0\x01t", 10), std::string("(K\0t", 4)));
  EXPECT_NE(e.find("more than this machine's memory holds"), std::string::npos) << e;
  // Lists nested 100000 deep, and a list inside itself: refused, not a stack overflow.
  e = error("\x80\x02" + std::string(100000, ']') + std::string(99999, 'a') + ".");
  EXPECT_NE(e.find("containers nested deeper than 64"), std::string::npos) << e.substr(0, 300);
  e = error(std::string("\x80\x02]q\0h\0a.", 9));
  EXPECT_NE(e.find("a container inside itself"), std::string::npos) << e.substr(0, 300);
  // The same deep lists in a pickle that ends early (its error releases what it built).
  e = error("\x80\x02" + std::string(100000, ']') + std::string(99999, 'a'));
  EXPECT_NE(e.find("containers nested deeper than 64"), std::string::npos) << e.substr(0, 300);
  // An empty tensor reads nothing, whatever its other sizes.
  const c10::IValue none = read(one_tensor(6, std::string("(K\0\x8a\x06\0\0\0\0\0\x01t", 12), "(K\x01K\x01t"));
  EXPECT_EQ(none.toTensor().numel(), 0);
  // The same deep list left on the pickle's stack, a small value returned.
  e = error("\x80\x02" + std::string(100000, ']') + std::string(99999, 'a') + "K\x01.");
  EXPECT_NE(e.find("containers nested deeper than 64"), std::string::npos) << e.substr(0, 300);
  // Two views of one storage, the second naming it again.
  const c10::IValue both = read(std::string("\x80\x02](") + tensor_pickle(6, "(K\x06t", "(K\x01t") +
                                tensor_pickle(6, "(K\x03t", "(K\x02t") + "e.");
  ASSERT_TRUE(both.isList());
  ASSERT_EQ(both.toListRef().size(), 2u);
  EXPECT_TRUE(torch::equal(both.toListRef()[0].toTensor(), torch::tensor({1.f, 2.f, 3.f, 4.f, 5.f, 6.f})));
  EXPECT_TRUE(torch::equal(both.toListRef()[1].toTensor(), torch::tensor({1.f, 3.f, 5.f})));
}

// A checkpoint edited in Python (a tuple added, its checksum kept) is a checksum mismatch naming
// the file; a FIFO or a device in a checkpoint's place is refused before it is read.
TEST(TorchFile, AnEditedCheckpointOrAFifoIsNamed) {
  TempDir dir;
  c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
  d.insert("format", "quantlab.checkpoint");
  d.insert("version", kCheckpointVersion);
  d.insert("checksum", "00000000");
  d.insert("extra", c10::ivalue::Tuple::create({c10::IValue(int64_t{1}), c10::IValue(2.5)}));
  const std::vector<char> bytes = plain_torch_save(c10::IValue(d));
  const std::string file = dir.path() + "/edited.ckpt";
  std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  try {
    load_checkpoint(file);
    ADD_FAILURE() << "an edited checkpoint was loaded";
  } catch (const IoError& e) {
    EXPECT_NE(std::string(e.what()).find(file + ": checksum mismatch"), std::string::npos) << e.what();
  }
  const std::string fifo = dir.path() + "/fifo.ckpt";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (const auto& read :
       std::vector<std::function<void()>>{[&] { load_checkpoint(fifo); }, [&] { read_network_tensors(fifo); }}) {
    try {
      read();
      ADD_FAILURE() << "a FIFO was read";
    } catch (const IoError& e) {
      EXPECT_NE(std::string(e.what()).find("is a FIFO"), std::string::npos) << e.what();
    }
  }
}

// A checkpoint whose optimizer archive or generator state libtorch cannot take (written by hand,
// with a valid checksum) stops the resume naming the file, not with libtorch's bare message.
TEST(TorchFile, AStateLibtorchCannotTakeIsNamed) {
  TempDir home;
  const std::string file = trained_toy_checkpoint(home.path(), 160);
  Checkpoint c = load_checkpoint(file);
  std::ostringstream sink;
  c.optimizer = torch::full({64}, 7, torch::kUInt8);  // not an archive
  save_checkpoint(file, c);
  auto o = options(home.path());
  o.exp_id = 1;
  std::string e;
  try {
    launch(o, nullptr, sink);
  } catch (const Error& err) {
    e = err.what();
  }
  EXPECT_NE(e.find(file + ": the checkpoint's optimizer state cannot be restored into this experiment's Adam "
                          "optimizer ("),
            std::string::npos)
      << e;
  c.optimizer = torch::full({64}, 7.0f);  // bytes, but as float
  save_checkpoint(file, c);
  try {
    load_checkpoint(file);
    ADD_FAILURE() << "a float optimizer archive was loaded";
  } catch (const IoError& err) {
    EXPECT_NE(std::string(err.what()).find("a 1-d tensor of bytes"), std::string::npos) << err.what();
  }
}

int64_t count(torch::nn::Module& net) {
  int64_t n = 0;
  for (const auto& p : net.parameters()) n += p.numel();
  return n;
}

// The baselines are the original's classes: names and shapes of every parameter and buffer.
TEST(Original, BaselinesHaveTheOriginalsParameters) {
  const nlohmann::json params = {{"capacity", 0.25}};
  auto mlp = make_mlp_baseline(JsonNode(params, "params"));
  std::map<std::string, std::vector<int64_t>> got;
  for (const auto& kv : named_state(*mlp)) got[kv.first] = kv.second.sizes().vec();
  const std::map<std::string, std::vector<int64_t>> mlp_want = {
      {"phi1_fc.weight", {512, 784}},  {"phi1_bn.weight", {512}},      {"phi1_bn.bias", {512}},
      {"phi1_bn.running_mean", {512}}, {"phi1_bn.running_var", {512}}, {"phi1_bn.num_batches_tracked", {}},
      {"phi2_fc.weight", {512, 512}},  {"phi2_bn.weight", {512}},      {"phi2_bn.bias", {512}},
      {"phi2_bn.running_mean", {512}}, {"phi2_bn.running_var", {512}}, {"phi2_bn.num_batches_tracked", {}},
      {"phi3_fc.weight", {512, 512}},  {"phi3_bn.weight", {512}},      {"phi3_bn.bias", {512}},
      {"phi3_bn.running_mean", {512}}, {"phi3_bn.running_var", {512}}, {"phi3_bn.num_batches_tracked", {}},
      {"phi4_fc.weight", {10, 512}},   {"phi4_fc.bias", {10}}};
  EXPECT_EQ(got, mlp_want);
  EXPECT_EQ(count(*mlp), 512 * 784 + 2 * 512 * 512 + 3 * 2 * 512 + 10 * 512 + 10);
  // ReLU6: a large input saturates at 6 in the hidden layers (checked through the first one).
  auto vgg = make_vgg_baseline(JsonNode(params, "params"));
  std::map<std::string, std::vector<int64_t>> vgot;
  for (const auto& kv : named_state(*vgg)) vgot[kv.first] = kv.second.sizes().vec();
  const int64_t c1 = 32, c2 = 64, c3 = 128;
  std::map<std::string, std::vector<int64_t>> vgg_want;
  const int64_t channels[] = {3, c1, c1, c2, c2, c3, c3};
  for (int k = 1; k <= 6; ++k) {
    const std::string p = "phi" + std::to_string(k);
    vgg_want[p + "_conv.weight"] = {channels[k], channels[k - 1], 3, 3};
    for (const char* b : {"weight", "bias", "running_mean", "running_var"}) vgg_want[p + "_bn." + b] = {channels[k]};
    vgg_want[p + "_bn.num_batches_tracked"] = {};
  }
  vgg_want["phi7_fc.weight"] = {1024, c3 * 16};
  vgg_want["phi8_fc.weight"] = {1024, 1024};
  for (const char* p : {"phi7", "phi8"}) {
    for (const char* b : {"weight", "bias", "running_mean", "running_var"})
      vgg_want[std::string(p) + "_bn." + b] = {1024};
    vgg_want[std::string(p) + "_bn.num_batches_tracked"] = {};
  }
  vgg_want["phi9_fc.weight"] = {10, 1024};
  vgg_want["phi9_fc.bias"] = {10};
  EXPECT_EQ(vgot, vgg_want);
}

// ReLU6 between the layers, as the original's: a large pre-activation saturates at 6.
TEST(Original, BaselinesUseReluSix) {
  const nlohmann::json params = {{"capacity", 0.01}};  // 20 hidden units
  auto mlp = make_mlp_baseline(JsonNode(params, "params"));
  mlp->eval();
  torch::NoGradGuard no_grad;
  for (auto& kv : mlp->named_parameters()) {
    const std::string& n = kv.key();
    if (n == "phi1_fc.weight") kv.value().fill_(0.0);
    if (n == "phi1_bn.bias") kv.value().fill_(100.0);  // h1 = act(100)
    if (n == "phi2_fc.weight" || n == "phi3_fc.weight" || n == "phi4_fc.weight") kv.value().fill_(1.0 / 20);
    if (n == "phi4_fc.bias") kv.value().fill_(0.0);
  }
  // ReLU6: h1 = 6, h2 = act(6) = 6, h3 = 6, scores 6 (ReLU would give 100).
  const auto scores = mlp->forward(torch::ones({1, 1, 28, 28}));
  EXPECT_NEAR(scores[0][0].item<float>(), 6.0f, 1e-3) << scores;
}

// Every config of the original loads: the templates of its baselines (a thermostat with nothing to
// anneal, the loss function inside indiv.net) and its MNIST, CIFAR-10 and ImageNet configs.
TEST(Original, ItsConfigsAndTemplatesLoad) {
  nlohmann::json mlp_template = toy_config(1);
  mlp_template["indiv"] = {{"net",
                            {{"class", "MLPBaseline"},
                             {"params", {{"capacity", 1}}},
                             {"pretrained", nullptr},
                             {"loss_function", {{"class", "HingeLoss"}, {"params", {{"num_classes", 10}}}}}}}};
  mlp_template["treat"]["thermostat"] = {
      {"class", "MLPBaseline"},
      {"params", {{"noise_schemes", nlohmann::json::object()}, {"bindings", nlohmann::json::array()}}}};
  Experiment mlp(mlp_template, "MLP", torch::kCPU);
  EXPECT_FALSE(mlp.thermostat);
  ASSERT_EQ(mlp.notes.size(), 1u);
  EXPECT_NE(mlp.notes[0].find("MLPBaseline is a float network: it has nothing to anneal"), std::string::npos);
  nlohmann::json vgg_template = mlp_template;
  vgg_template["indiv"]["net"]["class"] = "VGGBaseline";
  vgg_template["treat"]["thermostat"]["class"] = "VGGBaseline";
  Experiment vgg(vgg_template, "VGG", torch::kCPU);
  EXPECT_FALSE(vgg.thermostat);
  const std::string ref = std::string(QL_SOURCE_DIR) + "/../shared/reference/original-quantlab";
  if (!fs::exists(ref)) GTEST_SKIP() << ref << " is not beside this checkout";
  for (const auto& [problem, topology] : std::vector<std::pair<std::string, std::string>>{
           {"MNIST", "MLP"}, {"CIFAR-10", "VGG"}, {"ImageNet", "MobileNetv2"}}) {
    EXPECT_NO_THROW(Experiment(read_json_file(ref + "/" + problem + "/config.json"), topology, torch::kCPU)) << problem;
  }
}

// metric_period, as the original's: the training metric is measured every N epochs (0: never);
// the best epoch is checked every epoch.
TEST(Original, MetricPeriodIsHowOftenTheTrainingMetricIsMeasured) {
  TempDir home;
  testing::write_toy_idx_problem(home.path() + "/Toy/data", 320, 64, 4, true);
  auto cfg = toy_config(4);
  cfg["protocol"] = {{"update_metric", "valid_metric"}, {"metric_period", 2}};
  std::ofstream(home.path() + "/Toy/config.json") << cfg.dump(2);
  std::ostringstream sink;
  launch(options(home.path()), nullptr, sink);
  const std::string out = sink.str();
  EXPECT_NE(out.find("epoch 1/4 | train loss"), std::string::npos) << out;
  // Epochs 1 and 3: "acc -" for training; 2 and 4: measured.
  std::regex line("epoch ([0-9])/4 \\| train loss [0-9.]+ acc ([^ ]+)");
  int measured = 0, skipped = 0;
  for (std::sregex_iterator it(out.begin(), out.end(), line), end; it != end; ++it) {
    const int e = std::stoi((*it)[1]);
    const std::string acc = (*it)[2];
    if (e % 2 == 0) {
      EXPECT_NE(acc, "-") << "epoch " << e;
      ++measured;
    } else {
      EXPECT_EQ(acc, "-") << "epoch " << e;
      ++skipped;
    }
  }
  EXPECT_EQ(measured, 2);
  EXPECT_EQ(skipped, 2);
  const Checkpoint c = load_checkpoint(home.path() + "/Toy/logs/exp001/saves/last.ckpt");
  EXPECT_FALSE(std::isnan(c.state.stats[Statistic::kTrainMetric]));  // epoch 4 measured it
  // metric_period 0 never measures it, and cannot then pick the best epoch by it.
  cfg["protocol"] = {{"update_metric", "train_metric"}, {"metric_period", 0}};
  EXPECT_THROW(Experiment(cfg, "MLP", torch::kCPU), ConfigError);
}

}  // namespace
}  // namespace quantlab
