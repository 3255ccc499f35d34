// The memory layout convolutional networks compute in.
#include "quantlab/topology/layout.h"

#include <atomic>

namespace quantlab::topology {

namespace {
std::atomic<bool> cuda_channels_last{false};
}  // namespace

void set_cuda_channels_last(bool on) { cuda_channels_last = on; }

torch::Tensor conv_layout(const torch::Tensor& x) {
  const bool last = x.device().is_cpu() || (x.device().is_cuda() && cuda_channels_last);
  return x.dim() == 4 && last ? x.contiguous(at::MemoryFormat::ChannelsLast) : x;
}

}  // namespace quantlab::topology
