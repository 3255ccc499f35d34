// Other processes of this machine, by PID.
#pragma once

namespace quantlab {

// Whether process `pid` runs on this machine.
bool process_alive(long pid);
// Whether process `pid` of this machine is stopped (SIGSTOP, Ctrl-Z, a debugger), from /proc.
bool process_stopped(long pid);

}  // namespace quantlab
