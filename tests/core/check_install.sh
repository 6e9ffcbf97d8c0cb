#!/usr/bin/env bash
# check_install.sh CMAKE BUILD_DIR: `cmake --install BUILD_DIR --prefix P` into a temporary
# prefix gives a working `miclip` on PATH, its docs, the tiny world's models and a world.yaml
# that finds them in place and from a copy in another folder (README.md, "Install").
set -u
cmake=$1; build=$2
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
P=$tmp/prefix
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
"$cmake" --install "$build" --prefix "$P" >"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; echo "FAIL: cmake --install"; exit 1; }
export PATH=$P/bin:$PATH
[ "$(command -v miclip)" = "$P/bin/miclip" ] && ok || bad "miclip on PATH is $(command -v miclip)"
out=$(miclip --help 2>&1) && grep -q "^usage: miclip" <<<"$out" && ok || bad "miclip --help: $out"
for f in share/doc/miclip/README.md share/doc/miclip/docs/errors.md share/doc/miclip/docs/slurm.md \
         share/miclip/world/vit/model.safetensors share/miclip/world/clip/model.safetensors \
         share/miclip/world/resnet/config.json share/miclip/world/concepts.txt share/miclip/world.yaml; do
    [ -f "$P/$f" ] && ok || bad "not installed: $f"
done
# in place: models found in the prefix. The world's images are not made here, so the pre-flight
# (docs/preflight.md) must find exactly that missing and nothing about the installed models.
out=$(miclip config "$P/share/miclip/world.yaml" 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "datasets.train.root" <<<"$out" && ! grep -q "models\." <<<"$out" && ok ||
    bad "pre-flight of the installed config (only the images missing): $out"
out=$(MICLIP_PREFLIGHT=off miclip config "$P/share/miclip/world.yaml" 2>&1) && ok || bad "miclip config (installed): $out"
grep -q "target: \"$P/share/miclip/world/vit\"" <<<"$out" && ok || bad "installed config's target: $out"
grep -q "file: \"$P/share/miclip/world/concepts.txt\"" <<<"$out" && ok || bad "installed config's concepts: $out"
# a copy in a working folder: models still from the prefix, output and images beside the copy
mkdir -p "$tmp/work" && cp "$P/share/miclip/world.yaml" "$tmp/work/"
out=$(cd "$tmp/work" && miclip config world.yaml --tasks 2>&1) && ok || bad "miclip config (copy): $out"
grep -q "output_dir: \"$tmp/work/results/world\"" <<<"$out" && ok || bad "copy's output_dir: $out"
grep -q "target: \"$P/share/miclip/world/vit\"" <<<"$out" && ok || bad "copy's target: $out"
# the plan reads the installed models (config.json and weights)
out=$(cd "$tmp/work" && MICLIP_CALIBRATION=/nonexistent miclip plan world.yaml 2>&1) && ok || bad "miclip plan (copy): $out"
grep -q "^target: $P/share/miclip/world/vit, vit" <<<"$out" && ok || bad "plan's target: $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
