#!/usr/bin/env bash
# Unpacks the .deb files of a bundle (make bundle) into a prefix, without dpkg if need be (ar + tar),
# so a machine without package access builds against them:  tools/unpack_bundle.sh BUNDLE PREFIX
set -euo pipefail
bundle=$1
prefix=$2
mkdir -p "$prefix"
shopt -s nullglob
debs=("$bundle"/*.deb)
if [ ${#debs[@]} -eq 0 ]; then
  echo "no bundle in $bundle/: the build uses the system's packages"
  exit 0
fi
for deb in "${debs[@]}"; do
  if command -v dpkg-deb > /dev/null; then
    dpkg-deb -x "$deb" "$prefix"
  else
    tmp=$(mktemp -d)
    (cd "$tmp" && ar x "$(realpath "$deb")")
    for data in "$tmp"/data.tar.*; do tar -xf "$data" -C "$prefix"; done
    rm -rf "$tmp"
  fi
done
echo "unpacked ${#debs[@]} packages of $bundle/ into $prefix"
