#!/usr/bin/env bash
# check_config_mpi.sh MPIEXEC MICLIP NP WORKDIR: `miclip config` under NP ranks.
# A bad config must end every rank with a non-zero exit, the one-line message printed exactly
# once, within seconds (no rank left in a collective); a good config must exit 0 and print
# the hash once, equal to the single-process hash.
set -u
mpiexec=$1; miclip=$2; np=$3; work=$4
mkdir -p "$work"
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { timeout 30 "$mpiexec" --oversubscribe -n "$np" "$miclip" "$@"; }

cat > "$work/good.yaml" <<'YAML'
name: mpi
models: {target: m/t, clip: m/c}
datasets: {train: {kind: world, root: data}}
extract: {layers: ["1"]}
stages: [extract, align]
YAML
printf 'name: mpi\nmodels: {target: m/t, clip: m/c}\nextract: {layers: ["1"]}\nsae:\n  kk: 3\n' > "$work/bad.yaml"
printf 'name: mpi\nmodels: [unclosed\n' > "$work/malformed.yaml"

t0=$(date +%s)
out=$(run config "$work/bad.yaml" 2>&1); rc=$?
t1=$(date +%s)
[ $rc -eq 1 ] && ok || bad "bad config exited $rc (want 1): $out"
n=$(grep -c "bad.yaml:5:3: key 'sae.kk': unknown key (did you mean 'k'?)" <<<"$out")
[ "$n" -eq 1 ] && ok || bad "bad config message printed $n times: $out"
[ $((t1-t0)) -lt 20 ] && ok || bad "bad config took $((t1-t0)) s"

out=$(run config "$work/malformed.yaml" 2>&1); rc=$?
[ $rc -eq 1 ] && ok || bad "malformed config exited $rc: $out"
n=$(grep -c "malformed.yaml:3:1: malformed YAML" <<<"$out")
[ "$n" -eq 1 ] && ok || bad "malformed message printed $n times: $out"

out=$(run config "$work/missing.yaml" 2>&1); rc=$?
[ $rc -eq 1 ] && ok || bad "missing config exited $rc: $out"
n=$(grep -c "missing.yaml" <<<"$out")
[ "$n" -eq 1 ] && ok || bad "missing-file message printed $n times: $out"

want=$("$miclip" config --hash "$work/good.yaml" 2>&1)
out=$(run config --hash "$work/good.yaml" 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "good config exited $rc: $out"
[ "$out" = "$want" ] && ok || bad "hash under $np ranks '$out' differs from 1 process '$want'"
grep -Eq '^[0-9a-f]{64}$' <<<"$want" && ok || bad "not a hash: $want"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
