"""mc_psgemm (include/miclip/pblas.h) at 1, 2, 3 and 4 ranks against numpy in float64.

    test_pblas.py TEST_PBLAS_EXE

Each run builds A (M x K) and B (K x N) from their global indices (a splitmix64 hash, recomputed
here independently), multiplies them on the ranks' near-square BLACS grid (1x1, 1x2, 1x3, 2x2)
in NB x NB blocks, and rank 0 writes A, B and C. Checked, for two shapes that leave partial
blocks:

- A and B equal the generator's matrices (the block-cyclic layout and the gather place every
  entry), identical at every rank count;
- the stated tolerance (pblas.h): |C_P - C| <= gamma_K (|A| |B|) entrywise against numpy's
  float64 product, gamma_K = K u / (1 - K u), u = 2^-24, and |C_P - C_1| <= 2 gamma_K (|A| |B|);
- rankings: each row's top-5 columns (score descending, index ascending) are the same set at
  every rank count wherever the float64 gap at the cut exceeds 2 gamma_K (|A| |B|) (B's columns
  3j and 3j+1 are equal, so exact real ties exist and such rows are the ones left out);
- a 0-row matrix, and B's row blocks unlike A's column blocks: one error line, non-zero exit
  on every rank.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

EXE = sys.argv[1]
MPIEXEC = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
U = 2.0 ** -24


def gen(seed, rows, cols):
    """The test's generator (test_pblas.c `gen`), in wrapping uint64 arithmetic."""
    with np.errstate(over="ignore"):
        i = np.arange(rows, dtype=np.uint64)[:, None]
        j = np.arange(cols, dtype=np.uint64)[None, :]
        z = np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15) + i * np.uint64(0xBF58476D1CE4E5B9) + j
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return ((z >> np.uint64(40)).astype(np.float64) / float(1 << 23) - 1.0).astype(np.float32)


def run(p, m, k, n, nb, out, *extra):
    r = subprocess.run([MPIEXEC, "--oversubscribe", "-n", str(p), EXE, str(m), str(k), str(n),
                        str(nb), out, *extra], capture_output=True, text=True, timeout=240)
    return r


def load(path):
    with open(path, "rb") as f:
        m, k, n = np.frombuffer(f.read(24), dtype=np.int64)
        a = np.frombuffer(f.read(4 * m * k), dtype=np.float32).reshape(m, k)
        b = np.frombuffer(f.read(4 * k * n), dtype=np.float32).reshape(k, n)
        c = np.frombuffer(f.read(4 * m * n), dtype=np.float32).reshape(m, n)
    return a, b, c


def top(c, t):
    # (score descending, index ascending), as mc_top_insert
    order = np.lexsort((np.arange(c.shape[1])[None, :].repeat(c.shape[0], 0), -c), axis=1)
    return order[:, :t]


def check_shape(tmp, m, k, n, nb):
    a_ref = gen(1, m, k)
    a_ref[a_ref < -0.5] = 0.0
    cols = np.arange(n)
    cols[cols % 3 == 1] -= 1
    b_ref = gen(2, k, int(cols.max()) + 1)[:, cols]
    c64 = a_ref.astype(np.float64) @ b_ref.astype(np.float64)
    gamma = k * U / (1 - k * U)
    bound = gamma * (np.abs(a_ref).astype(np.float64) @ np.abs(b_ref).astype(np.float64))
    res = {}
    for p in (1, 2, 3, 4):
        out = os.path.join(tmp, f"c{m}-{p}.bin")
        r = run(p, m, k, n, nb, out)
        assert r.returncode == 0, (p, r.stdout, r.stderr)
        a, b, c = load(out)
        assert np.array_equal(a, a_ref), f"{p} ranks: A misplaced"
        assert np.array_equal(b, b_ref), f"{p} ranks: B misplaced"
        err = np.abs(c.astype(np.float64) - c64)
        worst = float((err / np.maximum(bound, 1e-300)).max())
        assert np.all(err <= bound), f"{p} ranks: |C - C64| above gamma_K |A||B| ({worst:.3g}x)"
        print(f"  {m}x{k}x{n} nb {nb}, {p} rank(s): {r.stdout.strip()}; max |C-C64| = "
              f"{err.max():.3g} = {worst:.3g} x the bound")
        res[p] = c
    t = 5
    c1 = res[1]
    s = np.sort(c64, axis=1)[:, ::-1]
    gap = s[:, t - 1] - s[:, t]
    stable = gap > 2 * bound.max(axis=1)
    assert stable.sum() >= m // 2, f"only {stable.sum()} of {m} rows with a clear top-{t} cut"
    ref_sets = [set(r) for r in top(c64, t)[stable]]
    for p, c in res.items():
        assert np.all(np.abs(c.astype(np.float64) - c1) <= 2 * bound), f"{p} ranks vs 1 rank"
        got = [set(r) for r in top(c.astype(np.float64), t)[stable]]
        assert got == ref_sets, f"{p} ranks: top-{t} sets differ on a row with a clear cut"
        same = int(np.sum(c == c1))
        print(f"  {p} rank(s): {same} of {c.size} entries bitwise equal to 1 rank; top-{t} equal "
              f"on the {int(stable.sum())} of {m} rows with a clear cut")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        check_shape(tmp, 300, 517, 211, 32)
        check_shape(tmp, 97, 1000, 130, 16)
        r = run(2, 0, 10, 10, 8, os.path.join(tmp, "bad.bin"))
        lines = [l for l in r.stderr.splitlines() if "out of ScaLAPACK's range" in l]
        assert r.returncode != 0 and len(lines) == 1, (r.returncode, r.stderr)
        print("  0-row matrix:", lines[0])
        r = run(2, 40, 50, 60, 8, os.path.join(tmp, "bad.bin"), "mismatch")
        lines = [l for l in r.stderr.splitlines() if "psgemm:" in l]
        assert r.returncode != 0 and len(lines) == 1, (r.returncode, r.stderr)
        print("  mismatched blocks:", lines[0])
    print("pblas: ok")


main()
