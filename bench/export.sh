#!/usr/bin/env bash
# Integer export on Fashion-MNIST (docs/EXPORT.md): for each trained experiment, the .qlm model and
# the ONNX model, their sizes against the float weights, the integer runtime's parity with the float
# network on the 10,000 test images, its speed against libtorch's float evaluation on 1 thread and
# on all threads, the ONNX checker and ONNX Runtime's labels against the runtime's (PyPI's onnx and
# onnxruntime, in the build's venv: QL_TOOLS_PYTHON, which `make bench` sets).
#   bench/export.sh [BUILD] [HOME EXP_ID ...]
# Without experiments it trains the demo's ternary MLP (FashionMNIST/config.json) in a temporary
# main folder first; QL_BENCH_VGG_EXPORT=1 trains and exports the ternary VGG too (about an hour).
set -euo pipefail
BUILD=${1:-build}
shift || true
ROOT=$(pwd)
OUT=$ROOT/$BUILD/bench-results
mkdir -p "$OUT"
# The Python with onnx and onnxruntime (make bench: the build's venv).
PY=${QL_TOOLS_PYTHON:-$ROOT/$BUILD/venv/bin/python}
QL=$ROOT/$BUILD/quantlab
pairs=("$@")
if [ ${#pairs[@]} -eq 0 ]; then
  HOME_DIR=$(mktemp -d)
  mkdir -p "$HOME_DIR/FashionMNIST"
  cp FashionMNIST/config.json FashionMNIST/config_vgg.json "$HOME_DIR/FashionMNIST/"
  "$QL" --problem=FashionMNIST --topology=MLP --home="$HOME_DIR" --ckpt_every=0 > "$OUT/export_train_mlp.log" 2>&1
  pairs=("$HOME_DIR" 1)
  if [ "${QL_BENCH_VGG_EXPORT:-0}" = 1 ]; then
    "$QL" --problem=FashionMNIST --topology=VGG --config=config_vgg.json --home="$HOME_DIR" --ckpt_every=0 \
      > "$OUT/export_train_vgg.log" 2>&1
    pairs+=("$HOME_DIR" 2)
  fi
fi
if ! "$PY" -c 'import onnx, onnxruntime' 2> /dev/null; then
  echo "note: $PY has no onnx / onnxruntime; the ONNX checks are skipped (make bench sets up the venv)" >&2
fi
echo
echo "## Integer export (Fashion-MNIST test set, 10,000 images)"
echo "| experiment | model bytes | float weights bytes | smaller | parity with the float network | ONNX checker | ONNX Runtime labels | images/s 1 thread: float / integer | all threads: float / integer |"
echo "|---|---|---|---|---|---|---|---|---|"
while [ ${#pairs[@]} -ge 2 ]; do
  home=${pairs[0]}; id=${pairs[1]}; pairs=("${pairs[@]:2}")
  log=$OUT/export_$id.log
  "$QL" export --problem=FashionMNIST --exp_id="$id" --home="$home" > "$log" 2>&1
  qlm=$(grep -o '^wrote [^:]*' "$log" | cut -c7-)
  what=$(grep '^wrote' "$log" | sed 's/^wrote [^:]*: \([^,]*\),.*/\1/')
  bytes=$(grep '^wrote' "$log" | grep -o '; [0-9]* bytes' | grep -o '[0-9]*')
  floatb=$(grep '^wrote' "$log" | grep -o 'float weights ([0-9]* bytes' | grep -o '[0-9]*')
  ratio=$(grep '^wrote' "$log" | grep -o '[0-9.]*x smaller than the float weights' | cut -d' ' -f1)
  parity=$(grep 'labels agree' "$log" | sed 's/^parity check on the [0-9]* test images... //')
  speed1=$(grep '^images/s' "$log" | sed 's/.*1 thread: float (libtorch) \([0-9]*\), integer \([0-9]*\);.*/\1 \/ \2/')
  speedn=$(grep '^images/s' "$log" | sed 's/.*; \([0-9]*\) threads: float \([0-9]*\), integer \([0-9]*\)/\2 \/ \3 (\1 threads)/')
  onnx=${qlm%.qlm}.onnx
  "$QL" export --problem=FashionMNIST --exp_id="$id" --home="$home" --format=onnx --no_check --out="$onnx" >> "$log" 2>&1
  checker=$("$PY" -c "import onnx,sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True); print('passes')" "$onnx" 2>&1 | tail -1)
  "$QL" infer --model="$qlm" --problem=FashionMNIST --home="$home" --labels="$OUT/labels_$id.txt" >> "$log" 2>&1
  ort=$("$PY" bench/onnx/run_onnx.py "$onnx" /usr/share/datasets/fashion-mnist "$OUT/labels_$id.txt" 2>&1 | tail -1 || true)
  ortagree=$(echo "$ort" | "$PY" -c "import json,sys
try:
    r = json.loads(sys.stdin.read()); print('%d of %d agree (accuracy %.2f%%)' % (r['agree'], r['images'], r['accuracy']))
except Exception as e:
    print('not run')")
  echo "| $what | $bytes | $floatb | ${ratio} | $parity | $checker | $ortagree | $speed1 | $speedn |"
done
