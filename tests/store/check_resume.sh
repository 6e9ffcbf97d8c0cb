#!/usr/bin/env bash
# check_resume.sh MPIEXEC STORE_PROG: SIGKILL and resume at 2 ranks.
# An uninterrupted run writes 10 units of 7 rows with flush + mark per unit. Then runs are
# SIGKILLed (by the rank computing unit 4) at three points: after creating the datasets
# before any flush, after writing unit 4's rows but before its mark, and after the marks of
# units 4 and 5 are durable. Each rerun must open the store, recompute exactly the unmarked
# units (schedule: step k gives rank r pending unit 2k+r, so the marks of units 0-3 survive
# the "data" kill and 0-5 the "mark" kill) and end equal to the uninterrupted store.
# Rerunning a complete store must change nothing and exit 0.
set -u
mpiexec=$1; prog=$2
py=${MICLIP_PYTHON:-/usr/bin/python3}; ref=$MICLIP_SOURCE_DIR/tests/store/store_ref.py
fail=0; pass=0
export MC_EXPECT_VERSION=$("$mpiexec" -n 1 "$prog" version 2>/dev/null | head -1)
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { timeout 60 "$mpiexec" --oversubscribe -n 2 "$prog" "$@" 2>&1; }
dir=resume_work; rm -rf $dir; mkdir -p $dir
U=10; R=7

out=$(run units $dir/ref.h5 $U $R); [ $? -eq 0 ] && ok || bad "uninterrupted run: $out"
grep -q "already done: 0 of 10" <<<"$out" && grep -q "computed: 10 units" <<<"$out" && ok || bad "fresh run counts: $out"
"$py" "$ref" check $dir/ref.h5 $((U*R)) --units $U >/dev/null 2>&1 && ok || bad "h5py check of the reference"

for spec in "-1 nometa 0" "4 data 4" "4 mark 6"; do
  set -- $spec; k=$1; phase=$2; want=$3
  s=$dir/$phase.h5
  out=$(run units $s $U $R $k $phase); rc=$?
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || bad "$phase: killed run exited $rc (want non-zero, no timeout): $out"
  [ -e $s ] && ok || bad "$phase: no store at $s after the kill"
  [ -e $s.lock ] && ok || bad "$phase: the killed run's lock file should be left behind (stale, unlocked)"
  out=$(run units $s $U $R); rc=$?
  [ $rc -eq 0 ] && ok || bad "$phase: resume exited $rc: $out"
  grep -q "already done: $want of 10" <<<"$out" && ok || bad "$phase: resume should find $want units done: $out"
  grep -q "computed: $((U-want)) units" <<<"$out" && ok || bad "$phase: resume should compute $((U-want)): $out"
  out=$("$py" "$ref" compare $dir/ref.h5 $s 2>&1) && ok || bad "$phase: resumed store differs: $out"
done

# SIGKILL from outside, on every rank at once, at whatever point the run has reached after it
# reported its third step (units 0-5 marked; the kill lands between rows and marks).
s=$dir/external.h5
timeout 60 "$mpiexec" --oversubscribe -n 2 "$prog" units $s 20 $R -2 external > $dir/ext.log 2>&1 &
job=$!
for i in $(seq 1 300); do grep -q "marked step 2" $dir/ext.log && break; sleep 0.05; done
pids=$(awk '$1 == "pid" {print $3}' $dir/ext.log)
[ "$(wc -w <<<"$pids")" -eq 2 ] && ok || bad "external: no rank pids: $(cat $dir/ext.log)"
kill -9 $pids 2>/dev/null
wait $job; rc=$?
[ $rc -ne 0 ] && ok || bad "external: the killed run exited 0: $(cat $dir/ext.log)"
out=$(run units $dir/ref20.h5 20 $R) || bad "external: reference run: $out"
out=$(run units $s 20 $R); rc=$?
n=$(sed -n 's/^already done: \([0-9]*\) of 20 units$/\1/p' <<<"$out")
[ $rc -eq 0 ] && [ -n "$n" ] && [ "$n" -ge 6 ] && [ "$n" -lt 20 ] && ok || bad "external: resume: rc $rc, done '$n': $out"
out=$("$py" "$ref" compare $dir/ref20.h5 $s 2>&1) && ok || bad "external: resumed store differs: $out"

sum0=$(md5sum < $dir/data.h5)
out=$(run units $dir/data.h5 $U $R); rc=$?
[ $rc -eq 0 ] && grep -q "stage complete, nothing to do" <<<"$out" && ok || bad "rerun of a complete store: $rc $out"
[ "$(md5sum < $dir/data.h5)" = "$sum0" ] && ok || bad "rerun of a complete store changed the file"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
