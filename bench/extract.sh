#!/usr/bin/env bash
# bench/extract.sh [BUILD_DIR] [IMAGES] - extraction throughput and scaling (not a test).
#
# Runs the extract stage with full-size random-weight ViT-B/16 (target) and CLIP-B/16 (CLIP),
# both written by `miclip model random`, over IMAGES real photographs (copies of the two sample
# photos that Debian's python3-sklearn ships, 640x427 and 427x640 JPEGs), at 1 rank and at 2 ranks
# with 1 thread each, and prints images/s, images/s per rank, the 1 -> 2 rank scaling efficiency
# and the split of time between decode+preprocess, forward and write+flush.
# Targets (issue 6): >= 90% efficiency from 1 to 2 ranks; write+flush under 5% of the time.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$here/build}" && pwd)
n=${2:-32}
miclip=$build/miclip
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl=self,tcp
work=$(mktemp -d /tmp/miclip-bench-extract.XXXXXX)
trap 'rm -rf "$work"' EXIT
cd "$work"
photos=$(/usr/bin/python3 -c "import sklearn.datasets, os; print(os.path.join(os.path.dirname(sklearn.datasets.__file__), 'images'))")
mkdir -p data/china data/flower
for ((i = 0; i < n / 2; i++)); do
  cp "$photos/china.jpg" "data/china/$i.jpg"
  cp "$photos/flower.jpg" "data/flower/$i.jpg"
done
"$miclip" --quiet model random --arch vit-b16 --seed 1 --out vit >/dev/null
"$miclip" --quiet model random --arch clip-b16 --seed 2 --out clip >/dev/null
MICLIP_SOURCE_DIR=$here /usr/bin/python3 - <<'PY'
import os, sys
sys.path.insert(0, os.path.join(os.environ["MICLIP_SOURCE_DIR"], "tests", "text"))
import ref_tokenizers as R
vocab, merges = R.train_bpe(["a photo of a china.", "a photo of a flower."], 20)
R.write_clip_vocab("clip", vocab, merges)
PY
run() {  # run RANKS -> prints "<img/s> <decode%> <forward%> <io%>"
  local np=$1
  cat > bench.yaml <<YAML
name: bench
output_dir: out$np
models: {target: vit, clip: clip}
datasets:
  train: {kind: imagefolder, root: data}
extract: {layers: ["10"], batch_size: 8}
stages: [extract]
YAML
  local log
  log=$(mpiexec --oversubscribe -n "$np" "$miclip" --threads 1 run bench.yaml 2>&1)
  local rate split
  rate=$(grep -oE 'extract: [0-9]+ img in [0-9.]+ s \(([0-9.]+) img/s\)' <<<"$log" | grep -oE '\([0-9.]+' | tr -d '(')
  split=$(grep -oE 'decode\+preprocess [0-9.]+%, forward [0-9.]+%, write\+flush [0-9.]+%' <<<"$log" | grep -oE '[0-9.]+' | tr '\n' ' ')
  echo "$rate $split"
}
read -r r1 d1 f1 i1 <<<"$(run 1)"
read -r r2 d2 f2 i2 <<<"$(run 2)"
eff=$(awk -v a="$r1" -v b="$r2" 'BEGIN { printf "%.0f", 100 * b / (2 * a) }')
printf "extract, ViT-B/16 layer 10 + CLIP-B/16, %d photos, batch 8, 1 thread per rank\n" "$n"
printf "  1 rank : %6.2f img/s            decode %5.1f%%  forward %5.1f%%  write %5.1f%%\n" "$r1" "$d1" "$f1" "$i1"
printf "  2 ranks: %6.2f img/s (%.2f/rank)  decode %5.1f%%  forward %5.1f%%  write %5.1f%%\n" "$r2" "$(awk -v b="$r2" 'BEGIN{print b/2}')" "$d2" "$f2" "$i2"
printf "  scaling efficiency 1 -> 2 ranks: %s%% (target >= 90%%); write share at 2 ranks %s%% (target < 5%%)\n" "$eff" "$i2"
