// Batch normalisation (training mode) fused with the ANA operator that follows it, on raw buffers
// of float32 or bfloat16 values: the batch norm's output is never written out, and a bfloat16
// input or output is converted inside the loops (all arithmetic is float32, the annealing's
// included). The tensor is a [rows x channels] matrix with the channels innermost: a channels-last
// feature map [N, H, W, C] (rows = N H W) or a batch of features [N, C]. Free of libtorch, like
// ana_kernel.h, and compiled with the same flags.
#pragma once

#include <cstdint>

#include "quantlab/core/ana_kernel.h"

namespace quantlab::core::kernel {

struct Matrix {
  int64_t rows = 0, channels = 0;
};

// mean[c] and var[c] (biased, divided by rows) of x over its rows, in one pass over x (sums of the
// differences from the first row, in float over a few rows and in double beyond).
void bn_stats(const void* x, Dtype xt, Matrix m, float* mean, float* var, int num_threads);

// y = ANA(x * scale[c] + shift[c]) with scale = gamma / sqrt(var + eps), shift = beta - mean scale.
// As ana_forward: sigma == 0 is the hard stair, `uniform` (rows x channels) only for kRandom.
void bn_ana_forward(const void* x, Dtype xt, void* y, Dtype yt, Matrix m, const float* scale, const float* shift,
                    const Stair& stair, NoiseFamily family, ForwardStrategy strategy, float mu, float sigma,
                    const float* uniform, int num_threads);

// The gradients of the fused operator: with z = x scale + shift, gz = gy ANA'(z) (backward spread
// sigma), xhat = (x - mean) invstd, grad_beta[c] = sum gz, grad_gamma[c] = sum gz xhat and
// gx = gamma invstd (gz - grad_beta / rows - xhat grad_gamma / rows) (the batch norm's
// training-mode backward). Two passes over x and gy; gz is recomputed, never stored.
void bn_ana_backward(const void* x, Dtype xt, const void* gy, Dtype gyt, void* gx, Dtype gxt, Matrix m,
                     const float* mean, const float* invstd, const float* gamma, const float* beta, const Stair& stair,
                     NoiseFamily family, float mu, float sigma, float* grad_gamma, float* grad_beta, int num_threads);

}  // namespace quantlab::core::kernel
