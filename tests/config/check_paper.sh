#!/usr/bin/env bash
# check_paper.sh MICLIP SRC: every paper config (SRC/experiments/paper/*.yaml) validates, expands
# its tasks, and plans. Their models and datasets live on a cluster, so the pre-flight is off and
# `miclip plan` reads the models' config.json from stand-ins: the committed copies of ViT-B/16's
# and CLIP-B/16's (slurm/paper/models/) and a ResNet-50 config written here with
# microsoft/resnet-50's published sizes (as tests/slurm/test_plan_flops.py). Also checks that the
# README maps every config and that every config names its tables or figures.
set -u
miclip=$1; src=$2
dir=$src/experiments/paper
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/resnet-50"
cat >"$tmp/resnet-50/config.json" <<'JSON'
{"architectures": ["ResNetForImageClassification"], "model_type": "resnet", "embedding_size": 64,
 "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3], "layer_type": "bottleneck",
 "num_channels": 3, "downsample_in_first_stage": false, "num_labels": 1000}
JSON
export MICLIP_PREFLIGHT=off MICLIP_CALIBRATION=/nonexistent
n=0; fail=0
for f in "$dir"/*.yaml; do
  n=$((n+1)); name=$(basename "$f")
  target=$(awk '$1 == "target:" {print $2; exit}' "$f")
  case "$target" in
    */vit-base-patch16-224) t=$src/slurm/paper/models/vit-base-patch16-224 ;;
    */clip-vit-base-patch16) t=$src/slurm/paper/models/clip-vit-base-patch16 ;;
    */resnet-50) t=$tmp/resnet-50 ;;
    *) echo "FAIL $name: no config.json stand-in for target '$target'"; fail=$((fail+1)); continue ;;
  esac
  if ! out=$("$miclip" --quiet config --tasks "$f" 2>&1); then
    echo "FAIL $name: miclip config: $out"; fail=$((fail+1)); continue
  fi
  tasks=$(grep -Ec '^[a-z]+ [0-9]+ [a-z]' <<<"$out")
  if ! plan=$("$miclip" --quiet plan "$f" --ranks 32 --threads 2 --target "$t" \
               --clip "$src/slurm/paper/models/clip-vit-base-patch16" 2>&1) ||
     ! grep -q '^total ' <<<"$plan"; then
    echo "FAIL $name: miclip plan: $plan"; fail=$((fail+1)); continue
  fi
  if ! grep -q "$name" "$dir/README.md"; then
    echo "FAIL $name: not in experiments/paper/README.md"; fail=$((fail+1)); continue
  fi
  if ! grep -Eq '^#.*(Table [1-4]|Figure [3-6])' "$f"; then
    echo "FAIL $name: its header names no table or figure of the paper"; fail=$((fail+1)); continue
  fi
  echo "ok $name ($tasks tasks; plan: $(grep '^total ' <<<"$plan" | tr -s ' '))"
done
echo "$n paper configs, $fail failed"
[ "$n" -gt 0 ] && [ "$fail" -eq 0 ]
