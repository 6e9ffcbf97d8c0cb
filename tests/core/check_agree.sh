#!/usr/bin/env bash
# check_agree.sh MPIEXEC TEST_AGREE NP: the collective error protocol at NP ranks.
# Asserts exit codes, that the agreed message is printed exactly once, that no run takes more
# than 20 s (no rank left blocked), and that shards tile [0, N) with no gap or overlap.
set -u
mpiexec=$1; exe=$2; np=$3
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { timeout 20 "$mpiexec" --oversubscribe -n "$np" "$exe" "$@"; }

out=$(run ok 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "ok mode exited $rc: $out"

t0=$(date +%s)
out=$(run fail-last 2>&1); rc=$?
t1=$(date +%s)
[ $rc -eq 1 ] && ok || bad "fail-last exited $rc (want 1): $out"
n=$(grep -c "found a bad tensor" <<<"$out")
[ "$n" -eq 1 ] && ok || bad "fail-last printed the message $n times: $out"
[ $((t1-t0)) -lt 15 ] && ok || bad "fail-last took $((t1-t0)) s"

t0=$(date +%s)
out=$(run abort-last 2>&1); rc=$?
t1=$(date +%s)
[ $rc -ne 0 ] && [ $rc -ne 124 ] && ok || bad "abort-last exited $rc (want non-zero, no timeout): $out"
grep -q "disk full writing shard" <<<"$out" && ok || bad "abort-last message missing: $out"
[ $((t1-t0)) -lt 15 ] && ok || bad "abort-last took $((t1-t0)) s"

for N in 0 1 7 100; do
  out=$(run shard $N 2>/dev/null | grep '^shard' | sort -k3 -n)
  expect=0; good=1
  while read -r _ r b e; do
    [ "$b" -eq "$expect" ] || good=0
    expect=$e
  done <<<"$out"
  [ "$expect" -eq "$N" ] && [ $good -eq 1 ] && ok || bad "shards of $N do not tile: $out"
done

# Fixed-point sums: the same bits as rank 0's serial sum (checked inside), and as the 1-rank
# total this test computes itself (the bits do not depend on the rank count).
out=$(run fixsum 2>&1); rc=$?
one=$(timeout 20 "$mpiexec" --oversubscribe -n 1 "$exe" fixsum 2>&1)
[ $rc -eq 0 ] && grep -q '^fixsum ' <<<"$out" && ok || bad "fixsum exited $rc: $out"
[ "$(grep '^fixsum ' <<<"$out")" = "$(grep '^fixsum ' <<<"$one")" ] && ok ||
  bad "fixsum at $np ranks ($out) differs from 1 rank ($one)"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
