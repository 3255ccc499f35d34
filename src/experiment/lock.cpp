// ExperimentLock: flock() on <exp>/.lock.
#include "quantlab/experiment/lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <cstring>
#include <string>

#include "quantlab/util/error.h"
#include "quantlab/util/strings.h"

namespace quantlab::experiment {
namespace {

std::string read_text(int fd) {
  char buf[256];
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : std::string();
}

long pid_in(const std::string& text) { return std::strtol(text.c_str(), nullptr, 10); }

std::string this_host() {
  char host[128] = {0};
  ::gethostname(host, sizeof host - 1);
  return host;
}

// "PID 4242", with " on node7" when the holder runs on another machine (a shared file system).
std::string holder_text(const std::string& text) {
  const long pid = pid_in(text);
  if (pid <= 0) return "";
  const size_t space = text.find(' ');
  std::string host = space == std::string::npos ? "" : text.substr(space + 1);
  host = first_line(host);
  return "PID " + std::to_string(pid) + (host.empty() || host == this_host() ? "" : " on " + host);
}

// A lock's holder writes its PID just after it takes it: read it again for a moment if it is not
// there yet.
std::string holder_record(int fd) {
  std::string text = read_text(fd);
  for (int i = 0; i < 20 && pid_in(text) <= 0; ++i) {
    ::usleep(5000);
    text = read_text(fd);
  }
  return text;
}

}  // namespace

ExperimentLock::ExperimentLock(const std::string& dir, const std::string& what) {
  const std::string file = dir + "/.lock";
  // O_NOFOLLOW: a link put in the lock file's place is refused, never written through.
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0 && errno == ELOOP)
    throw IoError(file +
                  ": is a symbolic link; the experiment's lock file must be a file of its own (remove the link)");
  if (fd_ < 0) throw IoError(file + ": cannot open the experiment's lock file (" + std::strerror(errno) + ")");
  struct stat st {};
  if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd_);
    fd_ = -1;
    throw IoError(file + ": is not a regular file; the experiment's lock file must be a file of its own");
  }
  // A look at the lock (holder(): quantlab list, compare, a sweep) holds it shared for a moment:
  // tried again for half a second before the experiment is called in use.
  int locked = -1, err = 0;
  for (int i = 0; i < 50; ++i) {
    locked = ::flock(fd_, LOCK_EX | LOCK_NB);
    err = errno;
    if (locked == 0 || err != EWOULDBLOCK) break;
    ::usleep(10000);
  }
  if (locked != 0) {
    const std::string who = err == EWOULDBLOCK ? holder_text(holder_record(fd_)) : "";
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw Error(what + " is in use by another QuantLab process" + (who.empty() ? "" : " (" + who + ")") +
                  "; wait for it to finish or stop it first (only one process may train an experiment)");
    throw IoError(file + ": cannot lock (" + std::strerror(err) + ")");
  }
  const std::string text = std::to_string(::getpid()) + " " + this_host() + "\n";
  if (::ftruncate(fd_, 0) == 0) {
    const ssize_t n = ::pwrite(fd_, text.data(), text.size(), 0);
    (void)n;  // the PID is for messages only; the lock itself is held
  }
}

ExperimentLock::~ExperimentLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

long ExperimentLock::holder(const std::string& dir) {
  const std::string file = dir + "/.lock";
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) return 0;
  long pid = 0;
  if (::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK) {
    pid = pid_in(holder_record(fd));
    if (pid <= 0) pid = -1;  // held; its PID not written
  } else {
    ::flock(fd, LOCK_UN);
  }
  ::close(fd);
  return pid;
}

}  // namespace quantlab::experiment
