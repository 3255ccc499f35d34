// Batches of an in-memory image set.
#include "quantlab/data/tensor_dataset.h"

namespace quantlab::data {

Batch TensorDataset::make_batch(const int64_t* indices, int64_t count, int64_t first, const SampleContext& ctx) const {
  auto idx = torch::from_blob(const_cast<int64_t*>(indices), {count}, torch::kLong);
  Batch b;
  auto x = set_.images.index_select(0, idx);
  if (x.dim() == 3) x = x.unsqueeze(1);
  b.inputs = x.to(torch::kFloat32).div_(255.0f);
  if (pre_.pad > 0) b.inputs = torch::constant_pad_nd(b.inputs, {pre_.pad, pre_.pad, pre_.pad, pre_.pad}, 0.0);
  const Augment augment{ctx.train && pre_.augment, 4, true, ctx.seed, ctx.epoch};
  augment_batch(b.inputs, augment, first);
  if (!pre_.mean.empty()) {
    const auto c = static_cast<int64_t>(pre_.mean.size());
    b.inputs.sub_(torch::tensor(pre_.mean).view({1, c, 1, 1})).div_(torch::tensor(pre_.std).view({1, c, 1, 1}));
  }
  b.labels = set_.labels.index_select(0, idx);
  return b;
}

}  // namespace quantlab::data
