#!/bin/sh
# bench/pblas.sh - per-rank peak memory (VmHWM) and time of the baselines' units x concepts
# product C = A B at 1, 2 and 4 ranks, split 1-D over unit rows (today's layout: B whole on every
# rank), 1-D over images (C whole on every rank, then summed into unit rows) and 2-D block-cyclic
# with ScaLAPACK's psgemm (include/miclip/pblas.h). The 1-D image split at the default shape holds
# ~2 x 1.9 GiB per rank: 4 ranks need ~10 GiB.
#
#   bench/pblas.sh [BUILD_DIR] [N] [U] [CN]
#
# Defaults: the paper's columns and a few rows, U = 24576 SAE features, CN = 20000 concepts,
# N = 256 images (the paper has 100,000: scaled down in rows). BUILD_DIR defaults to ./build (it
# needs the bench_pblas target: cmake --build BUILD_DIR --target bench_pblas). One BLAS thread
# per rank. Prints each run's per-rank figures, then a summary with the targets of issue 17:
# peak memory above the process's start <= 1.2 x (A + B + C) / P, and >= 80% parallel efficiency
# 1 -> 2 ranks. Efficiency is only meaningful on an otherwise idle machine with a core per rank:
# the load average is printed before and after.
set -eu
build=${1:-build}
n=${2:-256}
u=${3:-24576}
cn=${4:-20000}
exe="$build/tests/core/bench_pblas"
[ -x "$exe" ] || { echo "bench/pblas.sh: $exe not found; build the bench_pblas target" >&2; exit 2; }
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
mpiexec=${MPIEXEC:-mpiexec}
echo "machine: $(getconf _NPROCESSORS_ONLN) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
out=$(mktemp)
for mode in 1d 1d-img 2d; do
  for p in 1 2 4; do
    "$mpiexec" --oversubscribe -n "$p" "$exe" "$mode" "$u" "$n" "$cn" | tee -a "$out" | grep -v '^RESULT'
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "summary (U $u x N $n x CN $cn):"
grep '^RESULT' "$out" | awk '
  { t[$2 "," $3] = $4; above[$2 "," $3] = $5; share[$2 "," $3] = $6 }
  END {
    printf "%-6s %5s %9s %11s %14s %11s %10s\n", "mode", "ranks", "time (s)", "efficiency",
           "above start", "total/P", "mem ratio"
    split("1d 1d-img 2d", modes, " ")
    for (m = 1; m <= 3; m++) for (p = 1; p <= 4; p *= 2) {
      k = modes[m] "," p
      if (!(k in t)) continue
      eff = t[modes[m] ",1"] / (p * t[k])
      printf "%-6s %5d %9.2f %10.0f%% %10.0f MiB %7.0f MiB %9.2fx\n", modes[m], p, t[k],
             100 * eff, above[k], share[k], above[k] / share[k]
    }
    print "targets: mem ratio <= 1.2, efficiency 1 -> 2 ranks >= 80%"
  }'
rm -f "$out"
