// The local launcher: fork/exec of the ranks, signal forwarding, reporting.
#include "quantlab/dist/local_launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "quantlab/util/process.h"
#include "quantlab/util/progress.h"
#include "quantlab/util/error.h"

namespace quantlab::dist {
namespace {

constexpr int kMaxRanks = 1024;
pid_t g_children[kMaxRanks];
int g_count = 0;
volatile sig_atomic_t g_signal = 0;

// SIGINT and SIGTERM are passed on as they are; SIGHUP (the terminal closed) as SIGTERM, which
// the ranks answer by stopping between two steps, resumably.
extern "C" void forward_signal(int sig) {
  g_signal = sig;
  for (int i = 0; i < g_count; ++i)
    if (g_children[i] > 0) kill(g_children[i], sig == SIGHUP ? SIGTERM : sig);
}

// A TCP port of the loopback interface that is free now.
int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    close(fd);
    throw Error(std::string("cannot find a free port on 127.0.0.1: ") + std::strerror(errno));
  }
  close(fd);
  return ntohs(a.sin_port);
}

}  // namespace

int run_local_processes(int nproc, const std::string& program, const std::vector<std::string>& args, int timeout_s,
                        std::ostream& err) {
  if (nproc < 1 || nproc > kMaxRanks) throw Error("--nproc: expected 1 to " + std::to_string(kMaxRanks) + " processes");
  if (std::getenv("RANK") || std::getenv("WORLD_SIZE"))
    throw Error("--nproc starts its own processes; this one already runs under a launcher (RANK/WORLD_SIZE are set)");
  const int port = free_port();
  struct sigaction sa {};
  sa.sa_handler = forward_signal;
  sigemptyset(&sa.sa_mask);
  struct sigaction old_int {
  }, old_term{}, old_hup{};
  g_count = 0;
  g_signal = 0;
  const pid_t launcher = getpid();
  for (int r = 0; r < nproc; ++r) {
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("cannot start rank ") + std::to_string(r) + ": " + std::strerror(errno));
    if (pid == 0) {
      setpgid(0, 0);  // the terminal's Ctrl-C reaches the launcher only, which forwards it once
      // A launcher killed outright (SIGKILL, out of memory) leaves no rank behind holding the
      // experiment's lock: each gets SIGTERM and stops between two steps.
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (getppid() != launcher) _exit(130);  // it died before the line above
      setenv("RANK", std::to_string(r).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(r).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      setenv("QUANTLAB_LAUNCHER", "1", 1);
      std::vector<std::string> argv_s{program};
      argv_s.insert(argv_s.end(), args.begin(), args.end());
      std::vector<char*> argv;
      for (auto& a : argv_s) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv("/proc/self/exe", argv.data());
      _exit(127);
    }
    g_children[g_count++] = pid;
  }
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  sigaction(SIGHUP, &sa, &old_hup);
  std::vector<int> status(static_cast<size_t>(nproc), -1);
  int remaining = nproc;
  bool lost = false;
  std::vector<bool> ended(static_cast<size_t>(nproc), false);
  auto deadline = std::chrono::steady_clock::time_point::max();
  while (remaining > 0) {
    int st = 0;
    const pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid > 0) {
      int r = 0;
      while (r < g_count && g_children[r] != pid) ++r;
      if (r == g_count) continue;
      status[static_cast<size_t>(r)] = st;
      g_children[r] = -1;
      --remaining;
      const bool failed = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0 && g_signal == 0);
      if (failed && !lost && remaining > 0) {
        lost = true;
        write_line(err, "quantlab: rank " + std::to_string(r) + " (PID " + std::to_string(pid) + ") " +
                            exit_description(st) + "; the other ranks stop within the collective timeout (" +
                            std::to_string(timeout_s) + " s)");
        // The others notice within the collective timeout; a few seconds more to write their message.
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s + 5);
      }
      continue;
    }
    if (pid < 0 && errno != EINTR) break;
    // A forwarded Ctrl-C or SIGTERM: the ranks stop between two steps, within the collective
    // timeout when one of them waits on another; a rank that does not is ended as after a loss
    // (the launcher waited for ever on a stopped rank).
    if (g_signal != 0 && !lost) {
      lost = true;
      deadline = std::min(deadline, std::chrono::steady_clock::now() + std::chrono::seconds(timeout_s + 5));
    }
    if (lost)  // a stopped rank cannot notice anything: ended at once
      for (int r = 0; r < g_count; ++r)
        if (g_children[r] > 0 && !ended[static_cast<size_t>(r)] && process_stopped(g_children[r])) {
          ended[static_cast<size_t>(r)] = true;
          write_line(err, "quantlab: rank " + std::to_string(r) + " (PID " + std::to_string(g_children[r]) +
                              ") is stopped (SIGSTOP or a debugger); ending it");
          kill(g_children[r], SIGKILL);
          kill(g_children[r], SIGCONT);
        }
    if (std::chrono::steady_clock::now() > deadline) {
      for (int r = 0; r < g_count; ++r)
        if (g_children[r] > 0) {
          write_line(err, "quantlab: rank " + std::to_string(r) + " (PID " + std::to_string(g_children[r]) +
                              ") did not stop; ending it");
          kill(g_children[r], SIGKILL);
        }
      deadline = std::chrono::steady_clock::time_point::max();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  sigaction(SIGHUP, &old_hup, nullptr);
  g_count = 0;
  if (exit_code(status[0]) != 0) return exit_code(status[0]);
  for (int st : status)
    if (exit_code(st) != 0) return exit_code(st);
  return 0;
}

}  // namespace quantlab::dist
