// Other processes of this machine, by PID.
#pragma once

#include <string>

namespace quantlab {

// Whether process `pid` runs on this machine (a zombie, ended but not yet collected, does not).
bool process_alive(long pid);
// Whether process `pid` of this machine is stopped (SIGSTOP, Ctrl-Z, a debugger), from /proc.
bool process_stopped(long pid);

// A waitpid status as a shell would report it: the process's exit code, or 128 + the signal that
// ended it.
int exit_code(int status);
// The same in words: "exited with code 3", "was killed by signal 9 (Killed)".
std::string exit_description(int status);

}  // namespace quantlab
