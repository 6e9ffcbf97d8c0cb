#!/usr/bin/env bash
# check_lock.sh MPIEXEC STORE_PROG: the writer lock and refused files.
# A 2-rank writer holds a store; a second 2-rank writer gets MC_ERR_LOCKED on every rank, with
# the holder's pid in the message; a reader (miclip store show) still works; a completeness peek
# waits for the writer (or reports the lock when told not to wait); after the holder is
# SIGKILLed the lock is free and the waiting peek goes on. Files miclip did not write are
# refused: a text file, an h5py file without the store-id, another format, another version, an
# integer id.
set -u
mpiexec=$1; prog=$2
py=${MICLIP_PYTHON:-/usr/bin/python3}; ref=$MICLIP_SOURCE_DIR/tests/store/store_ref.py
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
run() { timeout 60 "$mpiexec" --oversubscribe -n 2 "$@" 2>&1; }
dir=lock_work; rm -rf $dir; mkdir -p $dir
s=$dir/s.h5

out=$(run "$prog" write $s 9 4) && ok || bad "write: $out"
timeout 60 "$mpiexec" --oversubscribe -n 2 "$prog" hold $s $dir/ready > $dir/hold.log 2>&1 &
holder=$!
for i in $(seq 1 200); do [ -s $dir/ready.0 ] && [ -s $dir/ready.1 ] && break; sleep 0.1; done
[ -s $dir/ready.0 ] && ok || bad "holder never got the store: $(cat $dir/hold.log)"
pid0=$(cat $dir/ready.0); pid1=$(cat $dir/ready.1)
out=$(run "$prog" expect $s write locked "pid $pid0"); [ $? -eq 0 ] && ok || bad "second writer: $out"
grep -q "being written by another run" <<<"$out" && ok || bad "lock message: $out"
out=$(run "$prog" expect $s read ok) && ok || bad "a reader is blocked by the writer: $out"
# a stage's completeness peek does not read a store another run is writing (its file may be
# half-flushed: a Slurm array's tasks share prefix and oracle stores), it reports the lock
out=$(MICLIP_STORE_WAIT_S=0 run "$prog" expect $s peek locked "being written by another run") && ok || bad "peek while written: $out"
# ... and by default waits for that writer: released once the peek says it waits, it finds the store
run "$prog" expect $s peek ok > $dir/peek.log 2>&1 &
peeker=$!
for i in $(seq 1 600); do grep -q "waiting for it" $dir/peek.log && break; sleep 0.1; done
grep -q "waiting for it" $dir/peek.log && ok || bad "the peek did not say it waits: $(cat $dir/peek.log)"
out=$(run "$MICLIP" store show $s); rc=$?
[ $rc -eq 0 ] && ok || bad "store show while locked exited $rc: $out"
kill -9 $pid0 $pid1 2>/dev/null
wait $holder 2>/dev/null
wait $peeker && ok || bad "the waiting peek failed after the writer died: $(cat $dir/peek.log)"
out=$(run "$prog" expect $s write ok) && ok || bad "lock not free after SIGKILL: $out"

printf 'not an hdf5 file\n' > $dir/text.h5
: > $dir/zero.h5
"$py" "$ref" foreign $dir >/dev/null 2>&1 && ok || bad "h5py could not write the foreign files"
for spec in "text.h5 format not an HDF5 file" "zero.h5 format not an HDF5 file" \
            "plain.h5 format not a miclip store" "otherfmt.h5 format not a miclip store" \
            "badver.h5 unsupported miclip-store/99" "intid.h5 format wrong type" \
            "missing.h5 io cannot open"; do
  set -- $spec; f=$1; code=$2; shift 2
  out=$(run "$prog" expect $dir/$f write $code "$*") && ok || bad "$f: $out"
done
# the CLI reports a refused file once, with a non-zero exit
out=$(run "$MICLIP" store show $dir/plain.h5); rc=$?
[ $rc -eq 1 ] && [ "$(grep -c 'not a miclip store' <<<"$out")" -eq 1 ] && ok || bad "show plain.h5: rc $rc: $out"
# a foreign file is not modified by a refused open
sum0=$(md5sum < $dir/plain.h5); run "$prog" expect $dir/plain.h5 write format >/dev/null
[ "$(md5sum < $dir/plain.h5)" = "$sum0" ] && ok || bad "refused open changed plain.h5"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
