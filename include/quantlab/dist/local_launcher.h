// `quantlab --nproc=N ...`: one data-parallel run of N processes on this machine, started as
// torchrun would start them (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR=127.0.0.1,
// MASTER_PORT = a free port). The launcher forwards SIGINT and SIGTERM to every rank once (Ctrl-C
// stops them all between two steps; rank 0 prints the command that resumes), reports a rank that
// dies with its PID and signal, and ends ranks that outlive the collective timeout after it.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace quantlab::dist {

// Runs `program` with `args` (the command line without --nproc) as `nproc` ranks; returns rank 0's
// exit code, or the first failing rank's when rank 0 succeeded. `timeout_s`: the collective timeout.
int run_local_processes(int nproc, const std::string& program, const std::vector<std::string>& args, int timeout_s,
                        std::ostream& err);

}  // namespace quantlab::dist
