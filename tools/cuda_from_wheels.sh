#!/usr/bin/env bash
# A CUDA toolkit made of PyPI's CUDA wheels in a venv, for make build TORCH=pip on a machine
# without nvcc:  tools/cuda_from_wheels.sh VENV LINK
# PyTorch's CMake files need a working CUDA compiler even only to link libtorch_cuda (its
# cuda.cmake calls enable_language(CUDA)), so a machine without the toolkit gets PyPI's compiler of
# the release the wheel's runtime is (requirements-nvcc.txt, installed before). The wheels install
# into one folder, nvidia/cu13 (bin/, nvvm/, include/, lib/); this adds what nvcc and linkers
# expect of a toolkit there (lib64/, the unversioned library names, version.txt) and points LINK
# at it.
set -euo pipefail
venv=$1
link=$2
cu=$(ls -d "$venv"/lib/python3*/site-packages/nvidia/cu13)
version=$("$venv/bin/python" -c 'import torch; print(torch.version.cuda)')
[ -e "$cu/lib64" ] || ln -s lib "$cu/lib64"
for lib in "$cu"/lib/*.so.*; do
  base=${lib%%.so.*}.so
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
echo "CUDA Version $version" > "$cu/version.txt"
ln -sfn "$cu" "$link"
if ! "$cu/bin/nvcc" --version > /dev/null 2>&1; then
  echo "make: PyPI's CUDA compiler in $cu/bin does not run" >&2
  exit 1
fi
echo "make: no nvcc on this machine: using PyPI's CUDA compiler, $("$cu/bin/nvcc" --version | tail -1) (the release of the wheel's CUDA runtime)"
