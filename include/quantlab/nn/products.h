// The layers' products: a convolution of any rank in float32 (conv_nd), and --amp's products on
// bfloat16 operands (Network::set_mixed_precision): a matrix product or a convolution of operands
// rounded to bfloat16, summed in float32, its result rounded to bfloat16. On a GPU and on a CPU
// with AMX-BF16 or AVX512-BF16 libtorch computes them on bfloat16 units. On other CPUs libtorch's
// own bfloat16 products were 10-85x slower than float32 ones where measured (an AMD EPYC with
// AVX2; 1.13's also summed in lower precision; docs/PERFORMANCE.md): there QuantLab rounds the
// operands to bfloat16 and multiplies them as float32 ("emulated"): the same numbers up to the
// order of the sums, and the same rounding of the gradients (the incoming gradient and the
// operands' gradients rounded to bfloat16, as native products round them), at about float32's
// speed and memory (the products keep float32 operands for the backward pass).
#pragma once

#include <torch/torch.h>

namespace quantlab::nn {

// A product's operand in bfloat16; an undefined tensor (no bias) stays undefined.
torch::Tensor bf16_operand(const torch::Tensor& t);

// How bfloat16 products run on the CPU: kAuto (emulated where the CPU has no bfloat16 units, the
// default; QL_BF16_PRODUCTS=native or =emulated sets another for A/B runs), kNative (libtorch's
// own), kEmulated (always float32 products of rounded operands). GPUs always run them natively.
enum class Bf16Products { kAuto, kNative, kEmulated };
void set_bf16_products(Bf16Products mode);
Bf16Products bf16_products();
// Whether a product with this operand runs emulated.
bool bf16_products_emulated(const torch::Tensor& x);

// A convolution of dim 1, 2 or 3 (torch::conv1d / 2d / 3d).
torch::Tensor conv_nd(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int dim,
                      torch::IntArrayRef stride, torch::IntArrayRef padding, torch::IntArrayRef dilation,
                      int64_t groups);

// The bfloat16 products: bfloat16 results, whatever the operands' types.
torch::Tensor bf16_linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
torch::Tensor bf16_conv(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, int dim,
                        torch::IntArrayRef stride, torch::IntArrayRef padding, torch::IntArrayRef dilation,
                        int64_t groups);

}  // namespace quantlab::nn
