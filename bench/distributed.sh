#!/usr/bin/env bash
# The cost of data-parallel training on this machine (docs/DISTRIBUTED.md):
#   1. the all-reduce of one step's gradients of MLP, VGG and AlexNet (capacity 1) between 2
#      processes with Gloo over the loopback interface (bench/allreduce);
#   2. one Fashion-MNIST epoch of the demo's MLP: 1 process x 2 threads against 2 processes x 1 thread.
#   bench/distributed.sh [BUILD]     writes BUILD/bench-results/distributed.jsonl
set -euo pipefail
BUILD=${1:-build}
OUT=$BUILD/bench-results
mkdir -p "$OUT"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
PY=python3
$PY - "$TMP" <<'PYEOF'
import json, sys
tmp = sys.argv[1]
def with_capacity(src, dst, **kw):
    c = json.load(open(src))
    c["indiv"]["net"]["params"].update(kw)
    json.dump(c, open(dst, "w"))
with_capacity("FashionMNIST/config.json", tmp + "/mlp.json", capacity=1)
with_capacity("FashionMNIST/config_vgg.json", tmp + "/vgg.json", capacity=1, in_channels=3)
with_capacity("ImageNet/config.json", tmp + "/alexnet.json", capacity=1)
c = json.load(open("FashionMNIST/config.json")); c["treat"]["max_epoch"] = 1
import os; os.makedirs(tmp + "/home/FashionMNIST"); json.dump(c, open(tmp + "/home/FashionMNIST/config.json", "w"))
PYEOF
: > "$OUT/distributed.jsonl"
for t in "mlp MLP" "vgg VGG" "alexnet AlexNet"; do
  set -- $t
  "$BUILD/bench/allreduce" --config "$TMP/$1.json" --topology "$2" --steps 20 | tee -a "$OUT/distributed.jsonl"
done
epoch_seconds() {  # wall time of a one-epoch launch (load, train, validate, test)
  local t0 t1
  t0=$(date +%s.%N)
  "$BUILD/quantlab" --problem=FashionMNIST --topology=MLP --home="$TMP/home" "$@" > "$TMP/log" 2>&1
  t1=$(date +%s.%N)
  python3 -c "print(round($t1 - $t0, 2))"
}
for round in 1 2 3; do
  a=$(epoch_seconds --threads=2)
  b=$(epoch_seconds --nproc=2 --threads=1)
  echo "{\"run\": \"one MLP epoch, whole launch\", \"round\": $round, \"1x2_s\": $a, \"2x1_s\": $b}" | tee -a "$OUT/distributed.jsonl"
done
