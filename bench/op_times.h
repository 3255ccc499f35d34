// Where a training step's time goes, by kind of operation: matrix products and convolutions
// (forward and backward), the ANA operator, batch norm (alone or fused with ANA). Counted
// with ATen's RecordFunction callbacks, the hooks PyTorch's profiler uses: each operation's wall
// time from its start to its end on the thread that called it (the work of its intra-op threads
// falls inside, and operations started inside a parallel region are not counted again), the
// outermost counted operation only: aten::linear's aten::addmm is not counted twice, and an
// operation of one kind inside one of another counts as the outer one's. QuantLab's own operators name themselves
// (quantlab::ana, quantlab::bn_ana, ...; see core/ana.cpp). bench/train_step.py --phases counts the Python side's
// operations by the same names, so both sides' products are measured the same way (OpTimes.KindsByName and
// OpTimes.PythonPeerCountsTheSameKinds hold both to one table).
#pragma once

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

namespace quantlab::bench {

enum class OpKind { kProducts, kAna, kBatchNorm, kCount };

inline const char* op_kind_name(OpKind k) {
  static const char* names[] = {"products", "ana", "batch_norm"};
  return names[static_cast<int>(k)];
}

// The kind of an operation by its RecordFunction name; false for any other operation.
inline bool op_kind_of(const char* name, OpKind* kind) {
  const std::string n(name);
  const auto ends_with = [&](const char* s) {
    const size_t k = std::strlen(s);
    return n.size() >= k && n.compare(n.size() - k, k, s) == 0;
  };
  if (n.rfind("quantlab::bn_ana", 0) == 0 || n.find("batch_norm") != std::string::npos) {
    *kind = OpKind::kBatchNorm;
  } else if (n.rfind("quantlab::ana", 0) == 0) {
    *kind = OpKind::kAna;
  } else if (n.rfind("aten::", 0) == 0 &&
             (ends_with("mm") || n.find("conv") != std::string::npos || n == "aten::linear" || n == "aten::matmul")) {
    *kind = OpKind::kProducts;  // mm, addmm, bmm, matmul, linear; convolution and its backward
  } else {
    return false;
  }
  return true;
}

// Seconds spent in each kind of operation while an OpTimes lives (one at a time per process).
class OpTimes {
 public:
  OpTimes() {
    totals() = {};
    handle_ = at::addGlobalCallback(
        at::RecordFunctionCallback(&OpTimes::on_start, &OpTimes::on_end)
            .scopes({at::RecordScope::FUNCTION, at::RecordScope::BACKWARD_FUNCTION, at::RecordScope::USER_SCOPE}));
  }
  ~OpTimes() { at::removeCallback(handle_); }
  OpTimes(const OpTimes&) = delete;
  OpTimes& operator=(const OpTimes&) = delete;

  double seconds(OpKind k) const { return totals()[static_cast<int>(k)]; }

 private:
  using Clock = std::chrono::steady_clock;
  struct Context : at::ObserverContext {
    OpKind kind{};
    bool outermost = false;
    Clock::time_point start;
  };

  static std::array<double, static_cast<int>(OpKind::kCount)>& totals() {
    static std::array<double, static_cast<int>(OpKind::kCount)> t{};
    return t;
  }
  static int& depth() {  // operations of any counted kind open on this thread
    thread_local int d = 0;
    return d;
  }

  static std::unique_ptr<at::ObserverContext> on_start(const at::RecordFunction& fn) {
    OpKind kind{};
    if (at::in_parallel_region() || !op_kind_of(fn.name(), &kind)) return nullptr;
    auto ctx = std::make_unique<Context>();
    ctx->kind = kind;
    ctx->outermost = depth()++ == 0;
    ctx->start = Clock::now();
    return ctx;
  }

  static void on_end(const at::RecordFunction& /*fn*/, at::ObserverContext* base) {
    auto* ctx = static_cast<Context*>(base);
    if (ctx == nullptr) return;
    --depth();
    if (!ctx->outermost) return;
    const double s = std::chrono::duration<double>(Clock::now() - ctx->start).count();
    static std::mutex m;
    std::lock_guard<std::mutex> lock(m);
    totals()[static_cast<int>(ctx->kind)] += s;
  }

  at::CallbackHandle handle_;
};

}  // namespace quantlab::bench
