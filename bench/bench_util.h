// Helpers shared by the benchmark programs.
#pragma once

#include <algorithm>
#include <fstream>
#include <string>
#include <vector>

namespace quantlab::bench {

// Peak resident memory of this process (VmHWM), in KiB; -1 when unknown.
inline long peak_rss_kib() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace quantlab::bench
