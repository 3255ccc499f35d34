#!/usr/bin/env bash
# clang-tidy on the library, the tools and the tests, with a small set of checks (.clang-tidy),
# every warning an error. Compiler flags come from BUILD (a configured build folder, `make build`);
# no compile database is needed. Usage: tools/tidy.sh BUILD [FILE...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/tidy.sh BUILD [FILE...]}
shift
flags=$build/CMakeFiles/quantlab_core.dir/flags.make
[ -f "$flags" ] || { echo "tidy: $flags is missing: build first (make build)" >&2; exit 2; }
defines=$(sed -n 's/^CXX_DEFINES = //p' "$flags")
includes=$(sed -n 's/^CXX_INCLUDES = //p' "$flags")
if [ $# -eq 0 ]; then set -- $(git ls-files 'src/*.cpp' 'tools/*.cpp'); fi
t0=$(date +%s)
printf '%s\n' "$@" | xargs -P "$(nproc)" -I{} sh -c \
  "clang-tidy --quiet --warnings-as-errors='*' {} -- -std=c++17 -fopenmp $defines $includes -Wno-unknown-warning-option 2>/dev/null || { echo 'tidy: {} has findings:'; clang-tidy --quiet {} -- -std=c++17 -fopenmp $defines $includes 2>&1 | grep -v 'warnings generated'; exit 1; }" || { echo "tidy: findings (above); $# files checked" >&2; exit 1; }
echo "tidy: $# files clean ($(( $(date +%s) - t0 )) s)"
