// A single process, and data parallelism over c10d ranks.
#include "quantlab/dist/parallelism.h"

#include <cstring>

#include "quantlab/data/split.h"
#include "quantlab/dist/communicator.h"
#include "quantlab/dist/gradient_sync.h"

namespace quantlab::dist {
namespace {

class DataParallel : public Parallelism {
 public:
  DataParallel(Communicator& comm, torch::nn::Module& net) : comm_(comm), net_(net) {}

  bool distributed() const override { return true; }

  Agreement agree(int stop, bool diverged) override {
    torch::Tensor flags = torch::tensor({static_cast<float>(stop), diverged ? 1.0f : 0.0f});
    comm_.all_reduce_sum(flags)->wait();
    const int any = static_cast<int>(flags[0].item<float>());
    return {any == 0 ? 0 : (stop != 0 ? stop : 2 /* SIGINT, raised at another rank */), flags[1].item<float>() > 0};
  }

  void sum(double* values, size_t n) override {
    torch::Tensor t = torch::from_blob(values, {static_cast<int64_t>(n)}, torch::kFloat64).clone();
    comm_.all_reduce_sum(t)->wait();
    std::memcpy(values, t.data_ptr<double>(), n * sizeof(double));
  }

  std::vector<int64_t> train_share(const std::vector<int64_t>& order, int64_t batch) override {
    return data::rank_shard(order, batch, comm_.world_size(), comm_.rank());
  }
  int64_t train_batch(int64_t batch) const override { return batch / comm_.world_size(); }
  std::vector<int64_t> train_positions(int64_t n, int64_t batch) const override {
    return data::rank_shard_positions(n, batch, comm_.world_size(), comm_.rank());
  }
  std::vector<int64_t> eval_share(const std::vector<int64_t>& indices) override {
    return data::rank_slice(indices, comm_.world_size(), comm_.rank());
  }

  void begin_evaluation() override { broadcast_buffers(net_, comm_); }

  void begin_step() override {
    broadcast_buffers(net_, comm_);  // rank 0's running statistics, as DDP
    if (!sync_) sync_ = std::make_unique<GradientSync>(net_, comm_);
    sync_->begin_step();
  }
  void finish_step() override { sync_->finish_step(); }

  double loss_weight(int64_t n, int64_t global, bool summed) const override {
    return summed ? comm_.world_size() : static_cast<double>(comm_.world_size() * n) / static_cast<double>(global);
  }

 private:
  Communicator& comm_;
  torch::nn::Module& net_;
  std::unique_ptr<GradientSync> sync_;
};

}  // namespace

std::unique_ptr<Parallelism> single_process() { return std::make_unique<Parallelism>(); }

std::unique_ptr<Parallelism> data_parallel(Communicator& comm, torch::nn::Module& net) {
  return std::make_unique<DataParallel>(comm, net);
}

}  // namespace quantlab::dist
