#!/usr/bin/env bash
# Everything the GPU needs checking and measuring (docs/GPU.md), on a fresh GPU machine in one go:
#   bench/gpu.sh [BUILD]          default BUILD=build-gpu; results in BUILD/bench-results/gpu.md
#                                 and gpu.jsonl (every measurement, one JSON object a line)
# Environment: QL_GPU_STEPS (timed steps, 20), QL_GPU_SKIP_BUILD=1, QL_GPU_SKIP_DEMO=1,
# QL_GPU_SKIP_PIPELINE=1, PYTHON (the python3 that holds the CUDA PyTorch).
#  1. build against that PyTorch's libtorch (make build TORCH=python), the other packages from
#     bundle/ (make bundle, on a machine with Debian's archive) when the machine has none
#  2. the GPU tests: test_cuda (every topology, host synchronisations, GPU <-> CPU checkpoints,
#     deterministic resume) and the CUDA kernel against the CPU kernel (test_ana_operator)
#  3. the ANA kernel alone on 2^24 elements against a device-to-device copy of the same tensor
#  4. training steps, QuantLab against PyTorch from Python on the same GPU in the same run: same
#     networks, batch, precision, cuDNN benchmark mode on both; float32 and --amp; channels-last
#     for the convolutional networks on both
#  5. the Fashion-MNIST demo config trained in float32 and with --amp (test accuracy, epoch time)
#  6. the ImageNet pipeline on a generated JPEG tree: decoding rate with every core, and the data
#     wait of an AlexNet epoch on the GPU
# Every stage runs on when an earlier one fails; the summary says which failed.
set -uo pipefail
BUILD=${1:-build-gpu}
OUT=$BUILD/bench-results
PY=${PYTHON:-python3}
STEPS=${QL_GPU_STEPS:-20}
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
  echo "- command: bench/gpu.sh $BUILD"
  echo
} > "$SUMMARY"

# 1. Build.
if [ "${QL_GPU_SKIP_BUILD:-0}" != 1 ]; then
  stage "build"
  export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
  if ! make build TORCH=python PYTHON="$PY" BUILD="$BUILD" >> "$LOG" 2>&1; then
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
  echo '```'
} >> "$SUMMARY" 2>&1
grep -q FAILED "$SUMMARY" && failed+=("tests")

# 3. The ANA kernel alone.
stage "ANA kernel"
{
  echo
  echo "## The ANA operator alone, 2^24 elements (forward: 8 bytes per element, backward: 12)"
  echo "| implementation | levels | forward µs | backward µs | forward GB/s | backward GB/s | copy GB/s | forward / copy rate |"
  echo "|---|---|---|---|---|---|---|---|"
} >> "$SUMMARY"
for impl in fused tensor_ops; do
  for levels in 3 15; do
    line=$("$BUILD/bench/ana_op" --device cuda --impl $impl --levels $levels --n 16777216 --reps 50 2>>"$LOG" | tail -1)
    echo "$line" | record
    echo "$line" | $PY -c "import json,sys; r=json.loads(sys.stdin.read()); print('| %s | %d | %.1f | %.1f | %.0f | %.0f | %.0f | %.0f %% |' % (r['impl'], r['levels'], r['forward_us'], r['backward_us'], r['forward_gbps'], r['backward_gbps'], r['copy_gbps'], 100 * r['forward_of_copy']))" >> "$SUMMARY" 2>>"$LOG" || failed+=("ana_op $impl $levels")
  done
done

# 4. Training steps against PyTorch.
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
  net=$1 cap=$2 batch=$3 input=$4
  classes=$([ "$net" = mlp ] || [ "$net" = vgg ] && echo 10 || echo 1000)
  for amp in "" "--amp"; do
    for layout in ${5//,/ }; do
      cl=$([ "$layout" = cl ] && echo "--channels_last" || true)
      c=$("$BUILD/bench/train_step" "$CFG/$net.json" --device cuda --capacity "$cap" --batch "$batch" --input "$input" \
          --classes "$classes" --steps "$STEPS" --warmup 5 $amp $cl 2>>"$LOG" | tail -1)
      p=$($PY bench/train_step.py --net "$net" --device cuda --capacity "$cap" --batch "$batch" --input "$input" \
          --steps "$STEPS" --warmup 5 $amp $cl 2>>"$LOG" | tail -1)
      echo "$c" | record
      echo "$p" | record
      $PY - "$net" "$batch" "${amp:-fp32}" "$layout" "$c" "$p" >> "$SUMMARY" 2>>"$LOG" <<'PYEOF' || failed+=("step $net $amp $layout")
import json, sys
net, batch, amp, layout, c, p = sys.argv[1:]
c, p = json.loads(c), json.loads(p)
prec = "bf16 products" if amp == "--amp" else "float32"
lay = "channels-last" if layout == "cl" else "as given"
print("| %s | %s | %s | %s | %.0f | %.0f | %.2fx | %g |" % (net, batch, prec, lay, c["images_per_s"], p["images_per_s"],
      c["images_per_s"] / p["images_per_s"], c["host_syncs_per_step"]))
PYEOF
    done
  done
done

# 5. The Fashion-MNIST demo, float32 and --amp.
if [ "${QL_GPU_SKIP_DEMO:-0}" != 1 ]; then
  stage "demo accuracy"
  {
    echo
    echo "## Fashion-MNIST demo config (ternary MLP, FashionMNIST/config.json) on the GPU"
    echo "| precision | test accuracy | wall time |"
    echo "|---|---|---|"
  } >> "$SUMMARY"
  for amp in "" "--amp"; do
    home=$(mktemp -d)
    mkdir -p "$home/FashionMNIST"
    cp FashionMNIST/config.json "$home/FashionMNIST/"
    t=$(date +%s.%N)
    "$QL" --problem=FashionMNIST --topology=MLP --home="$home" --data="$DATA" --device=cuda --ckpt_every=0 $amp \
      > "$OUT/demo${amp:+_amp}.log" 2>&1 || failed+=("demo $amp")
    t=$(awk "BEGIN{print $(date +%s.%N) - $t}")
    acc=$(grep -o 'test with the weights.*acc [0-9.]*%' "$OUT/demo${amp:+_amp}.log" | grep -o 'acc [0-9.]*%' | tail -1)
    echo "{\"demo\": \"${amp:-fp32}\", \"test\": \"$acc\", \"wall_s\": $t}" >> "$JSONL"
    printf '| %s | %s | %.0f s |\n' "${amp:-float32}" "${acc#acc }" "$t" >> "$SUMMARY"
    rm -rf "$home"
  done
fi

# 6. The ImageNet pipeline against the GPU's appetite.
if [ "${QL_GPU_SKIP_PIPELINE:-0}" != 1 ]; then
  stage "ImageNet pipeline"
  TREE=$OUT/imagetree
  [ -d "$TREE/train" ] || "$BUILD/bench/image_pipeline" --generate "$TREE" --count 2560 >> "$LOG" 2>&1
  rate=$("$BUILD/bench/image_pipeline" "$TREE" --workers "$(nproc)" --augment original --batches 30 2>>"$LOG" | tail -1)
  echo "$rate" | record
  home=$(mktemp -d)
  mkdir -p "$home/ImageNet"
  $PY - "$home/ImageNet/config.json" <<'PYEOF'
import json, sys
c = json.load(open("ImageNet/config.json"))
c["treat"]["max_epoch"] = 1
json.dump(c, open(sys.argv[1], "w"))
PYEOF
  "$QL" --problem=ImageNet --topology=AlexNet --home="$home" --data="$TREE" --device=cuda --ckpt_every=0 \
    > "$OUT/alexnet_epoch.log" 2>&1 || failed+=("AlexNet epoch")
  wait_line=$(grep -m1 'epoch 1/1 |' "$OUT/alexnet_epoch.log" || true)
  rm -rf "$home"
  {
    echo
    echo "## ImageNet pipeline ($(nproc) decoding workers, training transforms) against the GPU"
    echo "- decoded + augmented: $(echo "$rate" | grep -o '"images_per_s": [0-9.]*' | awk '{printf "%.0f", $2}') images/s"
    echo "- what the steps consume: see the AlexNet and MobileNetV2 rows above (images/s)"
    echo "- an AlexNet epoch on $(find "$TREE/train" -name '*.JPEG' | wc -l) generated JPEGs: \`${wait_line:-no epoch line}\`"
  } >> "$SUMMARY"
fi

{
  echo
  if [ ${#failed[@]} -eq 0 ]; then list=none; else list=$(printf '%s; ' "${failed[@]}"); fi
  echo "Total: $(($(date +%s) - T0)) s. Failed stages: $list"
} >> "$SUMMARY"
cat "$SUMMARY"
