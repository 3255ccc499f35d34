// The collectives a data-parallel run needs, on PyTorch's c10d: a TCPStore at the master (rank 0
// hosts it) for the rendezvous and small messages, and a process group for the tensors — Gloo on
// CPUs, NCCL on GPUs where libtorch has it. No networking of QuantLab's own.
// Every collective waits at most `timeout` (default 60 s): a rank that died or hangs stops the
// others with an Error that names it when it can be told (same machine: by its PID).
#pragma once

#include <torch/torch.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/csrc/distributed/c10d/Store.hpp>

#include "quantlab/dist/environment.h"

namespace quantlab::dist {

class Communicator {
 public:
  // Connects to the master and forms the group once every rank has arrived. `start_timeout` (0:
  // `timeout`) bounds the start-up, which ranks reach at different times (data listed on a network
  // file system), and every wait on the store (what rank 0 decides, its checkpoints); `timeout`
  // bounds each collective. Throws Error naming the address when the master's port is in use or the
  // master cannot be reached, or naming how many ranks arrived.
  static std::unique_ptr<Communicator> connect(const Environment& env, torch::Device device,
                                               std::chrono::milliseconds timeout,
                                               std::chrono::milliseconds start_timeout = std::chrono::milliseconds(0));
  virtual ~Communicator() = default;

  int rank() const { return env_.rank; }
  int world_size() const { return env_.world_size; }
  const Environment& environment() const { return env_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // "gloo" or "nccl".
  virtual std::string backend() const = 0;

  // A pending collective; wait() throws Error (naming the lost rank when it can) on failure.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };

  // In place, on every rank: the sum over ranks. Asynchronous: wait on the result.
  virtual std::unique_ptr<Pending> all_reduce_sum(torch::Tensor& t) = 0;
  // In place: rank `root`'s tensor on every rank.
  virtual void broadcast(torch::Tensor& t, int root) = 0;
  // Every rank's `t` (same shape everywhere), in rank order.
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& t) = 0;

  // Small text messages through the store: set by one rank, read (waiting up to the start-up
  // timeout: rank 0's decisions and checkpoints) by the others.
  void publish(const std::string& key, const std::string& value);
  std::string read(const std::string& key);
  // Every rank's own work (a checkpoint each reads) done before any rank goes on, waited for up to
  // the start-up timeout: each rank says it arrived, the last one tells them all. A rank that
  // failed arrives with its `error`, which wakes the others and is thrown there ("rank R could
  // not <key>: ...").
  void arrive(const std::string& key, const std::string& error = "");
  // A failure published under `key` has reached this rank (its own, or read). Rank 0, whose
  // process holds the store, waits until every other rank has said so (up to the collective
  // timeout) before it goes on to end; the others say so.
  void failure_known(const std::string& key);

  // Throws the Error explaining a failed collective: which rank is gone, if it can be told.
  [[noreturn]] void fail_collective(const std::string& what, const std::string& detail);

 protected:
  Communicator(Environment env, std::chrono::milliseconds timeout) : env_(std::move(env)), timeout_(timeout) {}
  Environment env_;
  std::chrono::milliseconds timeout_;
  // read()'s and arrive()'s; every other use of the store waits timeout_
  std::chrono::milliseconds start_timeout_{0};
  c10::intrusive_ptr<c10d::Store> store_;
};

}  // namespace quantlab::dist
