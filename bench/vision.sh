#!/bin/sh
# bench/vision.sh - images/s of miclip's ViT-B/16, ResNet-50 and CLIP-B/16 vision tower beside
# PyTorch (Debian's torch 1.13 + torchvision, /usr/bin/python3) on the same machine and thread
# count, at batch 1 and 32 with 1 and 2 threads, with the fraction of OpenBLAS sgemm peak
# that each run reaches. The peak is OpenBLAS on the largest ViT-B/16 product ([6304x768] x
# [768x3072]), measured right before and after each miclip run, so that a shared machine's
# changing load affects both alike.
#
#   bench/vision.sh [BUILD_DIR] [SECONDS] [REPEATS]
#
# BUILD_DIR defaults to ./build and needs the bench_vision and miclip targets
#   (cmake --build BUILD_DIR --target bench_vision miclip).
# Each measurement runs for SECONDS (default 20) after a warm-up forward; miclip and PyTorch
# alternate REPEATS times (default 2) and the best of each is kept, which damps the noise of a
# shared machine. Random full-size folders are written once to BUILD_DIR/bench_models.
# Also printed: CPU seconds per image (process time, all threads) for both; at 1 thread that is
# what a run on an idle core takes, which makes the comparison robust to a loaded machine.
# Run it on an idle machine; docs/performance.md records the figures.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
secs=${2:-20}
reps=${3:-2}
exe="$build/tests/models/bench_vision"
miclip="$build/miclip"
[ -x "$exe" ] || { echo "bench/vision.sh: $exe not found; build the bench_vision target" >&2; exit 2; }
models="$build/bench_models"
for a in vit-b16 resnet50 clip-b16; do
  [ -f "$models/$a/model.safetensors" ] || "$miclip" model random --arch "$a" --seed 0 --out "$models/$a" >/dev/null
done
echo "machine: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load: $(cut -d' ' -f1-3 /proc/loadavg)"

best() { # best images/s over the lines on stdin
  awk '{ if ($2 > b) b = $2 } END { printf "%.3f", b }'
}
bestcpu() { # lowest CPU seconds per image (process time of all threads) over the lines on stdin
  awk '{ if (b == "" || $12 < b) b = $12 } END { printf "%.4f", b }'
}
bestpeak() { # the sgemm peak measured around the best miclip run
  awk '{ if ($2 > b) { b = $2; p = $10 } } END { printf "%.1f", p }'
}

for t in 1 2; do
  echo "threads $t:"
  printf "%-9s %5s %7s %11s %11s %6s %10s %7s %13s %13s %6s\n" model batch threads "miclip im/s" "torch im/s" ratio "sgemm GF/s" "of peak" "miclip cpu/im" "torch cpu/im" ratio
  for spec in "vit-b16 vit 35.13" "resnet50 resnet 8.18" "clip-b16 clip 35.11"; do
    set -- $spec
    for b in 1 32; do
      c=""; p=""
      r=0
      while [ $r -lt "$reps" ]; do
        c="$c$(OPENBLAS_NUM_THREADS=$t "$exe" model "$models/$1" "$b" "$t" "$secs")
"
        p="$p$(OMP_NUM_THREADS=$t /usr/bin/python3 "$here/vision_torch.py" "$2" "$b" "$t" "$secs")
"
        r=$((r + 1))
      done
      cb=$(printf "%s" "$c" | best)
      pk=$(printf "%s" "$c" | bestpeak)
      pb=$(printf "%s" "$p" | best)
      cc=$(printf "%s" "$c" | bestcpu)
      pc=$(printf "%s" "$p" | bestcpu)
      awk -v m="$1" -v b="$b" -v t="$t" -v c="$cb" -v p="$pb" -v g="$3" -v pk="$pk" -v cc="$cc" -v pc="$pc" 'BEGIN {
        printf "%-9s %5d %7d %11.3f %11.3f %5.2fx %10.1f %6.0f%% %12.3fs %12.3fs %5.2fx\n", m, b, t, c, p, c / p, pk, 100 * c * g / pk, cc, pc, pc / cc }'
    done
  done
done
echo "(GFLOP per image = 2 x multiply-adds: ViT-B/16 35.13 (17.56 GMAC), CLIP-B/16 vision 35.11, ResNet-50 8.18 (4.09 GMAC); 'of peak' = miclip GFLOP/s / sgemm peak, both counting 2 FLOP per multiply-add)"
