// Other processes of this machine, by PID.
#include "quantlab/util/process.h"

#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

namespace quantlab {

namespace {

// The state letter of /proc/<pid>/stat ('R', 'S', 'T', 'Z', ...), '?' where it cannot be read.
char process_state(long pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return '?';
  const size_t paren = line.rfind(')');  // the name in parentheses may hold spaces
  if (paren == std::string::npos || paren + 2 >= line.size()) return '?';
  return line[paren + 2];
}

}  // namespace

bool process_alive(long pid) {
  if (pid <= 0 || (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)) return false;
  // A zombie has ended: only its exit status is left, for its parent to collect.
  const char state = process_state(pid);
  return state != 'Z' && state != 'X';
}

bool process_stopped(long pid) {
  if (pid <= 0) return false;
  const char state = process_state(pid);
  return state == 'T' || state == 't';
}

int exit_code(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }

std::string exit_description(int status) {
  if (WIFSIGNALED(status))
    return "was killed by signal " + std::to_string(WTERMSIG(status)) + " (" + strsignal(WTERMSIG(status)) + ")";
  return "exited with code " + std::to_string(WEXITSTATUS(status));
}

}  // namespace quantlab
