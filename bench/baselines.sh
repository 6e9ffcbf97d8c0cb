#!/usr/bin/env bash
# bench/baselines.sh - CLIP-Dissect in the baselines stage at paper columns and few rows: per-rank
# peak memory (max RSS) and time of `miclip baselines` at 1, 2 and 4 ranks (issue 17 item 2).
#
#   bench/baselines.sh [BUILD_DIR] [PER_CLASS] [FEATURES] [CONCEPTS] [OLD_MICLIP]
#
# Makes a tiny world with PER_CLASS training images per class (36 classes; default 28: 1,008
# images), extracts the tiny ViT's CLS token of block 3, trains a FEATURES-wide top-k SAE (default
# 24,576, k 32: the paper's width) for 2 steps, and scores its features with clip_dissect against
# the concept word list CONCEPTS (default data/concepts/common3k.txt; the paper's largest is
# common20k.txt). Then runs the baselines stage alone at 1, 2 and 4 ranks (one thread each) and
# prints, per run, the wall time, each rank's max RSS and CPU seconds (GNU time), and checks the
# stores are the same bytes of data at every rank count (h5py, datasets and attributes). With
# OLD_MICLIP (a binary of an earlier commit), it also runs that one at 1 rank for comparison.
# Work folder: $BENCH_DIR (default a new temporary folder, removed at the end).
# Times are only meaningful on an otherwise idle machine; the load average is printed.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
per=${2:-28}
feat=${3:-24576}
concepts=$(realpath "${4:-$here/data/concepts/common3k.txt}")
old=${5:-}
exe="$build/miclip"
[ -x "$exe" ] || { echo "bench/baselines.sh: $exe not found (build first)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "bench/baselines.sh: needs GNU time (apt-get install time)" >&2; exit 2; }
work=${BENCH_DIR:-$(mktemp -d)}
[ -n "${BENCH_DIR:-}" ] || trap 'rm -rf "$work"' EXIT
export OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MICLIP_THREADS=1
export OMPI_MCA_btl=self,tcp OMPI_MCA_btl_tcp_if_include=lo OMPI_MCA_oob_tcp_if_include=lo
mpiexec=${MPIEXEC:-mpiexec}
echo "machine: $(getconf _NPROCESSORS_ONLN) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
[ -d "$work/world" ] || "$exe" --quiet world make --out "$work/world" --seed 1 --per-class "$per" \
    --val-per-class 1 --unseen-per-class 1
cat >"$work/bench.yaml" <<YAML
name: bench-baselines
output_dir: $work/out
seeds: [0]
stages: [extract, sae, baselines]
models: {target: $here/experiments/world/vit, clip: $here/experiments/world/clip}
datasets:
  train: {kind: world, root: $work/world, split: train}
concepts:
  - {name: words, file: $concepts}
extract: {layers: ["3"], pool: cls, batch_size: 64}
sae: {layer: "3", features: $feat, k: 32, batch_size: 64, steps: 2}
localize: {units: [sae]}
describe: {units: [sae]}
baselines: {methods: [clip_dissect]}
YAML
"$exe" --quiet extract "$work/bench.yaml"
"$exe" --quiet sae "$work/bench.yaml"
echo "images: $((36 * per)), SAE features: $feat, concepts: $(grep -c . "$concepts") ($concepts)"
run() { # LABEL NP EXE
    rm -rf "$work/out/baselines" "$work/out/tables" "$work/out/report"
    echo "--- $1: $2 rank(s), load before $(cut -d' ' -f1-3 /proc/loadavg)"
    local t0 t1
    t0=$(date +%s.%N)
    "$mpiexec" --oversubscribe -n "$2" /usr/bin/time -f "rank peak RSS %M KiB, CPU %U s user + %S s sys" \
        "$3" --quiet baselines "$work/bench.yaml" 2>&1 | grep -E "^rank|error" || true
    t1=$(date +%s.%N)
    echo "wall $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s"
    mkdir -p "$work/stores/$1-np$2"
    cp "$work"/out/baselines/*.h5 "$work/stores/$1-np$2/"
}
[ -z "$old" ] || run before 1 "$old"
for p in 1 2 4; do run after $p "$exe"; done
/usr/bin/python3 - "$work/stores" <<'PY'
import glob, os, sys
import h5py, numpy as np
root = sys.argv[1]
def load(d):
    f = h5py.File(glob.glob(os.path.join(root, d, "*.h5"))[0], "r")
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out
one = load("after-np1")
for d in ("after-np2", "after-np4"):
    other = load(d)
    same = one.keys() == other.keys() and all(np.array_equal(one[k], other[k]) for k in one)
    print("%s: %d datasets, %s the 1-rank store's" % (d, len(other), "bitwise equal to" if same else "DIFFERENT from"))
if os.path.isdir(os.path.join(root, "before-np1")):
    old = load("before-np1")
    for k in sorted(one):
        if k.endswith("/sim"):
            a, b = one[k].astype(np.float64), old[k].astype(np.float64)
            print("before vs after %s: max |difference| %.3g (scores up to %.3g), %.4f%% of entries differ"
                  % (k, np.abs(a - b).max(), np.abs(b).max(), 100 * np.mean(a != b)))
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
