#!/bin/bash
# gpu_train.sh - how the committed tiny-world models (experiments/world/) were trained: on a
# machine with one NVIDIA GPU, PyTorch and transformers but no MPI and no miclip build. It builds
# the MPI-free world generator (src/world/world.c) with its standalone driver
# (tools/world/world_gen.c), makes the world with 16 processes (the same bytes as `miclip world
# make`: images are a pure function of seed, split and index), trains the
# three models on the GPU, checks the exported folders load in Hugging Face transformers with the
# same outputs (check_hf.py), and packs the folders into $OUT/models.tgz.
# Needs STB_DIR (a folder holding stb_image_write.h) and OUT. Then, on the Debian machine:
#   /usr/bin/python3 tools/world/train_tiny.py --world W --out experiments/world --reference-only
# measures the accuracies with Debian's PyTorch and writes the reference outputs the tests use.
# `gpu_train.sh --driver-only` only builds $WORK/world_gen (no GPU, no OUT; tests/world runs it).
set -euo pipefail
B=${WORK:-/tmp/worldgpu}
SEED=${SEED:-1}
mkdir -p "$B"
gcc -O2 -std=c17 -D_GNU_SOURCE -Iinclude -I"$STB_DIR" \
  tools/world/world_gen.c src/world/world.c src/image/image_write.c src/core/status.c \
  src/core/log.c src/core/fsutil.c src/core/checked.c src/core/signals.c -lm -o "$B/world_gen"
if [ "${1:-}" = --driver-only ]; then exit 0; fi
mkdir -p "$OUT"
pids=()
for r in $(seq 0 15); do
  "$B/world_gen" "$B/world" "$SEED" 500 50 50 "$r" 16 & pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
(cd "$B/world" && find val unseen -name '*.png' | sort | xargs sha256sum) > "$OUT/world_sha256.txt"
export PYTHONUNBUFFERED=1
python3 tools/world/train_tiny.py --world "$B/world" --out "$B/models" --device cuda --seed 0 \
  2>&1 | tee "$OUT/train.log"
python3 tools/world/check_hf.py "$B/models" "$B/world" 2>&1 | tee "$OUT/check_hf.log" || true
tar czf "$OUT/models.tgz" -C "$B" models
