#!/usr/bin/env bash
# world.sh: the main job. Installs every package, builds miclip, generates the tiny world and
# runs experiments/world.yaml on it with 2 MPI ranks. Outputs: results/world/ (stores, tables,
# report); the images: results/world-data/. Rerunning is cheap: complete stages are skipped.
#   RANKS=4 bash scripts/world.sh      # more ranks (oversubscribed is fine)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
ranks=${RANKS:-2}

bash scripts/install-deps.sh
bash scripts/build.sh build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The world's images (same seed, same bytes; skipped when already there).
if [ ! -f results/world-data/world.json ]; then
  mpiexec --oversubscribe -n "$ranks" build/miclip world make --out results/world-data --seed 1 \
      --per-class 100 --val-per-class 20 --unseen-per-class 20
fi
build/miclip config experiments/world.yaml --hash
mpiexec --oversubscribe -n "$ranks" build/miclip run experiments/world.yaml
echo "world.sh: done; results in results/world/"
[ -f results/world/report/descriptions.md ] && cat results/world/report/descriptions.md | head -40 || true
