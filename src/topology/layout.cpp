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
  if (x.dim() != 4 || !last) return x;
  const auto channels_last = at::MemoryFormat::ChannelsLast;
  if (x.suggest_memory_format(/*channels_last_strides_exact_match=*/true) == channels_last) return x;
  torch::Tensor y = x.contiguous(channels_last);
  if (y.suggest_memory_format(true) == channels_last) return y;
  // One channel (or 1x1 images): the channels-first tensor already counts as channels-last, so
  // contiguous() keeps its strides, and the convolutions after it would pick channels-first from
  // them (every layer of the network, batch norm and pooling included). The same values with
  // channels-last strides.
  return torch::empty(y.sizes(), y.options().memory_format(channels_last)).copy_(y);
}

}  // namespace quantlab::topology
