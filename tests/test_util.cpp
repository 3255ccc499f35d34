// Test helpers.
#include "test_util.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <fstream>
#include <random>
#include <sstream>
#include <vector>

#include "quantlab/util/process.h"

namespace quantlab::testing {

TempDir::TempDir() {
  static std::mt19937_64 rng(std::random_device{}());
  path_ = (std::filesystem::temp_directory_path() / ("quantlab-test-" + std::to_string(rng()))).string();
  std::filesystem::create_directories(path_);
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void write_idx(const std::string& file, const torch::Tensor& data_u8, bool gz) {
  std::string bytes = {0, 0, 0x08, static_cast<char>(data_u8.dim())};
  for (int64_t s : data_u8.sizes())
    for (int b = 3; b >= 0; --b) bytes.push_back(static_cast<char>((s >> (8 * b)) & 0xff));
  const auto c = data_u8.contiguous();
  bytes.append(reinterpret_cast<const char*>(c.data_ptr<uint8_t>()), static_cast<size_t>(c.numel()));
  if (gz) {
    gzFile f = gzopen(file.c_str(), "wb");
    gzwrite(f, bytes.data(), static_cast<unsigned>(bytes.size()));
    gzclose(f);
  } else {
    std::ofstream(file, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
}

static void write_toy_split(const std::string& dir, const std::string& prefix, int64_t n, int classes, bool gz,
                            uint64_t seed) {
  torch::manual_seed(seed);
  auto labels = torch::randint(classes, {n}, torch::kLong);
  auto images = torch::rand({n, 28, 28}) * 60.0;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t row = 2 + labels[i].item<int64_t>() * (24 / classes);
    images[i].narrow(0, row, 3).add_(180.0);
  }
  const std::string ext = gz ? ".gz" : "";
  write_idx(dir + "/" + prefix + "-images-idx3-ubyte" + ext, images.clamp(0, 255).to(torch::kUInt8), gz);
  write_idx(dir + "/" + prefix + "-labels-idx1-ubyte" + ext, labels.to(torch::kUInt8), gz);
}

void write_toy_idx_problem(const std::string& dir, int64_t n_train, int64_t n_test, int classes, bool gz) {
  std::filesystem::create_directories(dir);
  write_toy_split(dir, "train", n_train, classes, gz, 1);
  write_toy_split(dir, "t10k", n_test, classes, gz, 2);
}

// The key of a parameter's optimizer state: the TensorImpl's address as text in libtorch 1.x
// (c10::guts::to_string, an ostream's rendering), the address itself in 2.x.
template <typename State>
typename State::key_type optimizer_state_key(const torch::Tensor& p) {
  if constexpr (std::is_same_v<typename State::key_type, std::string>) {
    std::ostringstream text;
    text << p.unsafeGetTensorImpl();
    return text.str();
  } else {
    return p.unsafeGetTensorImpl();
  }
}

std::vector<torch::Tensor> adam_state(const nlohmann::json& config, const Checkpoint& c) {
  Experiment exp(config, "", torch::kCPU);
  restore(exp, c);
  std::vector<torch::Tensor> out;
  for (const auto& p : exp.net->parameters()) {
    auto& state = exp.optimizer->state();
    auto it = state.find(optimizer_state_key<std::decay_t<decltype(state)>>(p));
    if (it == state.end()) continue;
    auto& s = static_cast<torch::optim::AdamParamState&>(*it->second);
    out.push_back(s.exp_avg());
    out.push_back(s.exp_avg_sq());
    out.push_back(torch::tensor(static_cast<double>(s.step())));
  }
  return out;
}

nlohmann::json toy_mlp_config(int epochs) {
  nlohmann::json cfg = read_json_file(std::string(QL_SOURCE_DIR) + "/FashionMNIST/config.json");
  cfg["indiv"]["net"]["params"]["capacity"] = 0.02;
  auto& bindings = cfg["treat"]["thermostat"]["params"]["bindings"];
  for (size_t k = 0; k < bindings.size(); ++k)
    bindings[k]["forward"]["params"] = {{"t_start", static_cast<int>(k)}, {"t_decay", 2}};
  cfg["treat"]["max_epoch"] = epochs;
  cfg["treat"]["data"]["bs_train"] = 32;
  return cfg;
}

pid_t spawn(const std::string& args, const std::string& log) {
  std::vector<std::string> parts;
  std::istringstream is(args);
  for (std::string a; is >> a;) parts.push_back(a);
  return spawn_program(QL_BINARY, parts, {}, log);
}

pid_t spawn_program(const std::string& program, const std::vector<std::string>& args,
                    const std::vector<std::pair<std::string, std::string>>& env, const std::string& log,
                    const std::vector<std::string>& unset) {
  std::vector<std::string> parts{program};
  parts.insert(parts.end(), args.begin(), args.end());
  const pid_t pid = fork();
  if (pid == 0) {
    for (const auto& k : unset) unsetenv(k.c_str());
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (auto& p : parts) argv.push_back(p.data());
    argv.push_back(nullptr);
    // One open file for both streams: with two, each writes at its own offset over the other's lines.
    if (!freopen(log.c_str(), "w", stdout) || dup2(fileno(stdout), 2) < 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return exit_code(status);
}

std::string slurp(const std::string& file) {
  std::ifstream in(file);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

namespace {

bool imports(const std::string& python, const std::string& module) {
  return !python.empty() && std::filesystem::exists(python) &&
         std::system((python + " -c 'import " + module + "' >/dev/null 2>&1").c_str()) == 0;
}

int run_script(const std::string& python, const std::string& script, const std::string& arg, std::string& output) {
  TempDir tmp;
  std::ofstream(tmp.path() + "/script.py") << script;
  std::ofstream(tmp.path() + "/arg") << arg;
  const std::string log = tmp.path() + "/log";
  const std::string cmd = python + " " + tmp.path() + "/script.py \"$(cat " + tmp.path() + "/arg)\" >" + log + " 2>&1";
  const int status = std::system(cmd.c_str());
  output = slurp(log);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

const std::string& torch_python() {
  static const std::string python = QL_PYTHON;
  return python;
}

bool python_torch_available() {
  static const bool ok = imports(torch_python(), "torch");
  return ok;
}

std::string python_torch_missing() {
  return torch_python() + " has no torch (make test installs Debian's python3-torch, make test TORCH=pip the venv's)";
}

int run_python(const std::string& script, const std::string& arg, std::string& output) {
  return run_script(torch_python(), script, arg, output);
}

const std::string& tools_python() {
  static const std::string python = QL_TOOLS_PYTHON;
  return python;
}

bool tools_python_has(const std::string& module) {
  static std::map<std::string, bool> known;
  auto it = known.find(module);
  if (it == known.end()) it = known.emplace(module, imports(tools_python(), module)).first;
  return it->second;
}

std::string tools_python_missing(const std::string& module) {
  return "no Python with " + module + " (QL_TOOLS_PYTHON='" + tools_python() +
         "'; make test installs it in the build's venv)";
}

int run_tools_python(const std::string& script, const std::string& arg, std::string& output) {
  return run_script(tools_python(), script, arg, output);
}

int run_script_file(const std::string& python, const std::string& file, const std::vector<std::string>& args,
                    std::string& output) {
  TempDir tmp;
  const std::string log = tmp.path() + "/log";
  std::vector<std::string> argv{file};
  argv.insert(argv.end(), args.begin(), args.end());
  const int code = wait_exit(spawn_program(python, argv, {}, log));
  output = slurp(log);
  return code;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

int run_cli(const std::string& args, std::string& output) {
  TempDir tmp;
  const std::string log = tmp.path() + "/log";
  const int code = wait_exit(spawn(args, log));
  output = slurp(log);
  return code;
}

}  // namespace quantlab::testing

namespace quantlab::testing {

torch::Tensor test_picture(int64_t h, int64_t w, int64_t seed) {
  auto y = torch::linspace(0, 1, h).view({h, 1, 1});
  auto x = torch::linspace(0, 1, w).view({1, w, 1});
  auto phase = torch::tensor({0.3f, 1.7f, 2.9f}).view({1, 1, 3}) + static_cast<float>(seed);
  auto img = 127.5 + 110.0 * torch::sin(6.0 * x * (1 + seed % 3) + 4.0 * y + phase) * torch::cos(3.0 * y - x + phase);
  return img.clamp(0, 255).round().to(torch::kUInt8).contiguous();
}

void write_jpeg(const std::string& file, const torch::Tensor& rgb, const std::string& kind, int quality) {
  const int h = static_cast<int>(rgb.size(0)), w = static_cast<int>(rgb.size(1));
  auto src = rgb.contiguous();
  int format = TJPF_RGB, subsamp = TJSAMP_420;
  if (kind == "gray") {
    src = (src.to(torch::kFloat32) * torch::tensor({0.299f, 0.587f, 0.114f}))
              .sum(2)
              .round()
              .to(torch::kUInt8)
              .contiguous();
    format = TJPF_GRAY;
    subsamp = TJSAMP_GRAY;
  } else if (kind == "cmyk") {
    src = torch::cat({src, torch::full({h, w, 1}, 255, torch::kUInt8)}, 2).contiguous();
    format = TJPF_CMYK;
    subsamp = TJSAMP_444;
  }
  tjhandle t = tjInitCompress();
  unsigned char* out = nullptr;
  unsigned long size = 0;
  if (tjCompress2(t, src.data_ptr<uint8_t>(), w, 0, h, format, &out, &size, subsamp, quality, 0) != 0)
    throw std::runtime_error(std::string("tjCompress2: ") + tjGetErrorStr2(t));
  std::ofstream(file, std::ios::binary).write(reinterpret_cast<const char*>(out), static_cast<std::streamsize>(size));
  tjFree(out);
  tjDestroy(t);
}

void write_png(const std::string& file, const torch::Tensor& rgb) {
  png_image image;
  std::memset(&image, 0, sizeof image);
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(rgb.size(1));
  image.height = static_cast<png_uint_32>(rgb.size(0));
  image.format = PNG_FORMAT_RGB;
  auto src = rgb.contiguous();
  if (!png_image_write_to_file(&image, file.c_str(), 0, src.data_ptr<uint8_t>(), 0, nullptr))
    throw std::runtime_error("png_image_write_to_file: " + std::string(image.message));
}

void write_png_raw(const std::string& file, int width, int height, int bit_depth, int color_type,
                   const std::vector<uint8_t>& row) {
  FILE* fp = std::fopen(file.c_str(), "wb");
  if (!fp) throw std::runtime_error(file + ": cannot write");
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    png_destroy_write_struct(&png, &info);
    std::fclose(fp);
    throw std::runtime_error(file + ": libpng failed");
  }
  png_init_io(png, fp);
  png_set_IHDR(png, info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), bit_depth, color_type,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < height; ++y) png_write_row(png, row.data());
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  std::fclose(fp);
}

void write_image_tree(const std::string& dir, const std::vector<std::string>& classes, int per_class) {
  int64_t seed = 0;
  for (const auto& c : classes) {
    std::filesystem::create_directories(dir + "/" + c);
    for (int k = 0; k < per_class; ++k, ++seed) {
      const int64_t h = 180 + 37 * (seed % 5), w = 240 + 53 * (seed % 4);
      char name[32];
      std::snprintf(name, sizeof name, "/%s_%d.JPEG", c.c_str(), k);
      write_jpeg(dir + "/" + c + name, test_picture(h, w, seed));
    }
  }
}

// Writes `n` CIFAR records with label i % classes and pixel bytes (i + channel) for image i.
void write_cifar_file(const std::string& file, int n, int label_bytes, int classes) {
  std::ofstream out(file, std::ios::binary);
  for (int i = 0; i < n; ++i) {
    for (int b = 0; b < label_bytes; ++b) out.put(static_cast<char>(b + 1 == label_bytes ? i % classes : 0));
    for (int c = 0; c < 3; ++c)
      for (int p = 0; p < 1024; ++p) out.put(static_cast<char>((i + c) & 0xff));
  }
}

void write_cifar10(const std::string& dir, int per_file) {
  std::filesystem::create_directories(dir);
  for (int k = 1; k <= 5; ++k) write_cifar_file(dir + "/data_batch_" + std::to_string(k) + ".bin", per_file, 1, 10);
  write_cifar_file(dir + "/test_batch.bin", per_file, 1, 10);
}

}  // namespace quantlab::testing
