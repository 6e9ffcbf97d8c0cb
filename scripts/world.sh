#!/usr/bin/env bash
# world.sh: the main job. Installs what building and running miclip needs (not the test
# tools), builds miclip without its tests (in build-run/), generates the tiny world and runs
# experiments/world.yaml on it with 2 MPI ranks, then experiments/world-clip.yaml (Table 3, the
# tiny CLIP as the target), and prints the headline tables.
# Outputs: results/world/ and results/world-clip/ (stores, tables, report); the images:
# results/world-data/.
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
# The hard split is the eval set (docs/world.md, "The hard split"); a world made before it existed
# gets it added (the other splits keep their bytes).
if [ ! -f results/world-data/hard/attributes.jsonl ]; then
  mpiexec --oversubscribe -n "$ranks" "$miclip" world make --out results/world-data --seed 1 \
      --per-class 100 --val-per-class 20 --unseen-per-class 20 \
      --hard-per-class 20 --hard-fade 0.25 --hard-occlusion 0.03
fi
echo "world.sh: config experiments/world.yaml, hash $("$miclip" config experiments/world.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world.yaml
t1=$(date +%s)
# Table 3 (unseen concepts): the tiny CLIP as the target, E_n on the seen classes, interventions
# on the unseen textures (experiments/world-clip.yaml; docs/intervene.md).
echo "world.sh: config experiments/world-clip.yaml, hash $("$miclip" config experiments/world-clip.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world-clip.yaml
echo "world.sh: done in $(( $(date +%s) - t0 )) s (world-clip.yaml $(( $(date +%s) - t1 )) s); results in" \
     "results/world/ and results/world-clip/, reports in results/world{,-clip}/report/README.md"
# The headline tables: every table of the reports' READMEs whose caption is not a t-test's.
for readme in results/world/report/README.md results/world-clip/report/README.md; do
  [ -f "$readme" ] || continue
  echo
  awk '/^## Figures/ { exit }
       /^## / { print; print ""; next }
       /^[^|].*:$/ { show = ($0 !~ /^One-tailed/); if (show) print; next }
       /^\|/ { if (show) { print; intable = 1 }; next }
       /^$/ { if (intable) { print ""; show = 0; intable = 0 } }' "$readme"
done
