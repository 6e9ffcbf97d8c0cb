"""The report's paired one-tailed t-test (via tests/report/ttest_driver) against scipy.stats.ttest_rel
with alternative='greater' and 'less', and its mean / sample std against numpy (ddof=1), on random
paired samples of 2..40 pairs. Tolerances: 1e-9 relative on p (both are double-precision evaluations
of the same incomplete beta function; GSL and scipy's cephes differ in the last digits), 1e-12
relative on t, mean and std (the same formula in double, summed in a different order)."""
import subprocess
import sys

import numpy as np
from scipy import stats

driver = sys.argv[1]
rng = np.random.default_rng(20261126)
cases = []
for i in range(60):
    n = int(rng.integers(2, 41))
    x = rng.normal(rng.uniform(-50, 50), rng.uniform(0.1, 10), n)
    # Correlated partner with a shift of either sign, so both tails get small and large p.
    y = x + rng.normal(rng.uniform(-2, 2), rng.uniform(0.1, 3), n)
    cases.append((x, y))
text = "".join("%d\n" % len(x) + "".join("%.17g %.17g\n" % (a, b) for a, b in zip(x, y)) for x, y in cases)
out = subprocess.run([driver], input=text, capture_output=True, text=True, check=True).stdout.split("\n")

fails = 0
worst = 0.0


def rel(a, b):
    return abs(a - b) / max(abs(b), 1e-300)


for (x, y), line in zip(cases, out):
    mx, sx, md, t, df, pg, pl, st = line.split()
    mx, sx, md, t, df, pg, pl = map(float, (mx, sx, md, t, df, pg, pl))
    rg = stats.ttest_rel(x, y, alternative="greater")
    rl = stats.ttest_rel(x, y, alternative="less")
    checks = [(mx, np.mean(x), 1e-12), (sx, np.std(x, ddof=1), 1e-12), (md, np.mean(x - y), 1e-12),
              (t, rg.statistic, 1e-12), (df, len(x) - 1, 0), (pg, rg.pvalue, 1e-9), (pl, rl.pvalue, 1e-9)]
    for got, want, tol in checks:
        e = rel(got, want)
        worst = max(worst, e / tol if tol else (0 if e == 0 else float("inf")))
        if e > tol:
            fails += 1
            print("FAIL: n=%d got %.17g want %.17g (rel %.3g > %.3g)" % (len(x), got, want, e, tol))
    if st != "0":
        fails += 1
        print("FAIL: status", st)
print("%d cases, worst error %.3g of the tolerance; p range %.3g..%.3g" %
      (len(cases), worst, min(float(l.split()[5]) for l in out if l), max(float(l.split()[5]) for l in out if l)))
print("%d failed" % fails)
sys.exit(1 if fails or len([l for l in out if l]) != len(cases) else 0)
