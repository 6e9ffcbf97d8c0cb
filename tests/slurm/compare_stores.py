#!/usr/bin/python3
"""compare_stores.py DIR_A DIR_B [--slurm]: two experiment output folders hold the same results.

Every HDF5 store (*.h5, matched by relative path: stage, task and key are in the names) has the
same datasets, each bitwise equal (activations, weights, curves), and the same content
attributes; the tables and reports (*.csv, *.md) are byte-equal. Run-specific provenance (host,
time, Slurm ids, rank count, the canonical config with its output_dir) may differ. With --slurm,
every store in DIR_A must also carry the slurm_job_id provenance attribute. Prints one line per
file; exit 0 only when all agree."""
import os
import sys

import h5py
import numpy as np

CONTENT_ATTRS = ("extract_key", "complete", "n_bad_images", "seed", "split", "stage", "model",
                 "clip_hash", "batch_size", "miclip_store")


def datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def same(a, b):
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        if datasets(x) != datasets(y):
            return "dataset lists differ: %s vs %s" % (datasets(x), datasets(y))
        for n in datasets(x):
            u, v = x[n][()], y[n][()]
            if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                return "dataset %s differs" % n
        for k in CONTENT_ATTRS:
            if (k in x.attrs) != (k in y.attrs) or (k in x.attrs and not np.array_equal(x.attrs[k], y.attrs[k])):
                return "attribute %s differs (%r vs %r)" % (k, x.attrs.get(k), y.attrs.get(k))
    return None


def files(d):
    out = []
    for root, _, names in os.walk(d):
        for n in names:
            if n.endswith((".h5", ".csv", ".md")):
                out.append(os.path.relpath(os.path.join(root, n), d))
    return sorted(out)


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    slurm = "--slurm" in sys.argv
    a, b = (files(d) for d in args)
    if not a or a != b:
        print("file lists differ: %s vs %s" % (a, b))
        return 1
    bad = 0
    for name in a:
        pa, pb = (os.path.join(d, name) for d in args)
        if not name.endswith(".h5"):
            why = None if open(pa, "rb").read() == open(pb, "rb").read() else "contents differ"
        else:
            why = same(pa, pb)
        if why is None and slurm and name.endswith(".h5"):
            with h5py.File(pa, "r") as f:
                if "slurm_job_id" not in f.attrs:
                    why = "no slurm_job_id provenance attribute"
                else:
                    print("  %s: slurm_job_id=%s slurm_array_task_id=%s" % (
                        name, f.attrs["slurm_job_id"], f.attrs.get("slurm_array_task_id")))
        print("%s %s%s" % ("same" if why is None else "DIFFERENT", name, "" if why is None else ": " + why))
        bad += why is not None
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
