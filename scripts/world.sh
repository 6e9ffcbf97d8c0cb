#!/usr/bin/env bash
# world.sh: the main job. Installs what building and running miclip needs (not the test
# tools), builds miclip without its tests (in build-run/), generates the tiny world (with its
# concept masks) and runs experiments/world.yaml on it with 2 MPI ranks, then
# experiments/world-clip.yaml (Table 3, the tiny CLIP as the target) and
# experiments/world-netdissect.yaml (Network Dissection's Table 2 rows), and prints the headline
# tables.
# Outputs: results/world/, results/world-clip/ and results/world-netdissect/ (stores, tables,
# report); the images and masks: results/world-data/.
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

# The world's images and concept masks (same seed, same bytes; skipped when already there). The
# masks are Network Dissection's (world-netdissect.yaml) and the hard split is world.yaml's eval
# set (docs/world.md, "The hard split"); neither changes another split's images, so a world made
# without them is completed in place and the stores made from it stay valid.
if [ ! -f results/world-data/world.json ] || [ ! -d results/world-data/masks/train ] ||
   [ ! -f results/world-data/hard/attributes.jsonl ]; then
  mpiexec --oversubscribe -n "$ranks" "$miclip" world make --out results/world-data --seed 1 \
      --per-class 100 --val-per-class 20 --unseen-per-class 20 --masks \
      --hard-per-class 20 --hard-fade 0.25 --hard-occlusion 0.03
fi
echo "world.sh: config experiments/world.yaml, hash $("$miclip" config experiments/world.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world.yaml
t1=$(date +%s)
# Table 3 (unseen concepts): the tiny CLIP as the target, E_n on the seen classes, interventions
# on the unseen textures (experiments/world-clip.yaml; docs/intervene.md).
echo "world.sh: config experiments/world-clip.yaml, hash $("$miclip" config experiments/world-clip.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world-clip.yaml
t2=$(date +%s)
# Network Dissection (Table 2's netdissect rows): every token of layer 3 and the concept masks,
# which world.yaml's extraction (CLS token and logits) does not keep (docs/baselines.md).
echo "world.sh: config experiments/world-netdissect.yaml, hash $("$miclip" config experiments/world-netdissect.yaml --hash)"
mpiexec --oversubscribe -n "$ranks" "$miclip" run experiments/world-netdissect.yaml
t3=$(date +%s)
echo "world.sh: done in $(( t3 - t0 )) s (world-clip.yaml $(( t2 - t1 )) s," \
     "world-netdissect.yaml $(( t3 - t2 )) s); results in results/world{,-clip,-netdissect}/," \
     "reports in results/world{,-clip,-netdissect}/report/README.md"
# The headline tables: every table of the reports' READMEs whose caption is not a t-test's.
for readme in results/world/report/README.md results/world-clip/report/README.md \
              results/world-netdissect/report/README.md; do
  [ -f "$readme" ] || continue
  echo
  awk '/^## Figures/ { exit }
       /^## / { print; print ""; next }
       /^[^|].*:$/ { show = ($0 !~ /^One-tailed/); if (show) print; next }
       /^\|/ { if (show) { print; intable = 1 }; next }
       /^$/ { if (intable) { print ""; show = 0; intable = 0 } }' "$readme"
done
