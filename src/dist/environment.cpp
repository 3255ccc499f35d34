// Reading a launcher's environment.
#include "quantlab/dist/environment.h"

#include <unistd.h>  // environ

#include <cstdlib>

#include "quantlab/util/error.h"

namespace quantlab::dist {
namespace {

int integer(const std::map<std::string, std::string>& v, const std::string& key, int lo, int hi) {
  const auto it = v.find(key);
  if (it == v.end()) throw Error("the distributed environment has no " + key);
  try {
    size_t used = 0;
    const long x = std::stol(it->second, &used);
    if (used == it->second.size() && x >= lo && x <= hi) return static_cast<int>(x);
  } catch (const std::exception&) {
  }
  throw Error(key + "='" + it->second + "': expected an integer from " + std::to_string(lo) + " to " +
              std::to_string(hi));
}

std::string text(const std::map<std::string, std::string>& v, const std::string& key, const std::string& fallback) {
  const auto it = v.find(key);
  return it == v.end() || it->second.empty() ? fallback : it->second;
}

void check(const Environment& e) {
  if (e.rank >= e.world_size)
    throw Error(e.source + ": rank " + std::to_string(e.rank) + " is not below the world size " +
                std::to_string(e.world_size));
  if (e.local_rank >= e.local_world_size)
    throw Error(e.source + ": local rank " + std::to_string(e.local_rank) + " is not below the local world size " +
                std::to_string(e.local_world_size));
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  // The first comma-separated entry outside brackets; a bracket range gives its first number,
  // keeping its zero padding.
  size_t end = 0;
  int depth = 0;
  for (; end < nodelist.size(); ++end) {
    if (nodelist[end] == '[') ++depth;
    if (nodelist[end] == ']') --depth;
    if (nodelist[end] == ',' && depth == 0) break;
  }
  // Every bracket group of that entry gives its first number: "rack[1-2]-n[01-04]" -> "rack1-n01".
  const std::string first = nodelist.substr(0, end);
  std::string host;
  for (size_t at = 0; at < first.size();) {
    const size_t open = first.find('[', at);
    if (open == std::string::npos) {
      host += first.substr(at);
      break;
    }
    host += first.substr(at, open - at);
    const size_t close = first.find(']', open);
    const std::string inside =
        first.substr(open + 1, close == std::string::npos ? std::string::npos : close - open - 1);
    host += inside.substr(0, inside.find_first_of(",-"));
    if (close == std::string::npos) break;
    at = close + 1;
  }
  return host;
}

std::optional<Environment> environment_from(const std::map<std::string, std::string>& v,
                                            const EnvironmentFlags& flags) {
  Environment e;
  if (v.count("RANK") || v.count("WORLD_SIZE")) {
    e.source = v.count("QUANTLAB_LAUNCHER") ? "quantlab --nproc" : "torchrun";
    e.world_size = integer(v, "WORLD_SIZE", 1, 65536);
    e.rank = integer(v, "RANK", 0, 65535);
    e.local_rank = v.count("LOCAL_RANK") ? integer(v, "LOCAL_RANK", 0, 65535) : e.rank;
    e.local_world_size = v.count("LOCAL_WORLD_SIZE") ? integer(v, "LOCAL_WORLD_SIZE", 1, 65536) : e.world_size;
    e.master_addr = flags.master_addr.empty() ? text(v, "MASTER_ADDR", "127.0.0.1") : flags.master_addr;
    e.master_port = flags.master_port > 0 ? flags.master_port
                                          : (v.count("MASTER_PORT") ? integer(v, "MASTER_PORT", 1, 65535) : 29500);
    if (text(v, "TORCHELASTIC_USE_AGENT_STORE", "") == "True") {
      e.agent_store = true;
      e.store_prefix = "/worker/attempt_" + std::to_string(v.count("TORCHELASTIC_RESTART_COUNT")
                                                               ? integer(v, "TORCHELASTIC_RESTART_COUNT", 0, 1 << 30)
                                                               : 0);
    }
  } else if (v.count("SLURM_NTASKS") && v.count("SLURM_PROCID")) {
    e.source = "SLURM";
    e.world_size = integer(v, "SLURM_NTASKS", 1, 65536);
    if (e.world_size == 1) return std::nullopt;  // one task: the ordinary run
    // srun marks the processes of a job step (SLURM_STEP_ID); a batch script's own shell has the
    // job's SLURM_NTASKS without being one of its tasks, and its single process would wait the
    // whole start-up timeout for ranks that never come.
    if (!v.count("SLURM_STEP_ID") && !v.count("SLURM_STEPID"))
      throw Error("SLURM: SLURM_NTASKS=" + std::to_string(e.world_size) +
                  " but this process was not started by srun (no SLURM_STEP_ID: a batch script's own shell runs "
                  "one process, not the job's tasks); start it as 'srun quantlab ...', or with --nproc=N for "
                  "processes on this machine");
    e.rank = integer(v, "SLURM_PROCID", 0, 65535);
    e.local_rank = v.count("SLURM_LOCALID") ? integer(v, "SLURM_LOCALID", 0, 65535) : 0;
    std::string per_node = text(v, "SLURM_NTASKS_PER_NODE", text(v, "SLURM_TASKS_PER_NODE", "1"));
    per_node = per_node.substr(0, per_node.find_first_of("(,"));  // "4(x2)" -> 4
    try {
      e.local_world_size = std::max(1, std::stoi(per_node));
    } catch (const std::exception&) {
      e.local_world_size = 1;
    }
    e.local_world_size = std::max(e.local_world_size, e.local_rank + 1);
    if (!flags.master_addr.empty()) {
      e.master_addr = flags.master_addr;
    } else if (v.count("MASTER_ADDR")) {
      e.master_addr = v.at("MASTER_ADDR");
    } else {
      const std::string nodes = text(v, "SLURM_JOB_NODELIST", text(v, "SLURM_NODELIST", ""));
      if (nodes.empty()) throw Error("SLURM: no SLURM_JOB_NODELIST to take the master from; give --master_addr=HOST");
      e.master_addr = first_slurm_host(nodes);
    }
    e.master_port = flags.master_port > 0 ? flags.master_port
                                          : (v.count("MASTER_PORT") ? integer(v, "MASTER_PORT", 1, 65535) : 29500);
  } else {
    return std::nullopt;
  }
  // One process: the ordinary run, unless QUANTLAB_DIST=1 asks for the data-parallel path anyway
  // (a check of the backend, e.g. NCCL on a machine with one GPU).
  const auto forced = v.find("QUANTLAB_DIST");
  if (e.world_size == 1 && (forced == v.end() || forced->second != "1")) return std::nullopt;
  check(e);
  return e;
}

std::optional<Environment> environment_from_process(const EnvironmentFlags& flags) {
  std::map<std::string, std::string> vars;
  for (char** p = environ; p && *p; ++p) {
    const std::string kv = *p;
    const size_t eq = kv.find('=');
    if (eq != std::string::npos) vars[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  return environment_from(vars, flags);
}

}  // namespace quantlab::dist
