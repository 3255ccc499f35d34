// A sweep's units K at a time (--parallel=K), each in a process of its own.
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <optional>
#include <ostream>
#include <thread>

#include "quantlab/experiment/lock.h"
#include "quantlab/util/error.h"
#include "quantlab/util/process.h"
#include "quantlab/util/runtime.h"
#include "sweep_steps.h"

namespace quantlab::experiment::sweep_steps {

namespace fs = std::filesystem;

// Each `command --unit=N [--threads=T]` with its output in <sweep>/units/<N>/output.log; the
// children update the record themselves.
SweepResult run_parallel(const Sweep& s, const SweepOptions& o, const std::vector<const SweepUnit*>& mine,
                         const std::atomic<int>* stop, std::ostream& out) {
  if (o.command.empty()) throw Error("--parallel: no command to start the units with (SweepOptions::command)");
  const int threads = o.launch.threads > 0 ? o.launch.threads : std::max(1, available_cores() / o.parallel);
  SweepResult result;
  result.units = static_cast<int64_t>(mine.size());
  std::vector<const SweepUnit*> queue;
  for (const SweepUnit* u : mine) {  // finished units skipped here, without a process
    if (unit_state(s, *u, out).finished)
      count(result, Outcome::kSkipped);
    else
      queue.push_back(u);
  }
  out << "sweep " << s.name << ": " << queue.size() << " units to run, " << o.parallel << " at a time with " << threads
      << " thread" << (threads == 1 ? "" : "s") << " each; their output in " << s.dir << "/units/<N>/output.log"
      << std::endl;
  struct Child {
    pid_t pid;
    const SweepUnit* unit;
    std::string log;
  };
  std::vector<Child> running;
  size_t next = 0;
  int forwarded = 0;
  const pid_t parent = ::getpid();
  ::signal(SIGCHLD, SIG_DFL);  // the children are waited for, not reaped by the system
  // The command without --threads when the sweep chooses the units' threads.
  std::vector<std::string> base;
  for (size_t k = 0; k < o.command.size(); ++k) {
    const std::string& a = o.command[k];
    if (o.launch.threads <= 0 && k > 0 && a == "--threads") {
      ++k;
      continue;
    }
    if (o.launch.threads <= 0 && k > 0 && a.rfind("--threads=", 0) == 0) continue;
    base.push_back(a);
  }
  while (true) {
    const int signal = stop ? stop->load() : 0;
    if (signal != 0 && forwarded == 0) {
      forwarded = signal;
      for (const Child& c : running) ::kill(c.pid, signal);  // once: each stops between two batches
      result.interrupted_by = signal;
    }
    while (forwarded == 0 && running.size() < static_cast<size_t>(o.parallel) && next < queue.size()) {
      const SweepUnit* u = queue[next++];
      const std::string dir = s.dir + "/units/" + std::to_string(u->index + 1), log = dir + "/output.log";
      std::error_code ec;
      fs::create_directories(dir, ec);
      if (const long pid = ExperimentLock::holder(dir); pid != 0) {  // another process runs it: left to it
        out << unit_title(s, *u) << " is running in another process"
            << (pid > 0 ? " (PID " + std::to_string(pid) + ")" : std::string()) << "; left to it" << std::endl;
        count(result, Outcome::kElsewhere);
        continue;
      }
      // Marked, so that what the record says after the process ends is this process's doing.
      s.update(u->index, [&](nlohmann::json& e) {
        e["state"] = "starting";
        e.erase("error");
      });
      std::vector<std::string> args = base;
      args.push_back("--unit=" + std::to_string(u->index + 1));
      if (o.launch.threads <= 0) args.push_back("--threads=" + std::to_string(threads));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      const pid_t pid = ::fork();
      if (pid < 0)
        throw Error("--parallel: cannot start a process for unit " + std::to_string(u->index + 1) + ": " +
                    std::strerror(errno));
      if (pid == 0) {
        ::setpgid(0, 0);                     // the terminal's Ctrl-C reaches this sweep only, which forwards it once
        ::prctl(PR_SET_PDEATHSIG, SIGTERM);  // a sweep that dies stops its units (resumable)
        if (::getppid() != parent) ::_exit(143);
        const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0) {
          ::dup2(fd, 1);
          ::dup2(fd, 2);
        }
        ::execv(argv[0], argv.data());
        ::_exit(127);
      }
      ::setpgid(pid, pid);  // also here: no window in which a Ctrl-C reaches the child first
      running.push_back({pid, u, log});
      out << unit_title(s, *u) << " (" << levels_text(*u) << ") started, PID " << pid << std::endl;
    }
    if (running.empty()) break;
    // Which child ended, if any (each waited for by its PID).
    std::optional<Child> ended;
    int status = 0;
    for (auto it = running.begin(); it != running.end(); ++it) {
      const pid_t r = ::waitpid(it->pid, &status, WNOHANG);
      if (r == it->pid || (r < 0 && errno == ECHILD)) {
        if (r < 0) status = -1;  // reaped elsewhere: its exit status is unknown
        ended = *it;
        running.erase(it);
        break;
      }
    }
    if (!ended) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    const Child& c = *ended;
    const nlohmann::json entry = s.entry(c.unit->index);
    const std::string state = entry.value("state", "");
    const std::string exp =
        entry["exp_id"].is_number_integer() ? ", experiment " + std::to_string(entry["exp_id"].get<int64_t>()) : "";
    const std::string how =
        status == -1 ? std::string("ended (its exit status was not kept)") : exit_description(status);
    if (status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == kExitElsewhere) {
      count(result, Outcome::kElsewhere);
      out << unit_title(s, *c.unit) << " was taken by another process first; left to it" << std::endl;
    } else if (state == "finished") {
      count(result, Outcome::kFinished);
      out << unit_title(s, *c.unit) << " finished" << exp << std::endl;
    } else if (state == "stopped") {
      out << unit_title(s, *c.unit) << " stopped" << exp << std::endl;
    } else if (state == "pending") {  // stopped during its start-up: nothing was made
      out << unit_title(s, *c.unit) << " stopped before its experiment was made" << std::endl;
    } else if (state == "failed") {
      count(result, Outcome::kFailed);
      out << unit_title(s, *c.unit) << " failed" << exp << ": " << entry.value("error", "") << std::endl;
    } else if (forwarded != 0) {  // stopped before it could say so (a second signal, a kill)
      s.update(c.unit->index, [&](nlohmann::json& e) { e["state"] = state == "starting" ? "pending" : "stopped"; });
      out << unit_title(s, *c.unit) << " stopped (its process " << how << ")" << exp << std::endl;
    } else {
      // The process ended without saying (a crash, a kill): recorded as failed, with its log.
      const std::string why = "its process " + how + "; its output: " + c.log;
      s.update(c.unit->index, [&](nlohmann::json& e) {
        e["state"] = "failed";
        e["error"] = why;
      });
      count(result, Outcome::kFailed);
      out << unit_title(s, *c.unit) << " failed" << exp << ": " << why << std::endl;
    }
  }
  return result;
}

}  // namespace quantlab::experiment::sweep_steps
