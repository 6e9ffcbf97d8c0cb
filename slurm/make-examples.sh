#!/usr/bin/env bash
# make-examples.sh MICLIP [OUT]: regenerates the example scripts slurm/world/ and slurm/paper/
# and slurm/paper/PLAN.txt with `miclip slurm` / `miclip plan` (OUT defaults to this checkout's
# slurm/; the ctest test slurm_examples_fresh writes to a temporary OUT and compares it with the
# committed files, so a change to miclip slurm, miclip plan or the configs that leaves these
# stale fails the suite). The output does not depend on the machine or the checkout:
#  - the plans use the documented default rates (MICLIP_CALIBRATION=/nonexistent), and the
#    second plan in PLAN.txt the committed slurm/paper/calibration-dev.json;
#  - the absolute path of this checkout (and of the temporary folder written to) is replaced by
#    /path/to/miclip, and the config hash, which covers those absolute paths, by HASH.
# On a cluster, run `miclip slurm` yourself (docs/slurm.md) rather than editing these.
set -euo pipefail
MICLIP=${1:?usage: slurm/make-examples.sh path/to/miclip [OUT]}
MICLIP=$(cd "$(dirname "$MICLIP")" && pwd)/$(basename "$MICLIP")
root=$(cd "$(dirname "$0")/.." && pwd)
out=${2:-$root/slurm}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$root"
gen=$(mktemp -d)
trap 'rm -rf "$gen"' EXIT
paper_models=(--target slurm/paper/models/vit-base-patch16-224 --clip slurm/paper/models/clip-vit-base-patch16)
export MICLIP_CALIBRATION=/nonexistent   # the documented defaults, not this machine's file

"$MICLIP" --quiet slurm experiments/world.yaml --out "$gen/world" --miclip miclip \
    --ntasks-per-node 2 --cpus-per-task 1
"$MICLIP" --quiet slurm experiments/paper/vit_b16_imagenet.yaml --out "$gen/paper" --miclip miclip \
    --nodes 1 --ntasks-per-node 32 --cpus-per-task 2 "${paper_models[@]}" 2>/dev/null
{
    echo "# miclip plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 \\"
    echo "#     --target slurm/paper/models/vit-base-patch16-224 --clip slurm/paper/models/clip-vit-base-patch16"
    echo "# (config.json copies of the published models; written by slurm/make-examples.sh)"
    echo
    "$MICLIP" --quiet plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 "${paper_models[@]}"
    echo
    echo "# The same with the calibration measured on the development machine"
    echo "# (slurm/paper/calibration-dev.json: --calibration slurm/paper/calibration-dev.json):"
    echo
    "$MICLIP" --quiet plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 \
        "${paper_models[@]}" --calibration slurm/paper/calibration-dev.json
} >"$gen/paper/PLAN.txt"
rmdir "$gen/world/logs" "$gen/paper/logs" 2>/dev/null || true
for f in "$gen"/world/* "$gen"/paper/*; do
    sed -i -E -e "s#$gen#/path/to/miclip/slurm#g" -e "s#$root#/path/to/miclip#g" \
        -e 's#\(config [0-9a-f]{16}\)#(config HASH)#g' "$f"
done
# Replace the generated files in OUT (stale stage scripts go; paper/models and the
# calibration file, which are inputs, stay).
for d in world paper; do
    mkdir -p "$out/$d"
    rm -f "$out/$d"/*.sbatch "$out/$d/submit.sh" "$out/$d/PLAN.txt"
    cp "$gen/$d"/* "$out/$d/"
done
echo "wrote $out/world/, $out/paper/ and $out/paper/PLAN.txt"
