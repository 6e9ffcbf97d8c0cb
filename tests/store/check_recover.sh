#!/usr/bin/env bash
# check_recover.sh MPIEXEC STORE_PROG: a store that is not complete is recoverable from any kill
# point, and a store whose contents contradict its record is refused as damaged (docs/store.md,
# "Recovery"). At 1 and 2 ranks, `store_prog recover` (probe, mc_store_resume, layout marked
# only when created) is killed by the store's test hook (MICLIP_TEST_KILL_AT_STORE_CALL) right
# after each of its store calls in turn -- inside mc_store_create, between the creation and the
# layout mark, between units, inside the completion -- and rerun; every rerun must exit 0 and
# leave a store equal to an uninterrupted run's (at 2 ranks every 2nd call by default; every
# call with MICLIP_TEST_EXHAUSTIVE=1). No timing is involved. Then: empty,
# zero-headed and truncated files are rebuilt; a text file and a foreign HDF5 file are refused
# and left unchanged; a store missing a dataset is refused by every open as damaged (naming the
# store, the dataset and the rebuild command) and rebuilt by mc_store_resume.
set -u
mpiexec=$1; prog=$2
py=${MICLIP_PYTHON:-/usr/bin/python3}; ref=$MICLIP_SOURCE_DIR/tests/store/store_ref.py
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { local np=$1; shift; timeout 120 "$mpiexec" --oversubscribe -n "$np" "$prog" "$@" 2>&1; }
dir=recover_work; rm -rf $dir; mkdir -p $dir
U=2; R=3

for np in 1 2; do
  r=$dir/ref$np.h5
  out=$(MICLIP_TEST_STORE_TRACE=1 run $np recover $r $U $R); rc=$?
  [ $rc -eq 0 ] && ok || bad "np $np: uninterrupted run exited $rc: $out"
  total=$(grep -c '^miclip\[0\] store call ' <<<"$out")
  layout=$(grep '^miclip\[0\] store call [0-9]*: mark_layout' <<<"$out" | sed 's/.*call \([0-9]*\):.*/\1/')
  [ "$total" -gt 20 ] && [ -n "$layout" ] && ok || bad "np $np: trace: $total calls, layout mark at '$layout'"
  # Every call at 1 rank; at 2 ranks every 2nd call, the ones around the layout mark and the
  # last (every call with MICLIP_TEST_EXHAUSTIVE=1).
  # MICLIP_TEST_SPARSE=1 (the sanitizer build, scripts/test.sh) keeps every 3rd (1 rank) or 6th
  # (2 ranks) call and the same neighbours: the slow instrumented build checks memory safety
  # on fewer kill points.
  stride=2; [ $np -eq 1 ] && stride=1
  [ "${MICLIP_TEST_SPARSE:-0}" = 1 ] && stride=$((stride * 3))
  if [ "${MICLIP_TEST_EXHAUSTIVE:-0}" = 1 ]; then points=$(seq 1 "$total")
  else points=$( (seq 1 $stride "$total"; echo $((layout-1)) $layout $((layout+1)) $total | tr ' ' '\n') | sort -n -u); fi
  nbad=0; nrebuilt=0; nresumed=0; npoints=0; kept=()
  for n in $points; do
    npoints=$((npoints+1))
    s=$dir/k$np-$n.h5
    out=$(MICLIP_TEST_KILL_AT_STORE_CALL=$n run $np recover $s $U $R); rc=$?
    if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then bad "np $np N=$n: run not killed (rc $rc)"; nbad=$((nbad+1)); continue; fi
    out=$(run $np recover $s $U $R); rc=$?
    if [ $rc -ne 0 ]; then bad "np $np N=$n: rerun exited $rc: $out"; nbad=$((nbad+1)); continue; fi
    grep -q "rebuilding it from scratch" <<<"$out" && nrebuilt=$((nrebuilt+1))
    grep -q "^reopened" <<<"$out" && nresumed=$((nresumed+1))
    kept+=($s)
  done
  # one h5py process compares every resumed store with the reference
  cmp=$("$py" "$ref" compare $r "${kept[@]}" 2>&1) || { bad "np $np: resumed stores differ: $cmp"; nbad=$((nbad+1)); }
  rm -f "${kept[@]}"
  [ $nbad -eq 0 ] && ok || bad "np $np: $nbad of $npoints kill points failed"
  [ $nrebuilt -gt 0 ] && [ $nresumed -gt 0 ] && ok || bad "np $np: rebuilt $nrebuilt, reopened $nresumed (want both > 0)"
  echo "np $np: killed after $npoints of $total store calls (layout marked at $layout): rebuilt $nrebuilt, reopened $nresumed"
  out=$(MICLIP_TEST_KILL_AT_STORE_CALL=$((total+1)) run $np recover $dir/past$np.h5 $U $R) && ok || bad "np $np: N past the end killed: $out"
done

# Files at the path that no writer ever flushed, or that HDF5 cannot open: rebuilt.
r=$dir/ref1.h5
: > $dir/empty.h5
head -c 4096 /dev/zero > $dir/zeros.h5
head -c 800 $r > $dir/trunc.h5
for f in empty zeros trunc; do
  out=$(run 2 recover $dir/$f.h5 $U $R); rc=$?
  [ $rc -eq 0 ] && grep -q "rebuilding it from scratch" <<<"$out" && ok || bad "$f: not rebuilt (rc $rc): $out"
  out=$("$py" "$ref" compare $r $dir/$f.h5 2>&1) && ok || bad "$f: rebuilt store differs: $out"
done
# Files that are not stores: refused, never rebuilt.
echo "not a store" > $dir/text.h5
"$py" "$ref" foreign $dir >/dev/null 2>&1
for f in text.h5 plain.h5; do
  [ -e $dir/$f ] || { bad "$f missing"; continue; }
  sum=$(md5sum < $dir/$f)
  out=$(run 2 recover $dir/$f $U $R); rc=$?
  [ $rc -ne 0 ] && ok || bad "$f: a file that is not a store was accepted: $out"
  [ "$(md5sum < $dir/$f)" = "$sum" ] && ok || bad "$f: was modified"
done

# A complete store with a dataset deleted: every open refuses it as damaged, exit 1 material
# (MC_ERR_FORMAT); mc_store_resume rebuilds it.
s=$dir/damaged.h5
cp $r $s
"$py" -c "import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); del f['extract/labels']" $s
for np in 1 2; do
  for mode in read write; do
    out=$(run $np expect $s $mode format "is damaged: its recorded layout has dataset '/extract/labels'"); rc=$?
    [ $rc -eq 0 ] && ok || bad "damaged ($mode, np $np): $out"
  done
done
out=$(run 1 expect $s read format "delete the store and rerun \`miclip units CONFIG\` to rebuild it") && ok || bad "damaged: no rebuild command: $out"
out=$(run 2 recover $s $U $R); rc=$?
[ $rc -eq 0 ] && grep -q "/extract/labels" <<<"$out" && grep -q "rebuilding it from scratch" <<<"$out" && ok \
  || bad "damaged: not rebuilt (rc $rc): $out"
out=$("$py" "$ref" compare $r $s 2>&1) && ok || bad "damaged: rebuilt store differs: $out"
sum=$(md5sum < $s)
out=$(run 2 recover $s $U $R); rc=$?
[ $rc -eq 0 ] && grep -q "stage complete, nothing to do" <<<"$out" && [ "$(md5sum < $s)" = "$sum" ] && ok \
  || bad "rerun of the complete store: rc $rc, changed?: $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
