#!/usr/bin/env bash
# check_ranks.sh MPIEXEC STORE_PROG: the same store from 1, 2 and 4 ranks.
# Writes a deterministic multi-dataset store (rows sharded over ranks, collective batches of
# 5 rows, a 3-row dataset that some ranks have no rows of, an empty dataset) at each rank
# count; h5py checks the 1-rank store against the formulas and provenance, and the 2- and
# 4-rank stores must equal it dataset by dataset, bitwise. `miclip store show` must list it.
set -u
mpiexec=$1; prog=$2
py=${MICLIP_PYTHON:-/usr/bin/python3}; ref=$MICLIP_SOURCE_DIR/tests/store/store_ref.py
fail=0; pass=0
export MC_EXPECT_VERSION=$("$mpiexec" -n 1 "$prog" version 2>/dev/null | head -1)
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
dir=ranks_work; rm -rf $dir; mkdir -p $dir
N=23
for np in 1 2 4; do
  out=$(timeout 60 "$mpiexec" --oversubscribe -n $np "$prog" write $dir/np$np.h5 $N 5 2>&1)
  [ $? -eq 0 ] && ok || bad "write at $np ranks: $out"
done
out=$("$py" "$ref" check $dir/np1.h5 $N 2>&1) && ok || bad "h5py check of the 1-rank store: $out"
for np in 2 4; do
  out=$("$py" "$ref" compare $dir/np1.h5 $dir/np$np.h5 2>&1) && ok || bad "np$np vs np1: $out"
done
# The comparison must be able to fail: flip one byte of a copy's data and compare again.
cp $dir/np2.h5 $dir/flip.h5
"$py" - $dir/flip.h5 <<'PY'
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    d = f["extract/labels"]; v = d[()]; v[7] += 1; d[...] = v
PY
out=$("$py" "$ref" compare $dir/np1.h5 $dir/flip.h5 2>&1) && bad "a changed value went unnoticed" || ok
out=$(timeout 60 "$mpiexec" --oversubscribe -n 2 "$MICLIP" store show $dir/np4.h5 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "store show exited $rc: $out"
grep -q '^/extract/acts  F32 \[23, 3, 5\]  (chunks of 4 rows)' <<<"$out" && ok || bad "show: acts line: $out"
grep -q '^/extract/acts16  F16 \[23, 7\]' <<<"$out" && ok || bad "show: acts16 line"
grep -q '@config_hash = "cfg-0123abcd"' <<<"$out" && ok || bad "show: provenance"
grep -q 'stage complete' <<<"$out" && ok || bad "show: stage complete"
[ "$(grep -c '^store ' <<<"$out")" -eq 1 ] && ok || bad "show printed more than once"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
