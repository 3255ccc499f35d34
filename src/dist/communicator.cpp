// Communicator: c10d's TCPStore and process groups.
#include "quantlab/dist/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
// NCCL where libtorch was built with CUDA and has its process group (QL_WITH_NCCL, set by CMake;
// the header declares the class only under USE_C10D_NCCL).
#ifdef QL_WITH_NCCL
#ifndef USE_C10D_NCCL
#define USE_C10D_NCCL
#endif
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "quantlab/util/process.h"
#include "quantlab/util/error.h"
#include "quantlab/util/runtime.h"
#include "quantlab/util/strings.h"

namespace quantlab::dist {
namespace {

// How long a rank that closed its connection may take to end before it counts as hung.
constexpr std::chrono::milliseconds kPeerEnd{10000};

std::string host_name() {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  return host;
}

bool is_loopback(const std::string& addr) { return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1"; }

// A process group of any c10d backend with allreduce, broadcast and allgather.
// Its tensors live on `device`: NCCL takes GPU tensors only, so a host tensor given to it (the
// stop flag of every step, the epoch's metric sums, the CPU generators' states gathered at a
// checkpoint, the best-checkpoint flag before the final test) travels through a copy on the GPU and
// comes back when the collective ends; Gloo's device is the CPU and nothing is copied.
template <typename Group>
class GroupCommunicator : public Communicator {
 public:
  GroupCommunicator(Environment env, std::chrono::milliseconds timeout, c10::intrusive_ptr<c10d::Store> store,
                    c10::intrusive_ptr<Group> group, std::string name, torch::Device device)
      : Communicator(std::move(env), timeout), group_(std::move(group)), name_(std::move(name)), device_(device) {
    store_ = std::move(store);
  }

  std::string backend() const override { return name_; }

  // A collective under way; `host`, when defined, receives `staged` (its copy on the device) at the end.
  class Work : public Pending {
   public:
    Work(GroupCommunicator* owner, c10::intrusive_ptr<c10d::Work> work, std::string what, torch::Tensor host = {},
         torch::Tensor staged = {})
        : owner_(owner),
          work_(std::move(work)),
          what_(std::move(what)),
          host_(std::move(host)),
          staged_(std::move(staged)) {}
    void wait() override {
      try {
        if (!work_->wait(owner_->timeout())) owner_->fail_collective(what_, "it timed out");
        if (host_.defined()) host_.copy_(staged_);  // after the collective on the same stream
      } catch (const Error&) {
        throw;
      } catch (const std::exception& e) {
        owner_->fail_collective(what_, e.what());
      }
    }

   private:
    GroupCommunicator* owner_;
    c10::intrusive_ptr<c10d::Work> work_;
    std::string what_;
    torch::Tensor host_, staged_;
  };

  std::unique_ptr<Pending> all_reduce_sum(torch::Tensor& t) override {
    const bool stage = !on_device(t);
    try {
      std::vector<torch::Tensor> v{stage ? t.to(device_) : t};
      return std::make_unique<Work>(this, group_->allreduce(v, c10d::AllreduceOptions()), "an all-reduce",
                                    stage ? t : torch::Tensor(), stage ? v[0] : torch::Tensor());
    } catch (const std::exception& e) {
      fail_collective("an all-reduce", e.what());
    }
  }

  void broadcast(torch::Tensor& t, int root) override {
    const bool stage = !on_device(t);
    c10d::BroadcastOptions o;
    o.rootRank = root;
    try {
      std::vector<torch::Tensor> v{stage ? t.to(device_) : t};
      Work(this, group_->broadcast(v, o), "a broadcast", stage ? t : torch::Tensor(), stage ? v[0] : torch::Tensor())
          .wait();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail_collective("a broadcast", e.what());
    }
  }

  std::vector<torch::Tensor> all_gather(const torch::Tensor& t) override {
    std::vector<std::vector<torch::Tensor>> out(1);
    try {
      std::vector<torch::Tensor> in{t.to(device_).contiguous()};
      for (int r = 0; r < world_size(); ++r) out[0].push_back(torch::empty_like(in[0]));
      Work(this, group_->allgather(out, in), "an all-gather").wait();
    } catch (const Error&) {
      throw;
    } catch (const std::exception& e) {
      fail_collective("an all-gather", e.what());
    }
    if (!on_device(t))
      for (auto& g : out[0]) g = g.to(t.device());
    return out[0];
  }

 private:
  bool on_device(const torch::Tensor& t) const {
    return t.device().type() == device_.type() && (!device_.has_index() || t.device().index() == device_.index());
  }

  c10::intrusive_ptr<Group> group_;
  std::string name_;
  torch::Device device_;
};

c10::intrusive_ptr<c10d::Store> make_store(const Environment& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions o;
  o.port = static_cast<uint16_t>(env.master_port);
  o.isServer = env.rank == 0 && !env.agent_store;  // torchrun's agent listens there itself
  o.numWorkers = static_cast<size_t>(env.world_size);
  // The ranks are waited for once, by wait_for_every_rank: a server that waited for them too made
  // rank 0 wait twice --dist_start_timeout, and its message say half of that. A client's wait is
  // only its first call (an add), which proves the master answers: kept.
  o.waitWorkers = !o.isServer;
  o.timeout = timeout;
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  // c10d's client honours the timeout while nothing listens, but waits far longer (minutes) on a
  // port where another program accepts and never answers: the store is made in a thread of its
  // own, and given up at the timeout plus a few seconds. A thread given up on ends with the process.
  auto made = std::make_shared<std::promise<c10::intrusive_ptr<c10d::Store>>>();
  auto ready = made->get_future();
  std::thread([made, addr = env.master_addr, o] {
    try {
      made->set_value(c10::make_intrusive<c10d::TCPStore>(addr, o));
    } catch (...) {
      made->set_exception(std::current_exception());
    }
  }).detach();
  if (ready.wait_for(timeout + std::chrono::seconds(5)) != std::future_status::ready) {
    if (env.rank == 0 && !env.agent_store)
      throw Error("rank 0 listens on " + where + ", but not all " + std::to_string(env.world_size) +
                  " ranks connected within " + std::to_string(timeout.count() / 1000) + " s");
    throw Error("rank " + std::to_string(env.rank) + " cannot reach the master at " + where + " within " +
                std::to_string(timeout.count() / 1000) +
                " s: something there accepts connections but does not answer as a QuantLab master (another "
                "program on that port, or a master that hangs)");
  }
  try {
    auto store = ready.get();
    if (env.store_prefix.empty()) return store;
    return c10::make_intrusive<c10d::PrefixStore>(env.store_prefix, store);
  } catch (const std::exception& e) {
    const std::string why = first_line(e.what());
    if (env.agent_store)
      throw Error("rank " + std::to_string(env.rank) + " cannot reach torchrun's store at " + where + " within " +
                  std::to_string(timeout.count() / 1000) + " s: " + why);
    if (env.rank == 0 && (why.find("in use") != std::string::npos || why.find("errno: 98") != std::string::npos ||
                          why.find("listen") != std::string::npos))
      throw Error("rank 0 cannot listen on " + where +
                  " (the port is in use, or the address is not this machine's); choose another MASTER_PORT: " + why);
    throw Error("rank " + std::to_string(env.rank) + " cannot reach the master at " + where + " within " +
                std::to_string(timeout.count() / 1000) + " s (not started, unreachable, or a firewall): " + why);
  }
}

// Every rank arrives before the process group forms, whose own rendezvous waits only the collective
// timeout: the ranks count themselves in the store, and the last one tells them all.
void wait_for_every_rank(c10d::Store& store, const Environment& env, std::chrono::milliseconds timeout) {
  if (store.add("quantlab/arrived", 1) == env.world_size) store.set("quantlab/all_arrived", std::vector<uint8_t>{'1'});
  try {
    store.wait({"quantlab/all_arrived"}, timeout);
  } catch (const std::exception& e) {
    int64_t arrived = -1;
    try {
      arrived = store.add("quantlab/arrived", 0);
    } catch (const std::exception&) {
    }
    throw Error("rank " + std::to_string(env.rank) + ": " +
                (arrived >= 0 ? "only " + std::to_string(arrived) + " of the " : "not all ") +
                std::to_string(env.world_size) + " ranks started within " + std::to_string(timeout.count() / 1000) +
                " s (--dist_start_timeout): " + first_line(e.what()));
  }
}

}  // namespace

std::unique_ptr<Communicator> Communicator::connect(const Environment& env, torch::Device device,
                                                    std::chrono::milliseconds timeout,
                                                    std::chrono::milliseconds start_timeout) {
  if (start_timeout.count() <= 0) start_timeout = timeout;
  // NCCL needs a GPU on every rank: said before anything connects, not by the process group.
  if (device.is_cuda() && torch::cuda::device_count() == 0)
    throw Error("rank " + std::to_string(env.rank) + ": data-parallel training on CUDA (NCCL) needs a GPU on every " +
                "rank, and this one sees none: " + cuda_unavailable_reason());
  auto store = make_store(env, start_timeout);
  wait_for_every_rank(*store, env, start_timeout);
  // From here on the store answers within the collective timeout (a failed collective's look-up of
  // who is gone included); read() and arrive() wait the start-up timeout.
  store->setTimeout(timeout);
  std::unique_ptr<Communicator> comm;
  if (device.is_cuda()) {
#ifdef QL_WITH_NCCL
    auto options = c10d::ProcessGroupNCCL::Options::create();
    options->timeout = timeout;
    try {
      auto group = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, env.rank, env.world_size, options);
      comm = std::make_unique<GroupCommunicator<c10d::ProcessGroupNCCL>>(env, timeout, store, group, "nccl", device);
    } catch (const std::exception& e) {
      throw Error("rank " + std::to_string(env.rank) +
                  ": the NCCL process group did not form: " + first_line(e.what()));
    }
    comm->start_timeout_ = start_timeout;
    comm->publish("rank/" + std::to_string(env.rank), std::to_string(getpid()) + " " + host_name());
    return comm;
#else
    throw Error(
        "distributed training on CUDA needs libtorch's NCCL process group, and this QuantLab was built "
        "without it (a libtorch without CUDA, or no nccl.h at build time); run with --device=cpu (Gloo)");
#endif
  }
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  if (ifname && *ifname) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (is_loopback(env.master_addr)) {
    options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  } else {
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  try {
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(store, env.rank, env.world_size, options);
    comm = std::make_unique<GroupCommunicator<c10d::ProcessGroupGloo>>(env, timeout, store, group, "gloo",
                                                                       torch::Device(torch::kCPU));
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + ": the Gloo process group did not form within " +
                std::to_string(timeout.count() / 1000) + " s: " + first_line(e.what()));
  }
  comm->start_timeout_ = start_timeout;
  comm->publish("rank/" + std::to_string(env.rank), std::to_string(getpid()) + " " + host_name());
  return comm;
}

void Communicator::publish(const std::string& key, const std::string& value) {
  store_->set("quantlab/" + key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string Communicator::read(const std::string& key) {
  try {
    store_->wait({"quantlab/" + key}, start_timeout_.count() > 0 ? start_timeout_ : timeout_);
    const auto v = store_->get("quantlab/" + key);
    return std::string(v.begin(), v.end());
  } catch (const std::exception& e) {
    fail_collective("reading '" + key + "' from the master", e.what());
  }
}

void Communicator::arrive(const std::string& key, const std::string& error) {
  const std::string done = "quantlab/every/" + key;
  const auto bytes = [](const std::string& t) { return std::vector<uint8_t>(t.begin(), t.end()); };
  if (!error.empty()) {
    try {  // the failing rank's own error is the one it throws
      store_->set(done, bytes("rank " + std::to_string(env_.rank) + " could not " + key + ": " + error));
    } catch (const std::exception&) {
    }
    failure_known("every/" + key);
    return;
  }
  std::vector<uint8_t> said;
  try {
    if (store_->add(done + "/arrived", 1) == env_.world_size) store_->set(done, std::vector<uint8_t>{});
    store_->wait({done}, start_timeout_.count() > 0 ? start_timeout_ : timeout_);
    said = store_->get(done);
  } catch (const std::exception& e) {
    fail_collective("waiting for every rank to " + key, e.what());
  }
  if (said.empty()) return;
  failure_known("every/" + key);
  throw Error(std::string(said.begin(), said.end()));
}

void Communicator::failure_known(const std::string& key) {
  // The store lives in rank 0's process: a rank 0 that ended at once would leave the ranks still
  // on their way (reading a large checkpoint) with "the master is gone" instead of the failure.
  const std::string known = "quantlab/known/" + key;
  try {
    if (env_.rank != 0) {
      store_->add(known, 1);
      return;
    }
    const auto deadline = std::chrono::steady_clock::now() + timeout_;
    while (store_->add(known, 0) < env_.world_size - 1 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } catch (const std::exception&) {  // a store that no longer answers: nobody left to tell
  }
}

void Communicator::fail_collective(const std::string& what, const std::string& detail) {
  // Which rank is gone: the ranks on this machine are checked by PID; a master that no longer
  // answers is rank 0.
  struct Peer {
    std::string name;
    long pid;
  };
  std::vector<Peer> peers;  // the other ranks on this machine
  bool master_lost = false;
  const std::string here = host_name();
  for (int r = 0; r < env_.world_size && !master_lost; ++r) {
    if (r == env_.rank) continue;
    try {
      if (!store_->check({"quantlab/rank/" + std::to_string(r)})) continue;
      const auto v = store_->get("quantlab/rank/" + std::to_string(r));
      const std::string entry(v.begin(), v.end());
      const long pid = std::strtol(entry.c_str(), nullptr, 10);
      const std::string host = entry.substr(entry.find(' ') + 1);
      if (host == here) peers.push_back({"rank " + std::to_string(r) + " (PID " + std::to_string(pid) + ")", pid});
    } catch (const std::exception&) {
      master_lost = true;
    }
  }
  // A peer that closed its connection is ending, most often after an error of its own that it
  // prints itself: it is given a moment to be gone (once, for all of them) rather than taken for a
  // hung rank.
  const bool peer_closed = detail.find("closed by peer") != std::string::npos ||
                           detail.find("reset by peer") != std::string::npos ||
                           detail.find("Broken pipe") != std::string::npos;
  const auto one_ended = [&] {
    return std::any_of(peers.begin(), peers.end(),
                       [](const Peer& p) { return !process_alive(p.pid) || process_stopped(p.pid); });
  };
  if (peer_closed && !master_lost && !peers.empty()) {
    const auto deadline = std::chrono::steady_clock::now() + std::min<std::chrono::milliseconds>(timeout_, kPeerEnd);
    while (!one_ended() && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::vector<std::string> gone, stopped, silent;
  for (const Peer& p : peers)
    (!process_alive(p.pid) ? gone : process_stopped(p.pid) ? stopped : silent).push_back(p.name);
  std::string who;
  if (master_lost)
    who = "rank 0 (the master, " + env_.master_addr + ") is gone";
  else if (!gone.empty())
    who = gone.front() + (gone.size() > 1 ? " and others are" : " is") + " gone";
  else if (!stopped.empty())
    who = stopped.front() + (stopped.size() > 1 ? " and others are" : " is") +
          " stopped (SIGSTOP, Ctrl-Z or a debugger) and did not answer";
  else if (!silent.empty() && static_cast<int>(silent.size()) == env_.world_size - 1)
    who = (silent.size() == 1 ? silent.front() + " did" : "the other ranks did") +
          std::string(" not answer in time (hung, or far slower than this one)");
  else if (env_.world_size == 1)
    who = "it failed in this process, the only rank";
  else
    who = "another rank stopped answering (on another machine, or hung)";
  throw Error("rank " + std::to_string(env_.rank) + ": " + what + " failed: " + who +
              "; stopping. The last checkpoint " + "stays valid: resume with --load=last. (" + first_line(detail) +
              ")");
}

}  // namespace quantlab::dist
