// The memory layout convolutional networks compute in, a process-wide setting.
#pragma once

#include <torch/torch.h>

namespace quantlab::topology {

// The layout convolutional topologies compute in: channels-last on the CPU, where oneDNN's
// convolutions run 7-20 % faster in it (docs/PERFORMANCE.md); the ANA operator, batch norm and
// pooling keep it (also from inputs of one channel, whose strides alone would say channels-first). On CUDA:
// channels-last after set_cuda_channels_last(true) (--channels_last, docs/GPU.md), else as given.
torch::Tensor conv_layout(const torch::Tensor& x);
void set_cuda_channels_last(bool on);

}  // namespace quantlab::topology
