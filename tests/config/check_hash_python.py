"""SHA-256 of miclip (file hasher and chunked in-memory hash) against Python's hashlib on
random inputs of lengths around every padding boundary and a few MiB (streaming path).
Usage: check_hash_python.py TEST_HASH_EXE WORKDIR"""
import hashlib
import os
import random
import subprocess
import sys

exe, work = sys.argv[1], sys.argv[2]
os.makedirs(work, exist_ok=True)
rnd = random.Random(20261126)
lengths = [0, 1, 3, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1000, 4095, 4096, 65537,
           (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 17]
lengths += [rnd.randrange(0, 300000) for _ in range(10)]
paths, expect = [], {}
for i, n in enumerate(lengths):
    p = os.path.join(work, f"rand_{i}.bin")
    data = rnd.randbytes(n)
    with open(p, "wb") as f:
        f.write(data)
    paths.append(p)
    expect[p] = hashlib.sha256(data).hexdigest()
out = subprocess.run([exe] + paths, check=True, capture_output=True, text=True).stdout
fails = 0
seen = 0
for line in out.splitlines():
    a, b, p = line.split("\t")
    seen += 1
    if a != expect[p] or b != expect[p]:
        fails += 1
        print(f"FAIL {p}: file {a} chunked {b} hashlib {expect[p]}")
if seen != len(paths):
    fails += 1
    print(f"FAIL: {seen} results for {len(paths)} files")
print(f"{len(paths) - fails} of {len(paths)} random inputs match hashlib")
sys.exit(1 if fails else 0)
