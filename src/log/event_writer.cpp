// EventWriter: TFRecord framing and the Event messages.
#include "quantlab/log/event_writer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>

#include "quantlab/util/error.h"
#include "tensorboard.pb.h"

namespace quantlab::log {
namespace {

// Table of the reflected CRC-32C polynomial 0x82F63B78.
struct Crc32cTable {
  uint32_t t[256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
      t[i] = c;
    }
  }
};

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

tb::Event make_event(int64_t step) {
  tb::Event e;
  e.set_wall_time(now_seconds());
  e.set_step(step);
  return e;
}

}  // namespace

uint32_t crc32c(const void* data, size_t n) {
  static const Crc32cTable table;
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table.t[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t n) {
  const uint32_t c = crc32c(data, n);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

EventWriter::EventWriter(const std::string& dir) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  static int counter = 0;
  file_ = dir + "/events.out.tfevents." + std::to_string(static_cast<int64_t>(now_seconds())) + "." + host + "." +
          std::to_string(getpid()) + "." + std::to_string(counter++);
  out_ = std::fopen(file_.c_str(), "wb");
  if (!out_) throw IoError(file_ + ": cannot create the event file");
  tb::Event e = make_event(0);
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
  flush();
}

EventWriter::~EventWriter() {
  if (out_) std::fclose(out_);
}

void EventWriter::write_record(const std::string& bytes) {
  const uint64_t len = bytes.size();
  unsigned char header[12];
  for (int i = 0; i < 8; ++i) header[i] = static_cast<unsigned char>(len >> (8 * i));  // little endian
  const uint32_t len_crc = masked_crc32c(header, 8);
  for (int i = 0; i < 4; ++i) header[8 + i] = static_cast<unsigned char>(len_crc >> (8 * i));
  const uint32_t data_crc = masked_crc32c(bytes.data(), bytes.size());
  unsigned char footer[4];
  for (int i = 0; i < 4; ++i) footer[i] = static_cast<unsigned char>(data_crc >> (8 * i));
  if (std::fwrite(header, 1, 12, out_) != 12 || std::fwrite(bytes.data(), 1, bytes.size(), out_) != bytes.size() ||
      std::fwrite(footer, 1, 4, out_) != 4)
    throw IoError(file_ + ": cannot write (disk full?)");
}

void EventWriter::flush() {
  if (std::fflush(out_) != 0) throw IoError(file_ + ": cannot write (disk full?)");
}

void EventWriter::add_scalar(const std::string& tag, double value, int64_t step) {
  tb::Event e = make_event(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->set_simple_value(static_cast<float>(value));
  write_record(e.SerializeAsString());
}

void EventWriter::add_histogram(const std::string& tag, const torch::Tensor& values, int64_t step, int bins) {
  const auto x = values.detach().to(torch::kCPU, torch::kFloat64).flatten();
  if (x.numel() == 0) return;
  tb::Event e = make_event(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  auto* h = v->mutable_histo();
  const double lo = x.min().item<double>(), hi = x.max().item<double>();
  h->set_min(lo);
  h->set_max(hi);
  h->set_num(static_cast<double>(x.numel()));
  h->set_sum(x.sum().item<double>());
  h->set_sum_squares(x.pow(2).sum().item<double>());
  if (hi > lo) {
    const auto counts = torch::histc(x, bins, lo, hi);  // last bucket includes hi
    const auto c = counts.contiguous();
    for (int b = 0; b < bins; ++b) {
      h->add_bucket_limit(b + 1 == bins ? hi : lo + (hi - lo) * (b + 1) / bins);
      h->add_bucket(c[b].item<double>());
    }
  } else {
    h->add_bucket_limit(hi);
    h->add_bucket(static_cast<double>(x.numel()));
  }
  write_record(e.SerializeAsString());
}

void EventWriter::add_text(const std::string& tag, const std::string& text, int64_t step) {
  tb::Event e = make_event(step);
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag + "/text_summary");
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("text");
  auto* t = v->mutable_tensor();
  t->set_dtype(tb::DT_STRING);
  t->mutable_tensor_shape()->add_dim()->set_size(1);
  t->add_string_val(text);
  write_record(e.SerializeAsString());
}

namespace {

// A summary of the HParams plugin: its data as the metadata's content, an empty float tensor as
// the value (what TensorBoard's own writer puts there).
void write_hparams(tb::Event& e, const std::string& tag, const tb::HParamsPluginData& data) {
  auto* v = e.mutable_summary()->add_value();
  v->set_tag(tag);
  v->mutable_metadata()->mutable_plugin_data()->set_plugin_name("hparams");
  v->mutable_metadata()->mutable_plugin_data()->set_content(data.SerializeAsString());
  auto* t = v->mutable_tensor();
  t->set_dtype(tb::DT_FLOAT);
  t->mutable_tensor_shape()->add_dim()->set_size(0);
}

}  // namespace

void EventWriter::add_hparams_session_start(const std::vector<std::pair<std::string, nlohmann::json>>& hparams) {
  tb::HParamsPluginData data;
  data.set_version(0);
  auto* start = data.mutable_session_start_info();
  start->set_start_time_secs(now_seconds());
  for (const auto& [name, value] : hparams) {
    tb::HParamValue v;
    if (value.is_number())
      v.set_number_value(value.get<double>());
    else if (value.is_boolean())
      v.set_bool_value(value.get<bool>());
    else if (value.is_string())
      v.set_string_value(value.get<std::string>());
    else
      v.set_string_value(value.dump());
    (*start->mutable_hparams())[name] = v;
  }
  tb::Event e = make_event(0);
  write_hparams(e, "_hparams_/session_start_info", data);
  write_record(e.SerializeAsString());
}

void EventWriter::add_hparams_session_end(bool success) {
  tb::HParamsPluginData data;
  data.set_version(0);
  data.mutable_session_end_info()->set_status(success ? 1 : 2);
  data.mutable_session_end_info()->set_end_time_secs(now_seconds());
  tb::Event e = make_event(0);
  write_hparams(e, "_hparams_/session_end_info", data);
  write_record(e.SerializeAsString());
}

void EventWriter::add_session_start(int64_t step) {
  tb::Event e = make_event(step);
  e.mutable_session_log()->set_status(tb::SessionLog::START);
  write_record(e.SerializeAsString());
}

}  // namespace quantlab::log
