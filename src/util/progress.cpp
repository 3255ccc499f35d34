// Progress lines with elapsed time and ETA.
#include "quantlab/util/progress.h"

#include <unistd.h>

#include <cstdio>
#include <iostream>

namespace quantlab {

Progress::Progress(std::ostream& out, bool interactive, double interval_s)
    : out_(out), interactive_(interactive), interval_s_(interval_s) {}

Progress Progress::on_stdout() { return Progress(std::cout, isatty(STDOUT_FILENO) != 0); }

std::string Progress::format_duration(double s) {
  const auto total = static_cast<long>(s + 0.5);
  char buf[32];
  if (total >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
  else
    std::snprintf(buf, sizeof buf, "%02ld:%02ld", total / 60, total % 60);
  return buf;
}

void Progress::begin(const std::string& label, int64_t total) {
  label_ = label;
  total_ = total;
  start_ = last_ = Clock::now();
  last_width_ = 0;
}

std::string Progress::line(int64_t done, const std::string& stats) const {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  const double eta = done > 0 ? elapsed * static_cast<double>(total_ - done) / static_cast<double>(done) : 0.0;
  std::string s = label_ + " " + std::to_string(done) + "/" + std::to_string(total_) + " | " +
                  format_duration(elapsed) + " elapsed, ETA " + format_duration(eta);
  if (!stats.empty()) s += " | " + stats;
  return s;
}

void Progress::update(int64_t done, const std::string& stats) {
  update(done, [&stats] { return stats; });
}

void Progress::update(int64_t done, const std::function<std::string()>& stats) {
  const auto now = Clock::now();
  const double since = std::chrono::duration<double>(now - last_).count();
  if (since < (interactive_ ? 0.1 : interval_s_) && done < total_) return;
  if (!interactive_ && done >= total_) return;  // the summary line follows
  last_ = now;
  const std::string s = line(done, stats());
  if (interactive_) {
    out_ << '\r' << s;
    if (s.size() < last_width_) out_ << std::string(last_width_ - s.size(), ' ');
    last_width_ = s.size();
  } else {
    out_ << s << '\n';
  }
  out_.flush();
}

void Progress::end(const std::string& summary) {
  const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
  std::string s = label_ + " done in " + format_duration(elapsed);
  if (!summary.empty()) s += " | " + summary;
  if (interactive_) {
    out_ << '\r' << s;
    if (s.size() < last_width_) out_ << std::string(last_width_ - s.size(), ' ');
  } else
    out_ << s;
  out_ << '\n';
  out_.flush();
  last_width_ = 0;
}

void write_line(std::ostream& out, const std::string& line) { out << line + "\n" << std::flush; }

}  // namespace quantlab
