// Helpers shared by the tests: temporary folders and tiny IDX data sets in the real format.
#pragma once

#include <torch/torch.h>

#include <sys/types.h>

#include <filesystem>
#include <string>
#include <vector>

#include "quantlab/experiment/checkpoint.h"
#include "quantlab/nn/products.h"
#include "test_names.h"

namespace quantlab::testing {

// How --amp's products run on the CPU (nn/products.h) for a scope; the mode before is restored.
class Bf16ProductsMode {
 public:
  explicit Bf16ProductsMode(nn::Bf16Products mode) : saved_(nn::bf16_products()) { nn::set_bf16_products(mode); }
  ~Bf16ProductsMode() { nn::set_bf16_products(saved_); }
  Bf16ProductsMode(const Bf16ProductsMode&) = delete;
  Bf16ProductsMode& operator=(const Bf16ProductsMode&) = delete;

 private:
  nn::Bf16Products saved_;
};

// A fresh folder under the system's temporary directory, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Writes an IDX file of uint8 data with the given shape (gzipped when `gz`).
void write_idx(const std::string& file, const torch::Tensor& data_u8, bool gz);

// Writes train-/t10k- images and labels of a learnable toy problem: `classes` classes of 28x28
// images, each class a bright horizontal band at its own height, plus noise.
void write_toy_idx_problem(const std::string& dir, int64_t n_train, int64_t n_test, int classes, bool gz);

// FashionMNIST/config.json shrunk for the toy problem: capacity 0.02 (40 hidden units), group k
// annealing from epoch k over 2 epochs, `epochs` epochs, batch 32.
nlohmann::json toy_mlp_config(int epochs);

// CIFAR's binary records: `n` images with label i % classes and pixel bytes (i + channel); CIFAR-10's
// six files (data_batch_1..5.bin, test_batch.bin) of `per_file` images each in `dir`.
void write_cifar_file(const std::string& file, int n, int label_bytes, int classes);
void write_cifar10(const std::string& dir, int per_file);

// The optimizer state a checkpoint holds, parameter by parameter in the network's order (the
// archive's byte layout depends on memory addresses, so bytes cannot be compared). Adam only.
std::vector<torch::Tensor> adam_state(const nlohmann::json& config, const Checkpoint& c);

// Starts the quantlab binary with `args` (split on spaces; no shell), stdout and stderr to `log`.
pid_t spawn(const std::string& args, const std::string& log);
// Starts `program` with `args`, the extra environment `env` and without the variables `unset`,
// stdout and stderr to `log`.
pid_t spawn_program(const std::string& program, const std::vector<std::string>& args,
                    const std::vector<std::pair<std::string, std::string>>& env, const std::string& log,
                    const std::vector<std::string>& unset = {});
// Waits for `pid`; its exit code, or 128 + the signal that ended it (util/process.h's exit_code).
int wait_exit(pid_t pid);
// Runs the quantlab binary to its end; returns the exit code, `output` gets stdout + stderr.
int run_cli(const std::string& args, std::string& output);
std::string slurp(const std::string& file);
// A TCP port of the loopback interface that was free a moment ago (for a test's master port).
int free_port();

// The Python with torch the tests compare with (CMake's QL_PYTHON: Debian's python3 with its
// PyTorch 1.13 for the Debian build, the build's venv with PyPI's PyTorch 2.x for TORCH=pip).
const std::string& torch_python();
// Whether torch_python() exists and imports torch.
bool python_torch_available();
// The reason to give when python_torch_available() is false.
std::string python_torch_missing();
// Runs `script` with torch_python() and `arg` (one argument, passed as is); returns its exit
// status and sets `output` to what it printed (stdout and stderr).
int run_python(const std::string& script, const std::string& arg, std::string& output);
// The Python with TensorBoard, ONNX and ONNX Runtime (CMake's QL_TOOLS_PYTHON: the build's venv),
// whether it imports `module`, the reason to give when not, and a script run with it.
const std::string& tools_python();
bool tools_python_has(const std::string& module);
std::string tools_python_missing(const std::string& module);
int run_tools_python(const std::string& script, const std::string& arg, std::string& output);
// Runs the script file `file` with `python` and `args`; exit status, and what it printed.
int run_script_file(const std::string& python, const std::string& file, const std::vector<std::string>& args,
                    std::string& output);

// A smooth colour test picture: uint8 [h, w, 3], different for every `seed`.
torch::Tensor test_picture(int64_t h, int64_t w, int64_t seed);
// Writes `rgb` (uint8 [h, w, 3]) as a JPEG: colour, or converted to "gray" or inverted "cmyk"
// (c' = R, m' = G, y' = B, k' = 255, so a correct CMYK decoder gives the picture back).
void write_jpeg(const std::string& file, const torch::Tensor& rgb, const std::string& kind = "rgb", int quality = 95);
void write_png(const std::string& file, const torch::Tensor& rgb);
// A PNG of `height` equal rows (`row`: the raw bytes of one, big-endian for 16 bits) with no gAMA,
// sRGB or other colour chunk: libpng's own writer, any bit depth and colour type (PNG_COLOR_TYPE_*).
void write_png_raw(const std::string& file, int width, int height, int bit_depth, int color_type,
                   const std::vector<uint8_t>& row);
// An image-folder tree <dir>/<class>/<k>.JPEG: `per_class` pictures of assorted sizes per class.
void write_image_tree(const std::string& dir, const std::vector<std::string>& classes, int per_class);

}  // namespace quantlab::testing
