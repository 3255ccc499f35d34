// Progress of a long phase (training, validation, test, loading) on a stream.
// On a terminal: one line redrawn in place. Otherwise (CI, nohup, a pipe): a plain line at most
// every `interval_s` seconds, so logs stay line-based and bounded.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>

namespace quantlab {

// One line on `out` in one piece (one write on an unbuffered stream such as std::cerr): processes
// that share a stream, as the ranks of a data-parallel run share the launcher's stderr, do not
// interleave their lines, which a line written with several << (each its own write) would.
void write_line(std::ostream& out, const std::string& line);

class Progress {
 public:
  explicit Progress(std::ostream& out, bool interactive, double interval_s = 5.0);
  // A Progress on stdout, interactive when stdout is a terminal.
  static Progress on_stdout();

  void begin(const std::string& label, int64_t total);
  // `done` of `total` steps finished; `stats` is appended (e.g. "loss 0.12 acc 95.1%").
  void update(int64_t done, const std::string& stats);
  // The same, with the stats computed only when a line is written (they may cost a device sync).
  void update(int64_t done, const std::function<std::string()>& stats);
  // Ends the phase with a summary line.
  void end(const std::string& summary);

  static std::string format_duration(double seconds);

 private:
  using Clock = std::chrono::steady_clock;
  std::string line(int64_t done, const std::string& stats) const;
  std::ostream& out_;
  bool interactive_;
  double interval_s_;
  std::string label_;
  int64_t total_ = 0;
  Clock::time_point start_, last_;
  size_t last_width_ = 0;
};

}  // namespace quantlab
