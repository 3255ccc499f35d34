#!/usr/bin/env bash
# make bench: speed and memory of QuantLab against the Python PyTorch equivalent on this machine,
# then the Fashion-MNIST accuracy runs. Results: BUILD/bench-results/*.jsonl and summary.md.
#   bench/run_all.sh [BUILD]        QL_BENCH_ROUNDS=3  QL_BENCH_THREADS=N
#                                   QL_BENCH_SKIP_ACCURACY=1  QL_BENCH_SKIP_VGG1=1 (the slow VGG step)
#                                   QL_BENCH_SKIP_IMAGES=1 (the ImageNet pipeline)  QL_BENCH_VGG_ACCURACY=1
#                                   QL_BENCH_SKIP_DIST=1 (the data-parallel costs)  QL_BENCH_SKIP_EXPORT=1
#                                   QL_BENCH_SKIP_EPOCH=1 (the ternary VGG's whole epoch, bench/epoch.sh)
#                                   QL_BENCH_VGG_EXPORT=1 (train and export the ternary VGG too)
#                                   QL_BENCH_PYTHON=PY (the Python side's interpreter: Debian's
#                                   /usr/bin/python3 with PyTorch 1.13 by default)
# OpenBLAS picks its kernels from OPENBLAS_CORETYPE: every speed figure is measured with the
# environment's setting and, when the CPU has AVX-512 / AVX2, with SkylakeX / Haswell too. QuantLab
# sets OPENBLAS_CORETYPE itself when it is unset: the "unset" rows keep OpenBLAS's own choice on both
# sides (QL_KEEP_OPENBLAS_CORETYPE=1).
set -euo pipefail
BUILD=${1:-build}
OUT=$BUILD/bench-results
# The Python side: Debian's PyTorch 1.13 by default; make bench TORCH=pip sets the venv's 2.x.
PY=${QL_BENCH_PYTHON:-/usr/bin/python3}
ROUNDS=${QL_BENCH_ROUNDS:-3}
THREADS=${QL_BENCH_THREADS:-$(nproc)}
# What quantlab sets for itself (mallopt at start-up, OMP_WAIT_POLICY by re-exec), given to Python
# through the environment for the "same settings" runs.
SAME_ENV=(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824 OMP_WAIT_POLICY=PASSIVE)
mkdir -p "$OUT"
SUMMARY=$OUT/summary.md

env_label=${OPENBLAS_CORETYPE-unset}
settings=("env")
grep -q avx512f /proc/cpuinfo && settings+=("SkylakeX")
! grep -q avx512f /proc/cpuinfo && grep -q avx2 /proc/cpuinfo && settings+=("Haswell")

coretype_env() {  # prints the env assignment for a setting
  if [ "$1" = env ]; then
    if [ -n "${OPENBLAS_CORETYPE+x}" ]; then echo "OPENBLAS_CORETYPE=$OPENBLAS_CORETYPE"; else echo "QL_CORETYPE_UNSET=1"; fi
  else echo "OPENBLAS_CORETYPE=$1"; fi
}
run_with() { local ct; ct=$(coretype_env "$1"); shift; if [ "$ct" = QL_CORETYPE_UNSET=1 ]; then env -u OPENBLAS_CORETYPE QL_KEEP_OPENBLAS_CORETYPE=1 "$@"; else env "$ct" "$@"; fi; }
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
field() { $PY -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"; }

{
  echo "# QuantLab benchmarks ($(date -u +%Y-%m-%d))"
  echo
  echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; threads: $THREADS;"
  echo "OPENBLAS_CORETYPE in the environment: $env_label; QuantLab's libtorch: $("$BUILD/quantlab" --version | sed -n 2p); Python side: PyTorch $($PY -c 'import torch; print(torch.__version__)')."
  echo
} > "$SUMMARY"

# Matrix-multiply rate (n = 4096) for each OpenBLAS setting.
cat > "$OUT/sgemm.py" <<'PYEOF'
import sys, time, torch
torch.set_num_threads(int(sys.argv[1]))
a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
a @ b
t = time.perf_counter(); n = 3
for _ in range(n): a @ b
print(2 * 4096 ** 3 / ((time.perf_counter() - t) / n) / 1e9)
PYEOF
echo "## sgemm, n = 4096 (GFLOP/s)" >> "$SUMMARY"
for s in "${settings[@]}"; do
  core=$(run_with "$s" env OPENBLAS_VERBOSE=2 $PY "$OUT/sgemm.py" "$THREADS" 2>&1 | grep -m1 Core || true)
  rate=$(run_with "$s" $PY "$OUT/sgemm.py" "$THREADS")
  echo "- OPENBLAS_CORETYPE=$( [ "$s" = env ] && echo "$env_label" || echo "$s") ($core): $(printf %.0f "$rate")" | tee -a "$SUMMARY"
done

# Training steps: C++ (bench/train_step) vs Python (bench/train_step.py), alternating, ROUNDS each.
#   step_table NAME CONFIG INPUT CAPACITY BATCH PYNET GFLOP_PER_STEP
step_table() {
  local name=$1 cfg=$2 input=$3 cap=$4 batch=$5 pynet=$6 gflop=$7
  echo >> "$SUMMARY"
  echo "## $name training step, capacity $cap, batch $batch ($gflop GFLOP/step; median s/step over $ROUNDS runs)" >> "$SUMMARY"
  echo "| OPENBLAS_CORETYPE | C++ | Python, same settings | Python, defaults | speed-up (same) | speed-up (defaults) | C++ GFLOP/s | peak MiB C++ / Py same / Py defaults |" >> "$SUMMARY"
  echo "|---|---|---|---|---|---|---|---|" >> "$SUMMARY"
  for s in "${settings[@]}"; do
    local out=$OUT/${name}_${cap}_$s.jsonl
    : > "$out"
    for r in $(seq "$ROUNDS"); do
      run_with "$s" "$BUILD/bench/train_step" "$cfg" --input "$input" --capacity "$cap" --batch "$batch" --steps 10 --threads "$THREADS" | tail -1 >> "$out"
      run_with "$s" env "${SAME_ENV[@]}" $PY bench/train_step.py --net "$pynet" --capacity "$cap" --batch "$batch" --steps 10 --threads "$THREADS" | sed 's/"python"/"python_same"/' >> "$out"
      run_with "$s" $PY bench/train_step.py --net "$pynet" --capacity "$cap" --batch "$batch" --steps 10 --threads "$THREADS" | sed 's/"python"/"python_default"/' >> "$out"
    done
    get() { grep "\"impl\": \"$1\"" "$out" | while read -r l; do echo "$l" | field "$2"; done | median; }
    local c ps pd mc ms md label
    c=$(get cpp step_s); ps=$(get python_same step_s); pd=$(get python_default step_s)
    mc=$(get cpp peak_rss_mib); ms=$(get python_same peak_rss_mib); md=$(get python_default peak_rss_mib)
    label=$( [ "$s" = env ] && echo "$env_label" || echo "$s")
    printf '| %s | %.3f | %.3f | %.3f | %.2fx | %.2fx | %.0f | %.0f / %.0f / %.0f |\n' "$label" "$c" "$ps" "$pd" \
      "$(awk "BEGIN{print $ps / $c}")" "$(awk "BEGIN{print $pd / $c}")" "$(awk "BEGIN{print $gflop / $c}")" \
      "$mc" "$ms" "$md" | tee -a "$SUMMARY"
  done
}

# Configs at the sizes the comparisons use, derived from the shipped ones.
MLP_CFG=$OUT/mlp.json
VGG_CFG=$OUT/vgg_rgb.json
$PY - "$MLP_CFG" "$VGG_CFG" <<'PYEOF'
import json, sys
json.dump(json.load(open("FashionMNIST/config.json")), open(sys.argv[1], "w"))
v = json.load(open("FashionMNIST/config_vgg.json"))
v["indiv"]["net"]["params"]["in_channels"] = 3
json.dump(v, open(sys.argv[2], "w"))
PYEOF
# FLOP of a training step: forward multiply-adds x 2, backward twice the forward (weights and inputs).
flops() {
  $PY - "$@" <<'PYEOF'
import sys
net, cap, batch = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
if net == "mlp":
    h = int(2048 * cap); macs = 784 * h + 2 * h * h + h * 10
else:
    c = [3] + [int(128 * cap)] * 2 + [int(256 * cap)] * 2 + [int(512 * cap)] * 2
    size = [32, 32, 16, 16, 8, 8]
    macs = sum(c[k] * c[k + 1] * 9 * size[k] ** 2 for k in range(6)) + c[6] * 16 * 1024 + 1024 * 1024 + 1024 * 10
print(round(3 * 2 * macs * batch / 1e9, 1))
PYEOF
}
step_table MLP "$MLP_CFG" 1x28x28 1 256 mlp "$(flops mlp 1 256)"
step_table VGG "$VGG_CFG" 3x32x32 0.25 64 vgg "$(flops vgg 0.25 64)"
[ -z "${QL_BENCH_SKIP_VGG1:-}" ] && step_table VGG "$VGG_CFG" 3x32x32 1 64 vgg "$(flops vgg 1 64)"

# The ANA operator alone: fused kernel vs tensor ops, 2^22 elements, forward + backward.
echo >> "$SUMMARY"
echo "## ANA operator, 2^22 elements, forward + backward (uniform noise)" >> "$SUMMARY"
echo "| levels | fused ms | tensor-op ms | speed-up | fused extra MiB | tensor-op extra MiB |" >> "$SUMMARY"
echo "|---|---|---|---|---|---|" >> "$SUMMARY"
for levels in 3 7 15; do
  f=$("$BUILD/bench/ana_op" --impl fused --levels $levels --threads "$THREADS" | field fwd_bwd_ms)
  t=$("$BUILD/bench/ana_op" --impl tensor_ops --levels $levels --threads "$THREADS" | field fwd_bwd_ms)
  fm=$("$BUILD/bench/ana_op" --impl fused --levels $levels --threads "$THREADS" --memory | field extra_peak_mib)
  tm=$("$BUILD/bench/ana_op" --impl tensor_ops --levels $levels --threads "$THREADS" --memory | field extra_peak_mib)
  printf '| %d | %.1f | %.1f | %.1fx | %.0f | %.0f |\n' $levels "$f" "$t" "$(awk "BEGIN{print $t / $f}")" "$fm" "$tm" | tee -a "$SUMMARY"
done

if [ -z "${QL_BENCH_SKIP_IMAGES:-}" ]; then
  bench/image_pipeline.sh "$BUILD" | tee -a "$SUMMARY"
fi

if [ -z "${QL_BENCH_SKIP_DIST:-}" ]; then
  echo "## Data parallel: Gloo all-reduce per step and an MLP epoch, 1 x 2 threads vs 2 x 1 (docs/DISTRIBUTED.md)" >> "$SUMMARY"
  bench/distributed.sh "$BUILD" | tee -a "$SUMMARY"
fi

if [ -z "${QL_BENCH_SKIP_EPOCH:-}" ]; then
  bench/epoch.sh "$BUILD" "$PY" | tee -a "$SUMMARY"
fi

if [ -z "${QL_BENCH_SKIP_EXPORT:-}" ]; then
  bench/export.sh "$BUILD" | tee -a "$SUMMARY"
fi

if [ -z "${QL_BENCH_SKIP_ACCURACY:-}" ]; then
  bench/accuracy.sh "$BUILD" | tee -a "$SUMMARY"
fi
echo "written: $SUMMARY"
