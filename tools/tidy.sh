#!/usr/bin/env bash
# clang-tidy on the library and the tools, with a small set of checks (.clang-tidy),
# every warning an error. Compiler flags come from BUILD (a configured build folder, `make build`);
# no compile database is needed. Usage: tools/tidy.sh BUILD [FILE...]
#
# Without FILEs, every tracked src/ and tools/ source is checked. Parsing libtorch's headers is
# most of clang-tidy's time (27 of 39 s for one file on a 2-core AMD EPYC), so the library's
# sources are checked in the batches the build compiles them in (CMake's unity files of
# quantlab_core: one parse per 8 sources, 42 s for 8), the others one by one. Findings name the
# source file, wherever it was included from.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:?usage: tools/tidy.sh BUILD [FILE...]}
shift
flags=$build/CMakeFiles/quantlab_core.dir/flags.make
[ -f "$flags" ] || { echo "tidy: $flags is missing: build first (make build)" >&2; exit 2; }
defines=$(sed -n 's/^CXX_DEFINES = //p' "$flags")
includes=$(sed -n 's/^CXX_INCLUDES = //p' "$flags")
# Findings in the project's own files only: its headers, and its sources where a unity file
# includes them (clang-tidy counts those as headers).
root=$(pwd -P)
filter="^$(printf '%s' "$root" | sed 's/[][\.*^$+?(){}|]/\\&/g')/(include/quantlab|src|tools)/"
if [ $# -eq 0 ]; then
  unity=$(find "$build/CMakeFiles/quantlab_core.dir/Unity" -name 'unity_*.cxx' 2>/dev/null | sort || true)
  batched=$(cat /dev/null $unity | sed -n "s|^#include \"$root/\(.*\)\"|\1|p" | sort)
  tracked=$(git ls-files 'src/*.cpp' 'tools/*.cpp' | sort)
  alone=$(comm -23 <(printf '%s\n' "$tracked") <(printf '%s\n' "$batched"))
  sources=$(printf '%s\n' "$tracked" | wc -l)  # every one of them, batched or alone
  set -- $unity $alone
else
  sources=$#
fi
# One clang-tidy per file; its report is shown only where it has findings.
tidy_one() {
  local out flags
  eval "flags=($defines $includes)"  # as make reads flags.make: quotes in a define are the shell's
  out=$(clang-tidy --quiet --header-filter="$filter" --warnings-as-errors='*' "$1" -- -std=c++17 -fopenmp \
        "${flags[@]}" -Wno-unknown-warning-option 2>&1) && return 0
  printf 'tidy: %s has findings:\n%s\n' "$1" "$(printf '%s\n' "$out" | grep -v 'warnings generated')"
  return 1
}
export -f tidy_one
export filter defines includes
t0=$(date +%s)
printf '%s\n' "$@" | xargs -P "$(nproc)" -I{} bash -c 'tidy_one "$1"' _ {} ||
  { echo "tidy: findings (above); $sources files checked" >&2; exit 1; }
echo "tidy: $sources files clean in $# runs of clang-tidy ($(( $(date +%s) - t0 )) s)"
