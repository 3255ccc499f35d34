// Fused ANA kernels for CUDA: one thread per element (grid-stride), thresholds looped in registers.
// Mirrors src/core/ana_kernel.cpp line by line, with the same formulas (core/noise_math.h); tests/test_ana_operator.cpp
// compares both with the tensor-op formulation (the CUDA test runs where a GPU is present).
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "quantlab/core/ana_cuda.h"
#include "quantlab/core/noise_math.h"

namespace quantlab::core::kernel {
namespace {

using noise_math::cdf;
using noise_math::density;

struct DevStair {
  const float* t;
  const float* q;
  int T;
};

__global__ void hard_kernel(const float* x, float* y, int64_t n, DevStair s, float mu) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = x[i] - mu;
    float out = s.q[0];
    for (int k = 0; k < s.T; ++k) out += v - s.t[k] >= 0.0f ? s.q[k + 1] - s.q[k] : 0.0f;
    y[i] = out;
  }
}

template <NoiseFamily F, ForwardStrategy S>
__global__ void forward_kernel(const float* x, float* y, int64_t n, DevStair s, float mu, float inv, const float* r) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = x[i] - mu;
    if (S == ForwardStrategy::kExpectation) {
      float out = s.q[0];
      for (int k = 0; k < s.T; ++k) out += (s.q[k + 1] - s.q[k]) * cdf<F>((v - s.t[k]) * inv);
      y[i] = out;
    } else if (S == ForwardStrategy::kRandom) {
      const float u = r[i];
      float out = s.q[0];
      for (int k = 0; k < s.T; ++k) out += u < cdf<F>((v - s.t[k]) * inv) ? s.q[k + 1] - s.q[k] : 0.0f;
      y[i] = out;
    } else {  // mode: the level of the most probable bin, the first on ties (as the CPU kernel)
      float prev = 1.0f, best_p = -1.0f, out = s.q[0];
      for (int k = 0; k < s.T; ++k) {
        const float f = cdf<F>((v - s.t[k]) * inv);
        const float p = prev - f;
        if (p > best_p) {
          best_p = p;
          out = s.q[k];
        }
        prev = f;
      }
      if (prev > best_p) out = s.q[s.T];
      y[i] = out;
    }
  }
}

template <NoiseFamily F>
__global__ void backward_kernel(const float* x, const float* gy, float* gx, int64_t n, DevStair s, float mu,
                                float inv) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(blockDim.x) * gridDim.x) {
    const float v = x[i] - mu;
    float g = 0.0f;
    for (int k = 0; k < s.T; ++k) g += (s.q[k + 1] - s.q[k]) * density<F>(v - s.t[k], inv);
    gx[i] = g * gy[i];
  }
}

constexpr int kThreads = 256;
unsigned blocks_for(int64_t n) {
  const int64_t b = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 ? (b > 0 ? b : 1) : 65535);
}

void check(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(e));
}

template <NoiseFamily F>
void launch_forward(const float* x, float* y, int64_t n, DevStair s, ForwardStrategy st, float mu, float inv,
                    const float* r, cudaStream_t stream) {
  switch (st) {
    case ForwardStrategy::kExpectation:
      forward_kernel<F, ForwardStrategy::kExpectation><<<blocks_for(n), kThreads, 0, stream>>>(x, y, n, s, mu, inv, r);
      break;
    case ForwardStrategy::kMode:
      forward_kernel<F, ForwardStrategy::kMode><<<blocks_for(n), kThreads, 0, stream>>>(x, y, n, s, mu, inv, r);
      break;
    case ForwardStrategy::kRandom:
      forward_kernel<F, ForwardStrategy::kRandom><<<blocks_for(n), kThreads, 0, stream>>>(x, y, n, s, mu, inv, r);
      break;
  }
}

}  // namespace

void ana_forward_cuda(const float* x, float* y, int64_t n, const Stair& stair, NoiseFamily family,
                      ForwardStrategy strategy, float mu, float sigma, const float* uniform, void* stream_ptr) {
  if (n == 0) return;
  const DevStair s{stair.thresholds, stair.levels, stair.num_thresholds};
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (!(sigma > 0.0f)) {
    hard_kernel<<<blocks_for(n), kThreads, 0, stream>>>(x, y, n, s, mu);
  } else {
    const float inv = 1.0f / sigma;
    dispatch_noise_family(family, [&](auto fam) {
      launch_forward<decltype(fam)::value>(x, y, n, s, strategy, mu, inv, uniform, stream);
    });
  }
  check("ana_forward_cuda");
}

void ana_backward_cuda(const float* x, const float* gy, float* gx, int64_t n, const Stair& stair, NoiseFamily family,
                       float mu, float sigma, void* stream_ptr) {
  if (n == 0) return;
  const auto stream = static_cast<cudaStream_t>(stream_ptr);
  if (!(sigma > 0.0f)) {
    cudaMemsetAsync(gx, 0, static_cast<size_t>(n) * sizeof(float), stream);
    check("ana_backward_cuda");
    return;
  }
  const DevStair s{stair.thresholds, stair.levels, stair.num_thresholds};
  const float inv = 1.0f / sigma;
  dispatch_noise_family(family, [&](auto fam) {
    backward_kernel<decltype(fam)::value><<<blocks_for(n), kThreads, 0, stream>>>(x, gy, gx, n, s, mu, inv);
  });
  check("ana_backward_cuda");
}

}  // namespace quantlab::core::kernel
