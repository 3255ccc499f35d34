// CpuFeatures: the flags of /proc/cpuinfo that matter to bfloat16 and int8 products.
#include "quantlab/util/cpu_features.h"

#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include "quantlab/util/strings.h"

namespace quantlab {

std::string CpuFeatures::bf16_summary() const {
  std::vector<std::string> present;
  if (amx_bf16) present.push_back("AMX-BF16");
  if (avx512_bf16) present.push_back("AVX512-BF16");
  if (avx512_vnni) present.push_back("AVX512-VNNI");
  return present.empty() ? "none of AMX-BF16, AVX512-BF16, AVX512-VNNI" : join(present);
}

CpuFeatures cpu_features_from_cpuinfo(const std::string& cpuinfo) {
  CpuFeatures f;
  std::istringstream in(cpuinfo);
  std::string line;
  bool have_flags = false;
  while (std::getline(in, line)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    while (!key.empty() && (key.back() == ' ' || key.back() == '\t')) key.pop_back();
    std::string value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (key == "model name" && f.model.empty()) f.model = value;
    if (key == "flags" && !have_flags) {
      have_flags = true;
      std::set<std::string> flags;
      std::istringstream words(value);
      for (std::string w; words >> w;) flags.insert(w);
      f.avx2 = flags.count("avx2") > 0;
      f.avx512f = flags.count("avx512f") > 0;
      f.avx512_bf16 = flags.count("avx512_bf16") > 0;
      f.amx_bf16 = flags.count("amx_bf16") > 0 && flags.count("amx_tile") > 0;
      f.avx512_vnni = flags.count("avx512_vnni") > 0;
    }
  }
  return f;
}

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    std::ifstream in("/proc/cpuinfo");
    std::ostringstream text;
    if (in) text << in.rdbuf();
    return cpu_features_from_cpuinfo(text.str());
  }();
  return f;
}

std::string cpu_amp_note(const CpuFeatures& f) {
  if (f.has_bf16_products()) return "";
  return "--amp on a CPU without AMX-BF16 or AVX512-BF16" + (f.model.empty() ? std::string() : " (" + f.model + ")") +
         ": its products take bfloat16-rounded operands but are computed as float32 ones (libtorch's own can be "
         "10-85x slower on such CPUs): bfloat16's rounding at about float32's speed, to check a network's accuracy "
         "under --amp, not for speed (docs/PERFORMANCE.md)";
}

}  // namespace quantlab
