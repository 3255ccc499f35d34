// Where a process stands in a distributed run, read from the environment its launcher set:
//   torchrun:  RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
//              TORCHELASTIC_USE_AGENT_STORE and TORCHELASTIC_RESTART_COUNT
//   SLURM:     SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE (or the node's
//              task count), the master from --master_addr or the first node of SLURM_JOB_NODELIST,
//              the port from --master_port, MASTER_PORT or 29500
//   quantlab --nproc=N: the torchrun variables, set by the launcher for its children
// Without any of them (or with a world of one) a run is single-process, exactly as without this.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace quantlab::dist {

struct Environment {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string source;  // "torchrun", "SLURM" or "quantlab --nproc"
  // torchrun's agent hosts the store at the master's address (TORCHELASTIC_USE_AGENT_STORE=True,
  // its static and c10d rendezvous): every rank connects to it, rank 0 included, and keys its
  // entries under `store_prefix` ("/worker/attempt_<TORCHELASTIC_RESTART_COUNT>", as PyTorch's
  // workers do), so that a restarted attempt never reads an earlier one's.
  bool agent_store = false;
  std::string store_prefix;
};

// What the command line may add: an explicit master (SLURM) and the collective timeout.
struct EnvironmentFlags {
  std::string master_addr;
  int master_port = 0;
};

// The distributed environment of this process, or nullopt for a single-process run (a world of
// one process is one, unless QUANTLAB_DIST=1 asks for the data-parallel path anyway). `vars`
// stands for the process environment (tests pass their own). Throws Error naming the variable
// when one is malformed or inconsistent.
std::optional<Environment> environment_from(const std::map<std::string, std::string>& vars,
                                            const EnvironmentFlags& flags = {});
std::optional<Environment> environment_from_process(const EnvironmentFlags& flags = {});

// The first host of a SLURM node list: "node[03-05,9],gpu1" -> "node03", "rack[1-2]-n[01-04]" -> "rack1-n01".
std::string first_slurm_host(const std::string& nodelist);

}  // namespace quantlab::dist
