// An exclusive lock on an experiment folder: one process at a time trains an experiment.
// flock() on <exp>/.lock, which the operating system releases when the holder exits or dies, so a
// lock left by a killed process never blocks; the file records the holder's PID and host for the
// message a second process gets.
#pragma once

#include <string>

namespace quantlab::experiment {

class ExperimentLock {
 public:
  // Takes the lock of `dir` without waiting. Throws Error naming `what` (e.g. "experiment 3") and
  // the holder's PID when another process holds it.
  ExperimentLock(const std::string& dir, const std::string& what);
  ~ExperimentLock();
  ExperimentLock(const ExperimentLock&) = delete;
  ExperimentLock& operator=(const ExperimentLock&) = delete;

  // The PID recorded in `dir`/.lock when another process holds the lock now (-1: held, no PID
  // recorded), else 0.
  static long holder(const std::string& dir);

 private:
  int fd_ = -1;
};

}  // namespace quantlab::experiment
