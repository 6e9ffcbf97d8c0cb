#!/bin/sh
# bench/train.sh - training throughput of miclip's E_n and top-k SAE beside PyTorch, on the
# same machine and the same number of threads (docs/performance.md records the figures).
#
#   bench/train.sh [BUILD_DIR] [THREADS] [EN_STEPS] [SAE_STEPS]
#
# BUILD_DIR defaults to ./build (it needs the bench_train target:
#   cmake --build BUILD_DIR --target bench_train). PyTorch is Debian's (/usr/bin/python3).
# Each side runs one warm-up step, then the timed steps, and prints wall-clock and process
# CPU time per step; on a shared machine compare the CPU figures at one thread (with more
# threads compare wall-clock: idle BLAS threads spin and count as CPU time).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-build}
threads=${2:-1}
en_steps=${3:-10}
sae_steps=${4:-3}
exe="$build/tests/train/bench_train"
[ -x "$exe" ] || { echo "bench/train.sh: $exe not found; build the bench_train target" >&2; exit 2; }
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
# torch's OpenMP workers spin between parallel regions by default and then fight OpenBLAS's
# own threads for the cores (2 threads: 121 ms/step instead of 62 for E_n); passive waiting is
# what a careful user sets, and changes nothing at one thread.
export OMP_WAIT_POLICY=passive
echo "threads: $threads   machine: $(getconf _NPROCESSORS_ONLN) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
for classes in 1000 20; do  # ImageNet-like, and a tiny-world-like label set
  "$exe" en "$en_steps" 0 "$classes"
  /usr/bin/python3 "$here/train_torch.py" en "$en_steps" "$threads" "$classes"
  # the bound: the step's matrix products alone, and sgemm's peak
  "$exe" floor "$en_steps" 0 "$classes" | tail -2
done
"$exe" sae "$sae_steps"
/usr/bin/python3 "$here/train_torch.py" sae "$sae_steps" "$threads"
