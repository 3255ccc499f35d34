// TensorBoard event files, as PyTorch's SummaryWriter writes them: TFRecord framing (length,
// masked CRC-32C of the length, data, masked CRC-32C of the data) around Event protocol buffers.
//   EventWriter w(dir);  w.add_scalar("train_loss", 0.3, 1);  w.flush();
// The file is events.out.tfevents.<seconds>.<host>.<pid>.<n> in `dir`; its first record is the
// file version "brain.Event:2". Everything is flushed by flush() and at destruction.
#pragma once

#include <nlohmann/json.hpp>

#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace quantlab::log {

// CRC-32C (Castagnoli) of `n` bytes, and TFRecord's masking of it.
uint32_t crc32c(const void* data, size_t n);
uint32_t masked_crc32c(const void* data, size_t n);

class EventWriter {
 public:
  explicit EventWriter(const std::string& dir);
  ~EventWriter();
  EventWriter(const EventWriter&) = delete;
  EventWriter& operator=(const EventWriter&) = delete;

  void add_scalar(const std::string& tag, double value, int64_t step);
  // Histogram of the values of `values` (any shape) in `bins` equal buckets between min and max.
  void add_histogram(const std::string& tag, const torch::Tensor& values, int64_t step, int bins = 64);
  // A text summary, shown by TensorBoard's text dashboard (tag gets "/text_summary" as PyTorch's).
  void add_text(const std::string& tag, const std::string& text, int64_t step);
  // Tells TensorBoard that the run restarted at `step`: it discards events of later steps written
  // before, so a resumed run shows one curve.
  void add_session_start(int64_t step);
  // TensorBoard's HParams dashboard: this run is a session with these hyperparameters (numbers,
  // strings and booleans; anything else as its JSON text); its metrics are its scalars. Written
  // once per run (TensorBoard keeps the first of each), the end once, at the end.
  void add_hparams_session_start(const std::vector<std::pair<std::string, nlohmann::json>>& hparams);
  void add_hparams_session_end(bool success);
  void flush();

  const std::string& file() const { return file_; }

 private:
  void write_record(const std::string& bytes);
  std::string file_;
  std::FILE* out_ = nullptr;
};

}  // namespace quantlab::log
