#!/usr/bin/env bash
# The ImageNet input pipeline against torchvision's, and what a training step of AlexNet needs:
#   bench/image_pipeline.sh [BUILD]      prints a markdown section (run_all.sh appends it)
# Generates BUILD/bench-results/imagetree (3000 JPEGs at ImageNet-like sizes) once, then times
# decoded + augmented images per second: C++ (full-size decoding, the default, and DCT-scaled
# decoding, "scaled_decode": true) and Python
# (torchvision ImageFolder + DataLoader), same workers, same transforms, same allocator settings,
# QL_BENCH_ROUNDS rounds.
set -euo pipefail
BUILD=${1:-build}
OUT=$BUILD/bench-results
PY=/usr/bin/python3
ROUNDS=${QL_BENCH_ROUNDS:-3}
TREE=$OUT/imagetree
# The allocator settings quantlab gives itself (mallopt), given to Python through the environment.
SAME_ENV=(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=1073741824)
mkdir -p "$OUT"
[ -d "$TREE/train" ] || "$BUILD/bench/image_pipeline" --generate "$TREE" --count 3000 >&2
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate() { grep -o '"images_per_s": [0-9.]*' | awk '{print $2}'; }
echo
echo "## ImageNet input pipeline: decoded + augmented images/s (batch 64, 20 batches after a warm-up one; median of $ROUNDS)"
echo "| workers | transforms | C++ | C++ scaled_decode | Python torchvision | speed-up (C++ / scaled_decode) |"
echo "|---|---|---|---|---|---|"
for aug in original none; do
  for w in 1 $(nproc); do
    s=(); f=(); p=()
    for r in $(seq "$ROUNDS"); do
      f+=("$("$BUILD/bench/image_pipeline" "$TREE" --workers "$w" --augment $aug | tail -1 | rate)")
      s+=("$("$BUILD/bench/image_pipeline" "$TREE" --workers "$w" --augment $aug --scaled_decode | tail -1 | rate)")
      p+=("$(env "${SAME_ENV[@]}" $PY bench/image_pipeline.py "$TREE" --workers "$w" --augment $aug 2>/dev/null | tail -1 | rate)")
    done
    ms=$(printf '%s\n' "${s[@]}" | median); mf=$(printf '%s\n' "${f[@]}" | median); mp=$(printf '%s\n' "${p[@]}" | median)
    label=$([ $aug = original ] && echo "training (crop, flip, jitter, lighting)" || echo "validation (resize 256, centre crop)")
    printf '| %d | %s | %.0f | %.0f | %.0f | %.2fx / %.2fx |\n' "$w" "$label" "$mf" "$ms" "$mp" \
      "$(awk "BEGIN{print $mf / $mp}")" "$(awk "BEGIN{print $ms / $mp}")"
  done
done
# What one AlexNet training step consumes, on this machine's CPU, batch 64, 227x227 crops.
step=$("$BUILD/bench/train_step" ImageNet/config.json --input 3x227x227 --batch 64 --steps 3 --warmup 1 | tail -1 |
       grep -o '"step_s": [0-9.]*' | awk '{print $2}')
printf '\nTernary AlexNet training step (ImageNet/config.json, batch 64, CPU, all cores): %.2f s, i.e. %.0f images/s to keep it fed.\n' \
  "$step" "$(awk "BEGIN{print 64 / $step}")"
