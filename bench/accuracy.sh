#!/usr/bin/env bash
# Fashion-MNIST accuracy of the shipped configs, with wall time and peak memory:
#   bench/accuracy.sh [BUILD] [TOPOLOGY:CONFIG ...]
# prints a markdown section (run_all.sh appends it to its summary). Without pairs it runs the two
# MLP configs; QL_BENCH_VGG_ACCURACY=1 adds the two VGG configs (about an hour more on 2 cores).
# Each run trains from scratch with `quantlab` and reports the test accuracy of the weights of the
# best validation epoch. QL_BENCH_AMP=1: every run with --amp (bfloat16 products).
set -euo pipefail
BUILD=${1:-build}
shift || true
OUT=$BUILD/bench-results
mkdir -p "$OUT"
runs=("$@")
amp=()
[ "${QL_BENCH_AMP:-0}" = 1 ] && amp=(--amp)
if [ ${#runs[@]} -eq 0 ]; then
  runs=(MLP:config.json MLP:config_baseline.json)
  if [ "${QL_BENCH_VGG_ACCURACY:-0}" = 1 ]; then runs+=(VGG:config_vgg.json VGG:config_vgg_baseline.json); fi
fi
echo
echo "## Fashion-MNIST accuracy (test set, weights of the best validation epoch)"
echo "| config | network | epochs | test accuracy | best epoch | wall time | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for run in "${runs[@]}"; do
  topo=${run%%:*}
  cfg=${run#*:}
  log=$OUT/accuracy_${cfg%.json}${amp:+_amp}.log
  /usr/bin/time -v "$BUILD/quantlab" --problem=FashionMNIST --topology="$topo" --config="$cfg" --ckpt_every=0 "${amp[@]}" > "$log" 2>&1
  acc=$(grep '^test with the weights' "$log" | grep -o 'acc [0-9.]*%' | grep -o '[0-9.]*%')
  best=$(grep '^test with the weights' "$log" | sed 's/.*best epoch (\([0-9]*\),.*/\1/')
  epochs=$(grep -c '^epoch [0-9]*/[0-9]* | train' "$log")
  wall=$(grep 'Elapsed (wall clock)' "$log" | awk '{print $NF}')
  rss=$(grep 'Maximum resident' "$log" | awk '{printf "%.0f", $NF / 1024}')
  net=$(python3 -c "import json; c=json.load(open('FashionMNIST/$cfg')); n=c['indiv']['net']; print(n['class'], 'capacity', n['params'].get('capacity', 1))")
  echo "| FashionMNIST/$cfg${amp:+ --amp} | $net | $epochs | $acc | $best | $wall | $rss |"
done
