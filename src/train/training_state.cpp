// Statistics of a pass in words.
#include "quantlab/train/training_state.h"

#include <cstdio>

namespace quantlab::train {
namespace {

std::string percent(double error) {
  if (std::isnan(error)) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", 100.0 - error);
  return buf;
}

}  // namespace

std::string stats_text(const EpochStats& s) {
  if (s.samples == 0) return "no samples";
  char buf[64];
  std::snprintf(buf, sizeof buf, "loss %.4f acc ", s.loss);
  std::string out = buf + percent(s.metric);
  if (!std::isnan(s.top5)) out += " top5 " + percent(s.top5);
  return out;
}

}  // namespace quantlab::train
