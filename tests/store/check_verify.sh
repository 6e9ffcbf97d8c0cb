#!/usr/bin/env bash
# check_verify.sh MPIEXEC STORE_PROG: issue 16, dataset checksums.
# A complete store (written at 1 and 2 ranks) carries a sha256 attribute on every dataset of its
# complete group, equal to hashlib's over h5py's bytes; `miclip store verify` passes it at 1 and 2
# ranks. Then one byte of a dataset's raw data is changed in the file (outside HDF5, at the offset
# h5py reports) and another dataset is rewritten through h5py: verify exits 1 on every rank with
# exactly one line per damaged dataset, and a downstream whole read (collective, widened, or
# rank 0 alone) fails with a message naming the store and dataset. No rank may hang.
set -u
mpiexec=$1; prog=$2
py=${MICLIP_PYTHON:-/usr/bin/python3}
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
dir=verify_work; rm -rf $dir; mkdir -p $dir
run() { timeout 60 "$mpiexec" --oversubscribe "$@"; }
# per-rank exit codes: each rank's status lands in $dir/rc.<rank>
ranks_rc() { rm -f $dir/rc.*; local np=$1; shift
  run -n $np sh -c 'r=$OMPI_COMM_WORLD_RANK; "$0" "$@"; c=$?; echo $c > '"$dir"'/rc.$r; exit 0' "$@"; }
all_failed() { local np=$1 k; for ((k = 0; k < np; k++)); do
  [ -f $dir/rc.$k ] && [ "$(cat $dir/rc.$k)" != 0 ] || return 1; done; }

for np in 1 2; do
  out=$(run -n $np "$prog" write $dir/s$np.h5 23 5 2>&1) && ok || bad "write at $np: $out"
done
# the recorded checksums are SHA-256 of the little-endian bytes, as hashlib computes them
out=$("$py" - $dir/s1.h5 $dir/s2.h5 <<'PY' 2>&1
import hashlib, sys, h5py
names = []
for path in sys.argv[1:]:
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.startswith("extract/"):
                names.append(name)
                want = hashlib.sha256(obj[()].astype(obj.dtype.newbyteorder("<")).tobytes()).hexdigest()
                got = obj.attrs.get("sha256")
                assert got == want, (path, name, got, want)
            elif isinstance(obj, h5py.Dataset):
                assert "sha256" not in obj.attrs, (path, name, "outside the complete group")
        f.visititems(visit)
assert len(names) == 10, names
print("ok", len(names))
PY
) && ok || bad "h5py/hashlib cross-check: $out"
for np in 1 2; do
  out=$(run -n $np "$MICLIP" store verify $dir/s1.h5 $dir/s2.h5 2>&1); rc=$?
  [ $rc -eq 0 ] && ok || bad "verify of intact stores at $np ranks exited $rc: $out"
  [ "$(grep -c ': ok, 5 dataset(s) match' <<<"$out")" -eq 2 ] && ok || bad "verify ok lines at $np: $out"
done
out=$(run -n 2 "$prog" read $dir/s2.h5 extract/acts16 f64 2>&1) && ok || bad "intact widened read: $out"

# damage: one byte of /extract/labels in the file itself; /extract/acts16 rewritten via h5py
cp $dir/s2.h5 $dir/bad.h5
"$py" - $dir/bad.h5 <<'PY' || bad "corrupting with h5py"
import sys, h5py
path = sys.argv[1]
with h5py.File(path, "r") as f:
    off = f["extract/labels"].id.get_offset()
with open(path, "r+b") as g:
    g.seek(off + 8 * 7 + 2)
    b = g.read(1)
    g.seek(off + 8 * 7 + 2)
    g.write(bytes([b[0] ^ 0x10]))
with h5py.File(path, "r+") as f:
    d = f["extract/acts16"]; v = d[()]; v[3, 1] += 1; d[...] = v
PY
for np in 1 2; do
  out=$(ranks_rc $np "$MICLIP" store verify $dir/s1.h5 $dir/bad.h5 2>&1); rc=$(cat $dir/rc.0 2>/dev/null || echo none)
  [ $rc -eq 1 ] && ok || bad "verify of a damaged store at $np ranks exited $rc: $out"
  all_failed $np && ok || bad "verify at $np ranks: not every rank exited non-zero"
  [ "$(grep -c 'checksum mismatch' <<<"$out")" -eq 2 ] && ok || bad "verify at $np: want 2 mismatch lines: $out"
  grep -q "bad.h5: dataset '/extract/labels': checksum mismatch (recorded sha256 [0-9a-f]\{64\}, computed [0-9a-f]\{64\})" <<<"$out" \
    && ok || bad "verify at $np: labels line: $out"
  grep -q "bad.h5: dataset '/extract/acts16': checksum mismatch" <<<"$out" && ok || bad "verify at $np: acts16 line"
  grep -q "s1.h5: ok" <<<"$out" && ok || bad "verify at $np: the intact store"
done
# downstream readers
for np in 1 2; do
  out=$(ranks_rc $np "$prog" read $dir/bad.h5 extract/labels native 2>&1)
  all_failed $np && ok || bad "collective read at $np: not every rank failed: $out"
  grep -q "store '$dir/bad.h5': dataset '/extract/labels' does not match the checksum recorded when its stage completed" <<<"$out" \
    && ok || bad "read at $np: message: $out"
done
out=$(run -n 2 "$prog" read $dir/bad.h5 extract/acts16 f64 2>&1) && bad "widened read of damaged data passed: $out" || ok
grep -q "'/extract/acts16' does not match the checksum" <<<"$out" && ok || bad "widened read message: $out"
out=$(run -n 2 "$prog" read $dir/bad.h5 extract/labels native rank0 2>&1) && bad "rank-0 read passed: $out" || ok
out=$(run -n 2 "$prog" read $dir/bad.h5 extract/acts native 2>&1) && ok || bad "an intact dataset of a damaged store: $out"
# not a store at all: one line, exit 1
echo "text" > $dir/notastore.h5
out=$(run -n 2 "$MICLIP" store verify $dir/notastore.h5 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "notastore.h5: cannot verify" <<<"$out" && ok || bad "verify of a non-store: $rc $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
