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

  Agreement agree(int stop, int64_t diverged_step) override {
    // [any stop, each rank's first non-finite step in its own slot]: one sum gives every rank's.
    const int world = comm_.world_size();
    torch::Tensor flags = torch::zeros({1 + world}, torch::kFloat64);
    auto f = flags.accessor<double, 1>();
    f[0] = stop;
    f[1 + comm_.rank()] = static_cast<double>(diverged_step);
    comm_.all_reduce_sum(flags)->wait();
    f = flags.accessor<double, 1>();
    Agreement a;
    a.stop = f[0] == 0 ? 0 : (stop != 0 ? stop : 2 /* SIGINT, raised at another rank */);
    for (int r = 0; r < world; ++r) {
      const auto step = static_cast<int64_t>(f[1 + r]);
      if (step > 0 && (a.diverged_step == 0 || step < a.diverged_step)) a.diverged_step = step;
    }
    return a;
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
