#!/usr/bin/python3
"""The MPI-free world generator's standalone driver (tools/world/world_gen.c): built by the gcc line
of tools/world/gpu_train.sh (`--driver-only`, no MPI on the include path or the link line), it
writes the same bytes as `miclip world make`, split over any number of processes, with and without
--masks; bad arguments exit 2 with a message naming the argument.

Usage: test_world_driver.py STB_DIR. Environment (set by ctest): MICLIP, MICLIP_SOURCE_DIR.
"""
import hashlib
import os
import subprocess
import sys
import tempfile

MICLIP = os.environ.get("MICLIP", "miclip")
SRC = os.environ["MICLIP_SOURCE_DIR"]
COUNTS = ["3", "2", "4"]  # per class, val per class, unseen per texture

failures = 0


def check(ok, msg):
    global failures
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    failures += not ok


def tree(root):
    """{relative path: sha256} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def same(a, b):
    ta, tb = tree(a), tree(b)
    diff = sorted(set(ta) ^ set(tb)) + sorted(k for k in set(ta) & set(tb) if ta[k] != tb[k])
    return ta == tb, "%d files, %d differ: %s" % (len(ta), len(diff), diff[:3])


def main():
    stb = sys.argv[1]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, WORK=tmp, STB_DIR=stb)
        r = subprocess.run(["bash", os.path.join(SRC, "tools/world/gpu_train.sh"), "--driver-only"],
                           cwd=SRC, env=env, capture_output=True, text=True)
        drv = os.path.join(tmp, "world_gen")
        check(r.returncode == 0 and os.access(drv, os.X_OK),
              "gpu_train.sh --driver-only builds world_gen with gcc alone %s" % r.stderr.strip()[-400:])
        if r.returncode != 0:
            return 1
        for masks in ([], ["--masks"]):
            ref = os.path.join(tmp, "ref" + "".join(masks))
            r = subprocess.run([MICLIP, "--quiet", "world", "make", "--out", ref, "--seed", "3",
                                "--per-class", COUNTS[0], "--val-per-class", COUNTS[1],
                                "--unseen-per-class", COUNTS[2]] + masks, capture_output=True, text=True)
            check(r.returncode == 0, "miclip world make %s %s" % (" ".join(masks), r.stderr.strip()))
            one = os.path.join(tmp, "one" + "".join(masks))
            r = subprocess.run([drv, one, "3"] + COUNTS + masks, capture_output=True, text=True)
            check(r.returncode == 0 and not r.stderr, "world_gen, one process %s" % r.stderr.strip())
            check(*same(ref, one))
            # three processes at once, each its own part; the world is whole once all exit 0
            parts = os.path.join(tmp, "parts" + "".join(masks))
            procs = [subprocess.Popen([drv, parts, "3"] + COUNTS + [str(k), "3"] + masks,
                                      stderr=subprocess.PIPE, text=True) for k in range(3)]
            errs = [p.communicate()[1] for p in procs]
            check(all(p.returncode == 0 for p in procs), "world_gen, 3 parts %s" % errs)
            ok, why = same(ref, parts)
            check(ok, "3 parts %s: the same bytes as miclip world make (%s)" % (" ".join(masks), why))
        bad = os.path.join(tmp, "bad")
        for args, rc, want in (([bad, "3", "x", "2", "4"], 2, "PER_CLASS"),
                               ([bad, "3", "3", "2", "4", "3", "3"], 2, "PART"),
                               ([bad, "-1", "3", "2", "4"], 2, "SEED"),
                               ([bad, "3", "0", "2", "4"], 1, "--per-class"),
                               ([bad, "3"], 2, "usage")):
            r = subprocess.run([drv] + args, capture_output=True, text=True)
            check(r.returncode == rc and want in r.stderr and r.stderr.count("\n") == 1,
                  "world_gen %s: exit %d, one line naming %s: %r" % (" ".join(args[1:]), r.returncode,
                                                                     want, r.stderr))
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
