// The integer runtime's kernels: dot products of uint8 activations and int8 weights summed in
// int32 (AVX-512 VNNI: 64 products per instruction; AVX2: 16 through 16-bit multiply-adds, without
// saturation; else plain loops, picked once from what the CPU supports), the blocked layout that
// lets 8 inputs share every weight load, and im2col for convolutions. No libtorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace quantlab::runtime::kernels {

// sum_i a[i] * b[i].
int32_t dot_u8(const uint8_t* a, const int8_t* b, int64_t n);
// Four such products with one weight row, n a multiple of kRowAlign (rows padded with zero
// weights): the weights are loaded once for the four inputs.
void dot4_u8(const uint8_t* const* x, const int8_t* w, int64_t n, int32_t* out);
double dot_f(const double* a, const int8_t* b, int64_t n);
double dot_f(const double* a, const float* b, int64_t n);  // a float layer's weights

constexpr int64_t kRowAlign = 64;  // weight rows for dot4_u8 are padded to this many bytes
int64_t padded_row(int64_t n);

// Whether the CPU has AVX-512 VNNI, on which blocked_products is fast.
bool have_vnni();

// The blocked layout [out/16][row/4][16][4] (zero-padded): one VNNI instruction multiplies 4
// inputs of one vector by the 4 matching weights of 16 outputs, and outputs stay in the lanes.
constexpr int64_t kLanes = 16, kImages = 8;
std::vector<int8_t> block_weights(const int8_t* w, int64_t out, int64_t row);
// y[b][o] = sum_i x[b][i] * w[o][i] for kImages inputs x[b] of in4 * 4 bytes (the padding against
// zero weights), into out16 * kLanes accumulators each.
// On a VNNI CPU with AVX-512 instructions, else through the reference.
void blocked_products(const int8_t* blocked, int64_t in4, int64_t out16, const uint8_t* const* x, int32_t* const* y);
// The same in plain loops: what the fast version is tested against.
void blocked_products_reference(const int8_t* blocked, int64_t in4, int64_t out16, const uint8_t* const* x,
                                int32_t* const* y);

// Patches of a C x H x W input for a k x k kernel: one row of C/g * k * k values per output
// position and group (rows `row_stride` apart, at least that long), `fill` for the padding, and
// `extra_rows` rows of `fill` at the end.
template <typename T>
void im2col(const T* x, int64_t c, int64_t h, int64_t w, int64_t k, int64_t stride, int64_t pad, int64_t g, int64_t oh,
            int64_t ow, T fill, std::vector<T>& cols, int64_t row_stride = 0, int64_t extra_rows = 0) {
  const int64_t cg = c / g, row = row_stride > 0 ? row_stride : cg * k * k;
  cols.assign(static_cast<size_t>((g * oh * ow + extra_rows) * row), fill);
  for (int64_t gi = 0; gi < g; ++gi)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        T* dst = cols.data() + ((gi * oh + oy) * ow + ox) * row;
        const int64_t x0 = ox * stride - pad;
        const bool inside = x0 >= 0 && x0 + k <= w;  // no padding columns: copy k values as they are
        for (int64_t ci = 0; ci < cg; ++ci)
          for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t y = oy * stride - pad + ky;
            if (y < 0 || y >= h) continue;
            const T* line = x + ((gi * cg + ci) * h + y) * w;
            T* d = dst + (ci * k + ky) * k;
            if (inside) {
              for (int64_t kx = 0; kx < k; ++kx) d[kx] = line[x0 + kx];
            } else {
              for (int64_t kx = 0; kx < k; ++kx)
                if (x0 + kx >= 0 && x0 + kx < w) d[kx] = line[x0 + kx];
            }
          }
      }
}

}  // namespace quantlab::runtime::kernels
