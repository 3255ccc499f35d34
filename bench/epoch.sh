#!/usr/bin/env bash
# The whole run, not just the step: one epoch of the ternary VGG (FashionMNIST/config_vgg.json:
# training, validation, checkpoints, then the test with the best weights) by QuantLab and by the
# original QuantLab's algorithm in Python (bench/epoch.py), alternating, ROUNDS each; same threads,
# allocator settings and channels-last layout on both sides. Prints a markdown table of the phases:
# start-up (QuantLab: from launch() to the first epoch; Python: from the script's first line), the
# training and validation passes, the checkpoints (QuantLab: with the status and logs it writes),
# the test, and the rest of the wall time (process start and exit, libraries loaded).
#   bench/epoch.sh [BUILD] [PYTHON]     defaults build-pip and BUILD/venv/bin/python
#   QL_BENCH_ROUNDS=2 QL_BENCH_THREADS=N QL_EPOCH_EPOCHS=1
# Every measurement goes to BUILD/bench-results/epoch.jsonl.
set -euo pipefail
BUILD=${1:-build-pip}
PY=${2:-$BUILD/venv/bin/python}
ROUNDS=${QL_BENCH_ROUNDS:-2}
THREADS=${QL_BENCH_THREADS:-$(nproc)}
EPOCHS=${QL_EPOCH_EPOCHS:-1}
DATA=${QL_EPOCH_DATA:-/usr/share/datasets/fashion-mnist}
OUT=$BUILD/bench-results
mkdir -p "$OUT"
JSONL=$OUT/epoch.jsonl
: > "$JSONL"
SAME_ENV=(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824 OMP_WAIT_POLICY=PASSIVE)
WORK=$(mktemp -d /tmp/ql_epoch.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/home/FashionMNIST"
cp FashionMNIST/config_vgg.json "$WORK/home/FashionMNIST/"

wall_of() { grep 'Elapsed (wall clock)' "$1" | awk '{n = split($NF, a, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + a[i]; print s}'; }

for r in $(seq "$ROUNDS"); do
  log=$WORK/ql_$r.log
  /usr/bin/time -v "$BUILD/quantlab" --home="$WORK/home" --data="$DATA" --problem=FashionMNIST --topology=VGG \
    --config=config_vgg.json --set "treat.max_epoch=$EPOCHS" --ckpt_every=0 --threads "$THREADS" > "$log" 2>&1 ||
    { echo "bench/epoch.sh: quantlab failed (its output: $log)"; cat "$log"; exit 1; }
  line=$(grep '^times: ' "$log")
  acc=$(grep '^test with the weights' "$log" | grep -o 'acc [0-9.]*%' | grep -o '[0-9.]*')
  $PY - "$line" "$(wall_of "$log")" "$acc" "$r" >> "$JSONL" <<'PYEOF'
import json, re, sys
v = [float(x) for x in re.findall(r"([0-9.]+) s", sys.argv[1])]
keys = ["start_up_s", "train_s", "validation_s", "checkpoints_s", "test_s"]
d = dict(zip(keys, v))
d.update({"impl": "quantlab", "wall_s": float(sys.argv[2]), "test_acc": float(sys.argv[3]), "round": int(sys.argv[4])})
print(json.dumps(d))
PYEOF
  plog=$WORK/py_$r.log
  env "${SAME_ENV[@]}" /usr/bin/time -v "$PY" bench/epoch.py FashionMNIST/config_vgg.json --data "$DATA" \
    --epochs "$EPOCHS" --threads "$THREADS" --channels_last --out "$WORK/py_ckpt" > "$plog" 2>&1 ||
    { echo "bench/epoch.sh: bench/epoch.py failed (its output: $plog)"; cat "$plog"; exit 1; }
  $PY - "$(grep '^{' "$plog" | tail -1)" "$(wall_of "$plog")" "$r" >> "$JSONL" <<'PYEOF'
import json, sys
d = json.loads(sys.argv[1])
d.update({"impl": "python", "wall_s": float(sys.argv[2]), "round": int(sys.argv[3])})
print(json.dumps(d))
PYEOF
done

$PY - "$JSONL" "$EPOCHS" "$THREADS" "$("$BUILD/quantlab" --version | sed -n 2p)" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
keys = ["start_up_s", "train_s", "validation_s", "checkpoints_s", "test_s"]
def med(impl, k):
    return statistics.median(r[k] for r in rows if r["impl"] == impl)
def rest(impl):
    return statistics.median(r["wall_s"] - sum(r[k] for k in keys) for r in rows if r["impl"] == impl)
n = len([r for r in rows if r["impl"] == "quantlab"])
print(f"## The ternary VGG's whole run, {sys.argv[2]} epoch(s) (FashionMNIST/config_vgg.json), threads {sys.argv[3]}")
print()
print(f"QuantLab: {sys.argv[4]}; Python: PyTorch {rows[-1]['torch']}, eager, bench/epoch.py (the original's "
      f"algorithm). Seconds, medians of {n} runs, alternating.")
print()
print("| side | start-up | train | validation | checkpoints | test | rest | wall | test acc |")
print("|---|---|---|---|---|---|---|---|---|")
for impl, label in (("quantlab", "QuantLab"), ("python", "PyTorch (Python)")):
    print(f"| {label} | " + " | ".join(f"{med(impl, k):.1f}" for k in keys) +
          f" | {rest(impl):.1f} | {med(impl, 'wall_s'):.1f} | {med(impl, 'test_acc'):.2f} % |")
print()
q, p = med("quantlab", "wall_s"), med("python", "wall_s")
print(f"Whole run: QuantLab {p / q:.2f}x faster (wall time); training passes "
      f"{med('python', 'train_s') / med('quantlab', 'train_s'):.2f}x, evaluation (validation + test) "
      f"{(med('python', 'validation_s') + med('python', 'test_s')) / (med('quantlab', 'validation_s') + med('quantlab', 'test_s')):.2f}x.")
PYEOF
