#!/usr/bin/env bash
# QuantLab against its peers on the CPU, in one run: training steps of QuantLab built against
# Debian's libtorch 1.13 (build/) and against PyPI's PyTorch 2.x (build-pip/), beside the same
# networks in Python on Debian's PyTorch 1.13 and on the venv's PyTorch 2.x, eager and with
# torch.compile. Same threads, allocator settings (what quantlab sets for itself, given to Python
# through the environment) and data layout (channels-last convolutions) on every side; medians of
# ROUNDS runs, alternating.
#   bench/peers.sh [DEBIAN_BUILD] [PIP_BUILD]     defaults build build-pip
#   QL_BENCH_ROUNDS=3 QL_BENCH_THREADS=N QL_BENCH_STEPS=10 QL_PEERS_NETS="mlp vgg025 vgg1 alexnet"
#   QL_PEERS_AMP=1 (also --amp, bf16 products, on every side)
#   QL_PEERS_PHASES=0 (skip the second table: after the timed rounds, one run per 2.x side with
#   --phases, the step's time by kind of operation, bench/op_times.h)
# Prints markdown tables; every measurement goes to PIP_BUILD/bench-results/peers.jsonl.
set -uo pipefail
DEB=${1:-build}
PIP=${2:-build-pip}
ROUNDS=${QL_BENCH_ROUNDS:-3}
THREADS=${QL_BENCH_THREADS:-$(nproc)}
STEPS=${QL_BENCH_STEPS:-10}
NETS=${QL_PEERS_NETS:-mlp vgg025 vgg1 alexnet}
OUT=$PIP/bench-results
mkdir -p "$OUT"
JSONL=$OUT/peers.jsonl
: > "$JSONL"
PY1=/usr/bin/python3
PY2=$PIP/venv/bin/python
SAME_ENV=(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824 OMP_WAIT_POLICY=PASSIVE)
# QuantLab sets OPENBLAS_CORETYPE itself when it is unset; the Python peers on Debian's OpenBLAS do
# not: with it unset, both sides keep OpenBLAS's own choice (run with it set to compare SkylakeX).
[ -z "${OPENBLAS_CORETYPE+x}" ] && export QL_KEEP_OPENBLAS_CORETYPE=1
CFG=$OUT/peer_configs
mkdir -p "$CFG"
$PY2 - "$CFG" <<'PYEOF'
import json, sys
d = sys.argv[1]
json.dump(json.load(open("FashionMNIST/config.json")), open(f"{d}/mlp.json", "w"))
v = json.load(open("FashionMNIST/config_vgg.json"))
v["indiv"]["net"]["params"]["in_channels"] = 3
json.dump(v, open(f"{d}/vgg.json", "w"))
json.dump(json.load(open("ImageNet/config.json")), open(f"{d}/alexnet.json", "w"))
PYEOF
median() { sort -g | awk '{a[NR]=$1} END {if (NR) print a[int((NR+1)/2)]; else print "nan"}'; }
field() { $PY2 -c "import json,sys
for l in sys.stdin:
    l = l.strip()
    if l.startswith('{'): print(json.loads(l)['$1'])"; }

# name: config capacity batch input pynet classes
spec() {
  case $1 in
    mlp) echo "mlp 1 256 1x28x28 mlp 10" ;;
    vgg025) echo "vgg 0.25 64 3x32x32 vgg 10" ;;
    vgg1) echo "vgg 1 64 3x32x32 vgg 10" ;;
    alexnet) echo "alexnet 1 32 3x227x227 alexnet 1000" ;;
  esac
}
amps=("")
[ "${QL_PEERS_AMP:-0}" = 1 ] && amps+=("--amp")

echo "## Training steps on the CPU: QuantLab on libtorch 1.13 and 2.x, PyTorch 1.13 and 2.x from Python"
echo
echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, threads $THREADS;" \
  "flags: $(grep -o -w -E 'avx512f|avx512_vnni|avx512_bf16|amx_bf16|amx_tile' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "QuantLab: $("$DEB/quantlab" --version | sed -n 2p) / $("$PIP/quantlab" --version | sed -n 2p);" \
  "Python: PyTorch $($PY1 -c 'import torch; print(torch.__version__)') / $($PY2 -c 'import torch; print(torch.__version__)')."
echo "Seconds per step, median of $ROUNDS runs of $STEPS steps; ratios are the peer's time over QuantLab 2.x's."
echo
echo "| network | batch | precision | QuantLab 1.13 | QuantLab 2.x | PyTorch 1.13 | PyTorch 2.x eager | PyTorch 2.x compile | vs 2.x eager | vs 2.x compile |"
echo "|---|---|---|---|---|---|---|---|---|---|"
# One side's run: its JSON line (empty when it failed). run_side SIDE TAG [EXTRA FLAGS...]
run_side() {
  local side=$1 tag=$2
  shift 2
  case $side in
    ql1) "$DEB/bench/train_step" "$CFG/$cfg.json" --capacity "$cap" --batch "$batch" --input "$input" \
           --classes "$classes" --steps "$STEPS" --threads "$THREADS" "$@" 2>/dev/null | tail -1 ;;
    ql2) "$PIP/bench/train_step" "$CFG/$cfg.json" --capacity "$cap" --batch "$batch" --input "$input" \
           --classes "$classes" --steps "$STEPS" --threads "$THREADS" "$@" 2>/dev/null | tail -1 ;;
    py1) env "${SAME_ENV[@]}" $PY1 bench/train_step.py --net "$pynet" --capacity "$cap" --batch "$batch" "${layout[@]}" \
           --input "$input" --steps "$STEPS" --threads "$THREADS" "$@" 2>/dev/null | tail -1 ;;
    py2) env "${SAME_ENV[@]}" $PY2 bench/train_step.py --net "$pynet" --capacity "$cap" --batch "$batch" "${layout[@]}" \
           "${fused[@]}" --input "$input" --steps "$STEPS" --threads "$THREADS" "$@" 2>/dev/null | tail -1 ;;
    py2c) env "${SAME_ENV[@]}" $PY2 bench/train_step.py --net "$pynet" --capacity "$cap" --batch "$batch" "${layout[@]}" \
           "${fused[@]}" --input "$input" --steps "$STEPS" --warmup 5 --threads "$THREADS" --compile "$@" \
           2>"$OUT/compile_$tag.log" | tail -1 ;;
  esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "nan" || b == "nan") print "n/a"; else printf "%.2fx", a / b }'; }
fmt() { awk -v a="$1" 'BEGIN { if (a == "nan") print "did not run"; else printf "%.3f", a }'; }
PHASE_ROWS=()
for name in $NETS; do
  read -r cfg cap batch input pynet classes <<< "$(spec "$name")"
  # QuantLab runs convolutional networks channels-last on the CPU: the Python sides too.
  layout=()
  [ "$pynet" != mlp ] && layout=(--channels_last)
  # QuantLab's Adam is one pass per parameter: PyTorch 2.x's fused Adam on its sides.
  fused=(--fused_adam)
  for amp in "${amps[@]}"; do
    tag="${name}${amp:+_amp}"
    for r in $(seq "$ROUNDS"); do
      for side in ql1 ql2 py1 py2 py2c; do
        line=$(run_side $side "$tag" $amp)
        if [ "${line:0:1}" = "{" ]; then
          echo "{\"net\": \"$tag\", \"side\": \"$side\", \"round\": $r, \"result\": $line}" >> "$JSONL"
        fi
      done
    done
    get() { grep "\"net\": \"$tag\", \"side\": \"$1\", \"round\": [0-9]" "$JSONL" | $PY2 -c "import json,sys
for l in sys.stdin: print(json.loads(l)['result']['step_s'])" | median; }
    q1=$(get ql1); q2=$(get ql2); p1=$(get py1); p2=$(get py2); p2c=$(get py2c)
    prec=$([ -n "$amp" ] && echo "bf16 products" || echo float32)
    echo "| $name | $batch | $prec | $(fmt "$q1") | $(fmt "$q2") | $(fmt "$p1") | $(fmt "$p2") | $(fmt "$p2c") | $(ratio "$p2" "$q2") | $(ratio "$p2c" "$q2") |"
    if [ "${QL_PEERS_PHASES:-1}" = 1 ]; then
      # Where each 2.x side's step goes, counted in one more run each (the profiling costs a little).
      for side in ql2 py2 py2c; do
        line=$(run_side $side "${tag}_phases" $amp --phases)
        if [ "${line:0:1}" = "{" ]; then
          echo "{\"net\": \"$tag\", \"side\": \"$side\", \"phases\": true, \"result\": $line}" >> "$JSONL"
          PHASE_ROWS+=("$($PY2 -c "import json,sys
r = json.loads(sys.argv[1])
f = lambda k: '-' if r.get(k) is None else '%.3f' % r[k]
share = '%.2fx' % (r['phases_step_s'] / r['products_s']) if r.get('products_s') else '-'
print(' | '.join([sys.argv[2], sys.argv[3], sys.argv[4], f('phases_step_s'), f('products_s'), f('ana_s'),
                  f('batch_norm_s'), f('phases_optimizer_s'), f('other_s'), share]))" "$line" "$name" "$prec" "$side")")
        fi
      done
    fi
  done
done
if [ ${#PHASE_ROWS[@]} -gt 0 ]; then
  echo
  echo "Where the step goes (--phases: one more run per side, seconds per step counted by kind of operation;"
  echo "compiled, ANA and batch norm are inside the compiled kernels and count in the rest; on the compiled side,"
  echo "step / products is the most that an implementation running the same products could be ahead of it):"
  echo
  echo "| network | precision | side | step | products | ANA | batch norm | optimizer | the rest | step / products |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
  for row in "${PHASE_ROWS[@]}"; do echo "| $row |"; done
fi
