#!/usr/bin/env bash
# make-examples.sh MICLIP: regenerates the example scripts in slurm/world/ and slurm/paper/ and
# slurm/paper/PLAN.txt with `miclip slurm` / `miclip plan`. The absolute path of this checkout
# is replaced by /path/to/miclip in the committed copies: on a cluster, run `miclip slurm`
# yourself (docs/slurm.md) rather than editing these.
set -euo pipefail
MICLIP=${1:?usage: slurm/make-examples.sh path/to/miclip}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
paper_models=(--target slurm/paper/models/vit-base-patch16-224 --clip slurm/paper/models/clip-vit-base-patch16)
export MICLIP_CALIBRATION=/nonexistent   # the committed examples use the documented defaults

"$MICLIP" --quiet slurm experiments/world.yaml --out slurm/world --miclip miclip \
    --ntasks-per-node 2 --cpus-per-task 1
"$MICLIP" --quiet slurm experiments/paper/vit_b16_imagenet.yaml --out slurm/paper --miclip miclip \
    --nodes 1 --ntasks-per-node 32 --cpus-per-task 2 "${paper_models[@]}" 2>/dev/null
{
    echo "# miclip plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 \\"
    echo "#     --target slurm/paper/models/vit-base-patch16-224 --clip slurm/paper/models/clip-vit-base-patch16"
    echo "# (config.json copies of the published models; written by slurm/make-examples.sh)"
    echo
    "$MICLIP" --quiet plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 "${paper_models[@]}"
    if [ -n "${CALIBRATION:-}" ]; then
        echo
        echo "# The same with the calibration measured on the development machine ($CALIBRATION):"
        echo
        "$MICLIP" --quiet plan experiments/paper/vit_b16_imagenet.yaml --ranks 32 --threads 2 \
            "${paper_models[@]}" --calibration "$CALIBRATION" | sed "s#$CALIBRATION#calibration.json#"
    fi
} >slurm/paper/PLAN.txt
for f in slurm/world/*.sbatch slurm/world/submit.sh slurm/paper/*.sbatch slurm/paper/submit.sh; do
    sed -i "s#$root#/path/to/miclip#g" "$f"
done
rmdir slurm/world/logs slurm/paper/logs 2>/dev/null || true
echo "wrote slurm/world/, slurm/paper/ and slurm/paper/PLAN.txt"
