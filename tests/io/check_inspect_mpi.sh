#!/usr/bin/env bash
# check_inspect_mpi.sh MPIEXEC MICLIP NP CORPUS_DIR: `miclip inspect` under mpirun at NP ranks.
# A good file or model folder exits 0 and is listed once; a hostile file, a bad config and a
# missing file exit 1 within 20 s with the error (naming the file) printed exactly once; a
# missing argument is a usage error (2).
set -u
mpiexec=$1; miclip=$2; np=$3; corpus=$4
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { timeout 20 "$mpiexec" --oversubscribe -n "$np" "$miclip" inspect "$@"; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# 33 = 12 + 1 + 4 + 3 + 5 + 1 + 0 + 3 + 2 + 2 elements (make_corpus.py valid_small)
out=$(run "$corpus/valid_small.safetensors" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "good file exited $rc: $out"
[ "$(grep -c 'parameters: 33,' <<<"$out")" -eq 1 ] && ok || bad "good file not listed once: $out"
grep -q 'logit_scale  *F32  *\[\]  *4$' <<<"$out" && ok || bad "scalar line missing: $out"

for f in overlap.safetensors header_len_past_eof.safetensors duplicate_tensor.safetensors short_7_bytes.safetensors; do
  t0=$(date +%s)
  out=$(run "$corpus/$f" 2>&1); rc=$?
  t1=$(date +%s)
  [ $rc -eq 1 ] && ok || bad "$f exited $rc (want 1): $out"
  n=$(grep -c "error.*$f" <<<"$out")
  [ "$n" -eq 1 ] && ok || bad "$f: error printed $n times: $out"
  [ $((t1-t0)) -lt 15 ] && ok || bad "$f took $((t1-t0)) s"
done

out=$(run "$tmp/absent.safetensors" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(grep -c 'absent.safetensors' <<<"$out")" -eq 1 ] && ok || bad "missing file: rc $rc: $out"

# a model folder: config.json + model.safetensors
mkdir -p "$tmp/vit"
cp "$corpus/valid_small.safetensors" "$tmp/vit/model.safetensors"
echo '{"architectures": ["ViTForImageClassification"], "model_type": "vit", "id2label": {"0": "cat", "1": "dog"}}' >"$tmp/vit/config.json"
out=$(run --summary "$tmp/vit" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "model folder exited $rc: $out"
grep -q 'family: *vit' <<<"$out" && grep -q 'labels: *2 ' <<<"$out" && ! grep -q 'logit_scale' <<<"$out" \
  && ok || bad "model folder listing: $out"
echo '{"architectures": ["BertModel"], "model_type": "bert"}' >"$tmp/vit/config.json"
out=$(run "$tmp/vit" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(grep -c 'HINT' <<<"$out")" -eq 1 ] && ok || bad "unsupported folder: rc $rc: $out"
cp "$corpus/gap.safetensors" "$tmp/vit/model.safetensors"
echo '{"architectures": ["CLIPModel"]}' >"$tmp/vit/config.json"
out=$(run "$tmp/vit" 2>&1); rc=$?
[ $rc -eq 1 ] && [ "$(grep -c "model.safetensors: tensor 'b'" <<<"$out")" -eq 1 ] && ok || bad "bad weights in folder: rc $rc: $out"

out=$(run 2>&1); rc=$?
[ $rc -eq 2 ] && ok || bad "no argument exited $rc (want 2): $out"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
