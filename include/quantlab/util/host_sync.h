// Calls that make the host wait for a CUDA device (a copy to the host, .item(), a stream or device
// synchronisation), seen through libtorch's sync debug mode. A training step that never waits lets
// the host queue the next step's kernels while the GPU runs this one (docs/GPU.md).
//   HostSyncWatch watch(HostSyncWatch::kCount);  ... ; watch.count()
//   HostSyncWatch forbid(HostSyncWatch::kForbid);  ... any synchronising call throws c10::Error
// Counting covers this thread and the autograd engine's device threads (libtorch replays their
// warnings on the thread that called backward). Without CUDA in libtorch nothing is watched and
// available() is false.
#pragma once

#include <cstdint>
#include <memory>

namespace quantlab {

class HostSyncWatch {
 public:
  enum Mode { kCount, kForbid };
  explicit HostSyncWatch(Mode mode);
  ~HostSyncWatch();
  HostSyncWatch(const HostSyncWatch&) = delete;
  HostSyncWatch& operator=(const HostSyncWatch&) = delete;

  // Synchronising calls seen so far (kCount).
  int64_t count() const;
  // Whether this libtorch has CUDA, so the watch sees anything.
  static bool available();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace quantlab
