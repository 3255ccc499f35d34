// What this CPU offers the products of a training step in bfloat16 (--amp on the CPU): AMX tiles
// (amx_bf16) or AVX512-BF16 instructions let oneDNN multiply bfloat16 at several times the float32
// rate; without them bfloat16 products are converted to float32 and usually run slower than
// float32 itself. Read from /proc/cpuinfo (the flags the kernel enabled), once.
#pragma once

#include <string>

namespace quantlab {

struct CpuFeatures {
  std::string model;  // "Intel(R) Xeon(R) ..." ("" when unknown)
  bool avx2 = false;
  bool avx512f = false;
  bool avx512_bf16 = false;  // VDPBF16PS & co.
  bool amx_bf16 = false;     // AMX tiles with bfloat16 products (amx_tile too)
  bool avx512_vnni = false;  // int8 dot products (the integer runtime's kernels)

  bool has_bf16_products() const { return avx512_bf16 || amx_bf16; }
  // "AMX-BF16, AVX512-BF16, AVX512-VNNI" (the ones present; "none of AMX, AVX512-BF16, VNNI").
  std::string bf16_summary() const;
};

// The features named in a /proc/cpuinfo text (its first processor's "flags" and "model name").
CpuFeatures cpu_features_from_cpuinfo(const std::string& cpuinfo);

// This machine's (empty features when /proc/cpuinfo cannot be read).
const CpuFeatures& cpu_features();

// For --amp on the CPU: "" when the CPU multiplies bfloat16 natively; otherwise a sentence saying
// that it does not and what --amp costs here.
std::string cpu_amp_note(const CpuFeatures& f);

}  // namespace quantlab
