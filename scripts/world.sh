#!/usr/bin/env bash
# world.sh: the main job. Installs what building and running miclip needs (not the test
# tools), builds miclip without its tests (in build-run/), generates the tiny world and runs
# experiments/world.yaml on it with 2 MPI ranks, then prints the headline tables.
# Outputs: results/world/ (stores, tables, report); the images: results/world-data/.
# Rerunning is cheap: complete stages are skipped.
#   RANKS=4 bash scripts/world.sh      # more ranks (oversubscribed is fine)
#   MICLIP_LOG=debug bash scripts/world.sh   # every task's own lines too
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
ranks=${RANKS:-2}
t0=$(date +%s)

bash scripts/install-deps.sh --run
bash scripts/build.sh "$here/build-run" -DMICLIP_TESTS=OFF
miclip=build-run/miclip
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1

# The world's images (same seed, same bytes; skipped when already there).
if [ ! -f results/world-data/world.json ]; then
  mpiexec --oversubscribe -n "$ranks" "$miclip" world make --out results/world-data --seed 1 \
      --per-class 100 --val-per-class 20 --unseen-per-class 20
fi
echo "world.sh: config experiments/world.yaml, hash $("$miclip" config experiments/world.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world.yaml
echo "world.sh: done in $(( $(date +%s) - t0 )) s; results in results/world/, report in results/world/report/README.md"
# The headline tables: every table of the report's README whose caption is not a t-test's.
if [ -f results/world/report/README.md ]; then
  echo
  awk '/^## Figures/ { exit }
       /^## / { print; print ""; next }
       /^[^|].*:$/ { show = ($0 !~ /^One-tailed/); if (show) print; next }
       /^\|/ { if (show) { print; intable = 1 }; next }
       /^$/ { if (intable) { print ""; show = 0; intable = 0 } }' results/world/report/README.md
fi
