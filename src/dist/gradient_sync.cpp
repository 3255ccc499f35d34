// GradientSync: bucketed all-reduce overlapped with the backward pass.
#include "quantlab/dist/gradient_sync.h"

#include <chrono>
#include <map>

namespace quantlab::dist {
namespace {

// Tensors broadcast from rank 0 in one collective per dtype.
void broadcast_all(std::vector<torch::Tensor> tensors, Communicator& comm) {
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_type;
  for (auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  torch::NoGradGuard no_grad;
  for (auto& [type, group] : by_type) {
    std::vector<torch::Tensor> flat_parts;
    for (auto& t : group) flat_parts.push_back(t.reshape(-1));
    torch::Tensor flat = torch::cat(flat_parts);
    comm.broadcast(flat, 0);
    int64_t at = 0;
    for (auto& t : group) {
      t.copy_(flat.narrow(0, at, t.numel()).view_as(t));
      at += t.numel();
    }
  }
}

}  // namespace

GradientSync::GradientSync(torch::nn::Module& net, Communicator& comm, size_t bucket_bytes, size_t first_bucket_bytes)
    : comm_(comm) {
  for (auto& p : net.parameters())
    if (p.requires_grad()) params_.push_back(p);
  // Buckets in reverse parameter order: about the order in which the backward pass produces them.
  where_.resize(params_.size());
  size_t cap = first_bucket_bytes;
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    const size_t bytes = static_cast<size_t>(p.numel()) * p.element_size();
    if (buckets_.empty()) buckets_.emplace_back();
    Bucket* b = &buckets_.back();
    int64_t used = b->offsets.empty() ? 0 : b->offsets.back() + params_[b->params.back()].numel();
    const bool same_type = b->params.empty() || params_[b->params.back()].scalar_type() == p.scalar_type();
    if (!b->params.empty() && (static_cast<size_t>(used) * p.element_size() + bytes > cap || !same_type)) {
      buckets_.emplace_back();
      b = &buckets_.back();
      used = 0;
      cap = bucket_bytes;
    }
    where_[k] = {buckets_.size() - 1, b->params.size()};
    b->params.push_back(k);
    b->offsets.push_back(used);
    bytes_ += bytes;
  }
  for (auto& b : buckets_) {
    const torch::Tensor& last = params_[b.params.back()];
    b.flat = torch::zeros({b.offsets.back() + last.numel()}, last.options().requires_grad(false));
    have_.emplace_back(b.params.size(), false);
  }
  for (size_t k = 0; k < params_.size(); ++k)
    hooks_.push_back(params_[k].register_hook([this, k](const torch::Tensor& grad) {
      if (active_) on_gradient(k, grad);
    }));
}

GradientSync::~GradientSync() {
  for (size_t k = 0; k < params_.size(); ++k) params_[k].remove_hook(hooks_[k]);
}

void GradientSync::begin_step() {
  for (auto& b : buckets_) {
    b.ready = 0;
    b.work.reset();
  }
  for (auto& h : have_) std::fill(h.begin(), h.end(), false);
  next_launch_ = 0;
  active_ = true;
}

void GradientSync::on_gradient(size_t k, const torch::Tensor& grad) {
  const auto [bi, slot] = where_[k];
  Bucket& b = buckets_[bi];
  torch::NoGradGuard no_grad;
  b.flat.narrow(0, b.offsets[slot], grad.numel()).copy_(grad.reshape(-1));
  if (!have_[bi][slot]) {
    have_[bi][slot] = true;
    ++b.ready;
  }
  launch_ready();
}

void GradientSync::launch_ready() {
  // Strictly in bucket order, the same on every rank.
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].ready == buckets_[next_launch_].params.size()) {
    Bucket& b = buckets_[next_launch_++];
    b.work = comm_.all_reduce_sum(b.flat);
  }
}

void GradientSync::finish_step() {
  active_ = false;
  torch::NoGradGuard no_grad;
  // Gradients that never arrived (no samples on this rank this step, or an unused parameter) are 0.
  for (size_t bi = 0; bi < buckets_.size(); ++bi) {
    Bucket& b = buckets_[bi];
    for (size_t s = 0; s < b.params.size(); ++s)
      if (!have_[bi][s]) {
        b.flat.narrow(0, b.offsets[s], params_[b.params[s]].numel()).zero_();
        have_[bi][s] = true;
        ++b.ready;
      }
  }
  launch_ready();
  const auto t0 = std::chrono::steady_clock::now();
  for (auto& b : buckets_) b.work->wait();
  wait_s_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double world = static_cast<double>(comm_.world_size());
  for (auto& b : buckets_) {
    b.flat.div_(world);
    for (size_t s = 0; s < b.params.size(); ++s) {
      torch::Tensor& p = params_[b.params[s]];
      const auto mean = b.flat.narrow(0, b.offsets[s], p.numel()).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(mean);
      else
        p.mutable_grad() = mean.clone();
    }
  }
}

void broadcast_state(torch::nn::Module& net, Communicator& comm) {
  std::vector<torch::Tensor> all;
  for (auto& p : net.parameters()) all.push_back(p);
  for (auto& b : net.buffers()) all.push_back(b);
  broadcast_all(all, comm);
}

void broadcast_buffers(torch::nn::Module& net, Communicator& comm) {
  const auto buffers = net.buffers();
  if (!buffers.empty()) broadcast_all(buffers, comm);
}

}  // namespace quantlab::dist
