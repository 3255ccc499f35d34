// `quantlab`: sets what the OpenMP runtime reads only when it is loaded, then runs the program
// itself, libexec/quantlab beside this file, with the same arguments.
//
// The program links libtorch, whose initialisation before main() takes 1.3-1.5 s on the 2-core
// AMD EPYC machines (docs/PERFORMANCE.md, "Start-up"). libgomp reads OMP_WAIT_POLICY only then, so
// without this launcher the program re-ran itself to set it (util/runtime.h) and every command
// paid that start-up twice. This file links nothing but the C library and must stay so.
#include <limits.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

int main(int argc, char** argv) {
  (void)argc;
  setenv("OMP_WAIT_POLICY", "PASSIVE", /*overwrite=*/0);  // a user's own setting is kept
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) {
    std::fprintf(stderr, "quantlab: cannot find this program's own path (/proc/self/exe: %s)\n", std::strerror(errno));
    return 127;
  }
  self[n] = '\0';
  std::string program(self);
  program = program.substr(0, program.rfind('/') + 1) + "libexec/quantlab";
  execv(program.c_str(), argv);
  std::fprintf(stderr, "quantlab: cannot run %s: %s (it is built with this launcher: run make build)\n",
               program.c_str(), std::strerror(errno));
  return 127;
}
