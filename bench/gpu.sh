#!/usr/bin/env bash
# Everything the GPU needs checking and measuring (docs/GPU.md), on a fresh GPU machine in one go:
#   bench/gpu.sh [--dry-run] [BUILD]   default BUILD=build-gpu; results in BUILD/bench-results/gpu.md
#                                      and gpu.jsonl (every measurement, one JSON object a line)
# --dry-run: on a machine without a GPU (CI), every stage with the same binaries, flags and result
# parsing on the CPU at toy sizes, against the PyTorch 2.x build of `make build TORCH=pip` (default
# BUILD=build-pip): whoever gets a GPU machine then only has to run the script.
# Environment: QL_GPU_STEPS (timed steps, 20), QL_GPU_DEMO_EPOCHS (the demo's epochs; default the
# config's), QL_GPU_SKIP_BUILD=1, QL_GPU_SKIP_DEMO=1,
# QL_GPU_SKIP_PIPELINE=1, PYTHON (the python3 that holds the CUDA PyTorch).
#  1. build against that PyTorch's libtorch (make build TORCH=python), the other packages from
#     bundle/ (make bundle, on a machine with Debian's archive) when the machine has none
#  2. the GPU tests: test_cuda (every topology, host synchronisations, GPU <-> CPU checkpoints,
#     deterministic resume), the CUDA kernel against the CPU kernel (test_ana_operator) and NCCL's
#     collectives on host tensors (test_dist_backends)
#  3. the ANA kernel alone on 2^24 elements against a device-to-device copy of the same tensor
#  4. the Fashion-MNIST demo config trained in float32 and with --amp (test accuracy, epoch time)
#  5. a 1-rank NCCL run (torchrun's variables) that trains an epoch and checkpoints
#  6. the ImageNet pipeline on a generated JPEG tree: decoding rate with every core, and the data
#     wait of an AlexNet epoch on the GPU
#  7. training steps, QuantLab against PyTorch from Python on the same GPU in the same run: same
#     networks, batch, precision, cuDNN benchmark mode on both; float32 and --amp; channels-last
#     for the convolutional networks on both (last: the longest stage, so that a lease cut short
#     still has the checks above)
# Every stage runs on when an earlier one fails; the summary says which failed.
set -uo pipefail
DRY=0
if [ "${1:-}" = --dry-run ]; then
  DRY=1
  shift
fi
if [ $DRY = 1 ]; then
  BUILD=${1:-build-pip}
  DEV=cpu
  PY=${PYTHON:-$BUILD/venv/bin/python}
  STEPS=${QL_GPU_STEPS:-1}  # one timed step after one warm-up: the dry run checks, it does not measure
  WARMUP=1
  N=65536
  BATCH_SMALL=8  # every step's batch at toy size
  IMAGES=200  # every class gets validation pictures from the 100th on
  EPOCHS=1
  BUILD_CMD=(make build TORCH=pip BUILD="$BUILD")
else
  BUILD=${1:-build-gpu}
  DEV=cuda
  PY=${PYTHON:-python3}
  STEPS=${QL_GPU_STEPS:-20}
  WARMUP=5
  N=16777216
  BATCH_SMALL=
  IMAGES=2560  # 30 timed batches of 64 need about 2000 training pictures; about 2 minutes to write there
  EPOCHS=${QL_GPU_DEMO_EPOCHS:-}
  BUILD_CMD=(make build TORCH=python PYTHON="$PY" BUILD="$BUILD")
fi
OUT=$BUILD/bench-results
mkdir -p "$OUT"
JSONL=$OUT/gpu.jsonl
SUMMARY=$OUT/gpu.md
LOG=$OUT/gpu.log
: > "$JSONL"
: > "$LOG"
T0=$(date +%s)
failed=()
stage() { echo "== $* ($(($(date +%s) - T0)) s)" | tee -a "$LOG"; }
record() { grep '^{' | tail -1 >> "$JSONL"; }

{
  echo "# QuantLab on the GPU ($(date -u +%Y-%m-%d))"
  echo
  echo "- GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo unknown)"
  echo "- CUDA: $(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'no nvcc')"
  echo "- PyTorch: $($PY -c 'import torch; print(torch.__version__, "cuDNN", torch.backends.cudnn.version())' 2>/dev/null)"
  echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
  echo "- command: bench/gpu.sh $([ $DRY = 1 ] && echo '--dry-run ')$BUILD"
  [ $DRY = 1 ] && echo "- DRY RUN on the CPU at toy sizes: checks the script, measures nothing"
  echo
} > "$SUMMARY"

# 1. Build.
if [ "${QL_GPU_SKIP_BUILD:-0}" != 1 ]; then
  stage "build"
  if ! "${BUILD_CMD[@]}" >> "$LOG" 2>&1; then
    failed+=("build")
    echo "build failed: the end of $LOG says why" | tee -a "$SUMMARY"
    tail -40 "$LOG"
    exit 1
  fi
fi
LD_LIBRARY_PATH=$(pwd)/$BUILD/prefix/usr/lib/x86_64-linux-gnu:$(pwd)/$BUILD/prefix/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
export LD_LIBRARY_PATH
QL=$BUILD/quantlab
DATA=$BUILD/prefix/usr/share/datasets/fashion-mnist
[ -d "$DATA" ] || DATA=/usr/share/datasets/fashion-mnist
echo "Build: $(($(date +%s) - T0)) s." >> "$SUMMARY"

# 2. Tests.
stage "GPU tests"
{
  echo
  echo "## GPU tests"
  echo '```'
  "$BUILD/tests/test_cuda" 2>&1 | grep -E '^\[ *(OK|FAILED|SKIPPED|PASSED) *\]|host synchronisations' || true
  "$BUILD/tests/test_ana_operator" --gtest_filter='*Cuda*' 2>&1 | grep -E '^\[ *(OK|FAILED|SKIPPED) *\]' || true
  "$BUILD/tests/test_dist_backends" --gtest_filter='*Nccl*' 2>&1 | grep -E '^\[ *(OK|FAILED|SKIPPED) *\]' || true
  echo '```'
} >> "$SUMMARY" 2>&1
grep -q FAILED "$SUMMARY" && failed+=("tests")

# 3. The ANA kernel alone.
stage "ANA kernel"
{
  echo
  echo "## The ANA operator alone, $N elements (forward: 8 bytes per element, backward: 12)"
  echo "| implementation | levels | forward µs | backward µs | forward GB/s | backward GB/s | copy GB/s | forward / copy rate |"
  echo "|---|---|---|---|---|---|---|---|"
} >> "$SUMMARY"
for impl in fused tensor_ops; do
  for levels in 3 15; do
    line=$("$BUILD/bench/ana_op" --device $DEV --impl $impl --levels $levels --n $N --reps 50 2>>"$LOG" | tail -1)
    echo "$line" | record
    # The CPU (dry run) prints forward + backward together and no copy rate.
    echo "$line" | $PY -c "
import json, sys
r = json.loads(sys.stdin.read())
if 'forward_us' in r:
    print('| %s | %d | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f %% |' % (r['impl'], r['levels'], r['forward_us'], r['backward_us'],
          r['forward_gbps'], r['backward_gbps'], r['copy_gbps'], 100 * r['forward_of_copy']))
else:
    print('| %s | %d | forward + backward %.1f ms on the CPU | | | | | |' % (r['impl'], r['levels'], r['fwd_bwd_ms']))
" >> "$SUMMARY" 2>>"$LOG" || failed+=("ana_op $impl $levels")
  done
done

# A shipped config into a fresh main folder: copy_config SRC DEST [EPOCHS] [BS_TRAIN]
copy_config() {
  $PY - "$@" <<'PYEOF'
import json, sys
c = json.load(open(sys.argv[1]))
if len(sys.argv) > 3 and sys.argv[3]:
    c["treat"]["max_epoch"] = int(sys.argv[3])
if len(sys.argv) > 4 and sys.argv[4]:
    c["treat"]["data"]["bs_train"] = c["treat"]["data"]["bs_valid"] = int(sys.argv[4])
json.dump(c, open(sys.argv[2], "w"))
PYEOF
}

# 4. The Fashion-MNIST demo, float32 and --amp.
if [ "${QL_GPU_SKIP_DEMO:-0}" != 1 ]; then
  stage "demo accuracy"
  {
    echo
    echo "## Fashion-MNIST demo config (ternary MLP, FashionMNIST/config.json${EPOCHS:+, $EPOCHS epochs}) on $DEV"
    echo "| precision | test accuracy | wall time |"
    echo "|---|---|---|"
  } >> "$SUMMARY"
  for amp in "" "--amp"; do
    home=$(mktemp -d)
    mkdir -p "$home/FashionMNIST"
    copy_config FashionMNIST/config.json "$home/FashionMNIST/config.json" "$EPOCHS"
    t=$(date +%s.%N)
    "$QL" --problem=FashionMNIST --topology=MLP --home="$home" --data="$DATA" --device=$DEV --ckpt_every=0 $amp \
      > "$OUT/demo${amp:+_amp}.log" 2>&1 || failed+=("demo $amp")
    t=$(awk "BEGIN{print $(date +%s.%N) - $t}")
    acc=$(grep -o 'test with the weights.*acc [0-9.]*%' "$OUT/demo${amp:+_amp}.log" | grep -o 'acc [0-9.]*%' | tail -1)
    [ -n "$acc" ] || failed+=("demo $amp: no test accuracy")
    echo "{\"demo\": \"${amp:-fp32}\", \"test\": \"$acc\", \"wall_s\": $t}" >> "$JSONL"
    printf '| %s | %s | %.0f s |\n' "${amp:-float32}" "${acc#acc }" "$t" >> "$SUMMARY"
    rm -rf "$home"
  done
fi

# 5. A 1-rank data-parallel run as torchrun starts it: NCCL on the GPU (Gloo in the dry run).
stage "1-rank NCCL run"
home=$(mktemp -d)
mkdir -p "$home/FashionMNIST"
copy_config FashionMNIST/config.json "$home/FashionMNIST/config.json" 1
QUANTLAB_DIST=1 RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 LOCAL_WORLD_SIZE=1 MASTER_ADDR=127.0.0.1 MASTER_PORT=$((29600 + RANDOM % 300)) \
  "$QL" --problem=FashionMNIST --topology=MLP --home="$home" --data="$DATA" --device=$DEV \
  > "$OUT/nccl_1rank.log" 2>&1 || failed+=("1-rank NCCL run")
backend=$(grep -o 'rank 0 of 1 ([a-z]*' "$OUT/nccl_1rank.log" | grep -o '[a-z]*$' || true)
ckpt=$([ -f "$home/FashionMNIST/logs/exp001/saves/last.ckpt" ] && echo yes || echo no)
[ "$ckpt" = yes ] || failed+=("1-rank NCCL run: no checkpoint")
{
  echo
  echo "## A 1-rank data-parallel run (torchrun's variables) on $DEV"
  echo "- backend: ${backend:-none named}; checkpoint written: $ckpt; $(grep -m1 'epoch 1/1 |' "$OUT/nccl_1rank.log" || echo 'no epoch line')"
} >> "$SUMMARY"
rm -rf "$home"

# 6. The ImageNet pipeline against the GPU's appetite.
if [ "${QL_GPU_SKIP_PIPELINE:-0}" != 1 ]; then
  stage "ImageNet pipeline"
  TREE=$OUT/imagetree
  [ -d "$TREE/train" ] || "$BUILD/bench/image_pipeline" --generate "$TREE" --count $IMAGES >> "$LOG" 2>&1
  rate=$("$BUILD/bench/image_pipeline" "$TREE" --workers "$(nproc)" --augment original --batches $([ $DRY = 1 ] && echo 2 || echo 30) 2>>"$LOG" | tail -1)
  echo "$rate" | record
  home=$(mktemp -d)
  mkdir -p "$home/ImageNet"
  copy_config ImageNet/config.json "$home/ImageNet/config.json" 1 "$BATCH_SMALL"
  "$QL" --problem=ImageNet --topology=AlexNet --home="$home" --data="$TREE" --device=$DEV --ckpt_every=0 \
    > "$OUT/alexnet_epoch.log" 2>&1 || failed+=("AlexNet epoch")
  wait_line=$(grep -m1 'epoch 1/1 |' "$OUT/alexnet_epoch.log" || true)
  [ -n "$wait_line" ] || failed+=("AlexNet epoch: no epoch line")
  rm -rf "$home"
  {
    echo
    echo "## ImageNet pipeline ($(nproc) decoding workers, training transforms) against $DEV"
    echo "- decoded + augmented: $(echo "$rate" | grep -o '"images_per_s": [0-9.]*' | awk '{printf "%.0f", $2}') images/s"
    echo "- what the steps consume: see the AlexNet and MobileNetV2 rows below (images/s)"
    echo "- an AlexNet epoch on $(find "$TREE/train" -name '*.JPEG' | wc -l) generated JPEGs: \`${wait_line:-no epoch line}\`"
  } >> "$SUMMARY"
fi

# 7. Training steps against PyTorch (last: 28 processes, the longest stage, 7 minutes on an H200).
stage "training steps"
CFG=$OUT/configs
mkdir -p "$CFG"
$PY - "$CFG" <<'PYEOF'
import json, sys
d = sys.argv[1]
def save(name, c): json.dump(c, open(f"{d}/{name}.json", "w"))
save("mlp", json.load(open("FashionMNIST/config.json")))
v = json.load(open("FashionMNIST/config_vgg.json"))
v["indiv"]["net"]["params"]["in_channels"] = 3  # the paper's CIFAR-10 VGG
save("vgg", v)
save("alexnet", json.load(open("ImageNet/config.json")))
save("mobilenetv2", json.load(open("ImageNet/config_mobilenetv2.json")))
PYEOF
{
  echo
  echo "## Training steps: images/s, QuantLab (C++) and PyTorch $($PY -c 'import torch; print(torch.__version__)') from Python, same GPU"
  echo "Ternary networks, Adam; the mean of $STEPS steps queued back to back after warm-up; cuDNN benchmark mode on both."
  echo
  echo "| network | batch | precision | layout | QuantLab | PyTorch | ratio | QuantLab host syncs / step |"
  echo "|---|---|---|---|---|---|---|---|"
} >> "$SUMMARY"
# network capacity batch input layouts
for spec in "mlp 1 256 1x28x28 plain" "vgg 1 128 3x32x32 plain,cl" "alexnet 1 256 3x224x224 plain,cl" \
            "mobilenetv2 1 128 3x224x224 plain,cl"; do
  set -- $spec
  net=$1 cap=$2 batch=${BATCH_SMALL:-$3} input=$4
  classes=$([ "$net" = mlp ] || [ "$net" = vgg ] && echo 10 || echo 1000)
  for amp in "" "--amp"; do
    for layout in ${5//,/ }; do
      cl=$([ "$layout" = cl ] && echo "--channels_last" || true)
      c=$("$BUILD/bench/train_step" "$CFG/$net.json" --device $DEV --capacity "$cap" --batch "$batch" --input "$input" \
          --classes "$classes" --steps "$STEPS" --warmup $WARMUP $amp $cl 2>>"$LOG" | tail -1)
      p=$($PY bench/train_step.py --net "$net" --device $DEV --capacity "$cap" --batch "$batch" --input "$input" \
          --steps "$STEPS" --warmup $WARMUP $amp $cl 2>>"$LOG" | tail -1)
      echo "$c" | record
      echo "$p" | record
      $PY - "$net" "$batch" "${amp:-fp32}" "$layout" "$c" "$p" >> "$SUMMARY" 2>>"$LOG" <<'PYEOF' || failed+=("step $net $amp $layout")
import json, sys
net, batch, amp, layout, c, p = sys.argv[1:]
c, p = json.loads(c), json.loads(p)
prec = "bf16 products" if amp == "--amp" else "float32"
lay = "channels-last" if layout == "cl" else "as given"
print("| %s | %s | %s | %s | %.0f | %.0f | %.2fx | %g |" % (net, batch, prec, lay, c["images_per_s"], p["images_per_s"],
      c["images_per_s"] / p["images_per_s"], c.get("host_syncs_per_step", float("nan"))))
PYEOF
    done
  done
done

{
  echo
  if [ ${#failed[@]} -eq 0 ]; then list=none; else list=$(printf '%s; ' "${failed[@]}"); fi
  echo "Total: $(($(date +%s) - T0)) s. Failed stages: $list"
} >> "$SUMMARY"
cat "$SUMMARY"
[ ${#failed[@]} -eq 0 ]
