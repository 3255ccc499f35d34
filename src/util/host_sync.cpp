// HostSyncWatch: libtorch's sync debug mode, and a warning handler that counts what it reports.
#include "quantlab/util/host_sync.h"

#include <torch/torch.h>
#include <torch/version.h>

#ifdef QL_LIBTORCH_CUDA
#include <c10/cuda/CUDAFunctions.h>
#endif

#include <string>

namespace quantlab {

#ifdef QL_LIBTORCH_CUDA
// A named namespace: HostSyncWatch::State holds a CountingHandler (-Wsubobject-linkage).
namespace host_sync_detail {

#if TORCH_VERSION_MAJOR >= 2
namespace warnings = c10::WarningUtils;
#else
namespace warnings = c10::Warning;
#endif

bool is_sync_warning(const std::string& msg) { return msg.find("synchronizing CUDA operation") != std::string::npos; }

// Counts the sync debug mode's warnings; passes every other warning on.
class CountingHandler : public c10::WarningHandler {
 public:
  explicit CountingHandler(c10::WarningHandler* next) : next_(next) {}
#if TORCH_VERSION_MAJOR >= 2
  void process(const c10::Warning& w) override {
    if (is_sync_warning(w.msg())) {
      ++count;
      return;
    }
    if (next_) next_->process(w);
  }
#else
  void process(const c10::SourceLocation& where, const std::string& msg, const bool verbatim) override {
    if (is_sync_warning(msg)) {
      ++count;
      return;
    }
    if (next_) next_->process(where, msg, verbatim);
  }
#endif
  int64_t count = 0;

 private:
  c10::WarningHandler* next_;
};

}  // namespace host_sync_detail

using host_sync_detail::CountingHandler;
namespace warnings = host_sync_detail::warnings;

struct HostSyncWatch::State {
  c10::cuda::SyncDebugMode previous;
  c10::WarningHandler* previous_handler;
  std::unique_ptr<CountingHandler> handler;
};

HostSyncWatch::HostSyncWatch(Mode mode) : state_(std::make_unique<State>()) {
  state_->previous = c10::cuda::warning_state().get_sync_debug_mode();
  state_->previous_handler = warnings::get_warning_handler();
  if (mode == kCount) {
    state_->handler = std::make_unique<CountingHandler>(state_->previous_handler);
    warnings::set_warning_handler(state_->handler.get());
  }
  c10::cuda::warning_state().set_sync_debug_mode(mode == kCount ? c10::cuda::SyncDebugMode::L_WARN
                                                                : c10::cuda::SyncDebugMode::L_ERROR);
}

HostSyncWatch::~HostSyncWatch() {
  c10::cuda::warning_state().set_sync_debug_mode(state_->previous);
  if (state_->handler) warnings::set_warning_handler(state_->previous_handler);
}

int64_t HostSyncWatch::count() const { return state_->handler ? state_->handler->count : 0; }

bool HostSyncWatch::available() { return true; }

#else

struct HostSyncWatch::State {};
HostSyncWatch::HostSyncWatch(Mode) : state_(std::make_unique<State>()) {}
HostSyncWatch::~HostSyncWatch() = default;
int64_t HostSyncWatch::count() const { return 0; }
bool HostSyncWatch::available() { return false; }

#endif

}  // namespace quantlab
