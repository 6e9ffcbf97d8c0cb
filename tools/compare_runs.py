#!/usr/bin/python3
"""compare_runs.py A B: are two miclip output folders the same run?

Every file that is not an HDF5 store must be byte-identical. Every store must hold the same
groups, datasets (same dtype, shape and bytes) and attributes, except the attributes that say
when and by which build it was written (created_utc, completed_utc, code_version, build_info),
which differ between any two runs. Prints each difference; exit 0 when there is none.
Used to show that a refactoring keeps the main job's outputs (docs/architecture.md).
"""
import os
import sys

import h5py
import numpy as np

VOLATILE = {"created_utc", "completed_utc", "code_version", "build_info"}


def files(root):
    out = set()
    for d, _, names in os.walk(root):
        for n in names:
            out.add(os.path.relpath(os.path.join(d, n), root))
    return out


def same_value(x, y):
    if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
        x, y = np.asarray(x), np.asarray(y)
        return x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()
    return type(x) is type(y) and x == y


def compare_store(pa, pb, rel, diffs):
    with h5py.File(pa, "r") as a, h5py.File(pb, "r") as b:
        names_a, names_b = [], []
        a.visit(names_a.append)
        b.visit(names_b.append)
        for n in sorted(set(names_a) ^ set(names_b)):
            diffs.append(f"{rel}: /{n} only in {'A' if n in names_a else 'B'}")
        for n in [""] + sorted(set(names_a) & set(names_b)):
            oa, ob = (a[n], b[n]) if n else (a, b)
            if isinstance(oa, h5py.Dataset) != isinstance(ob, h5py.Dataset):
                diffs.append(f"{rel}: /{n} is a dataset in one store only")
                continue
            if isinstance(oa, h5py.Dataset):
                va, vb = oa[()], ob[()]
                if not same_value(np.asarray(va), np.asarray(vb)):
                    diffs.append(f"{rel}: dataset /{n} differs")
            ka = set(oa.attrs.keys()) - VOLATILE
            kb = set(ob.attrs.keys()) - VOLATILE
            for k in sorted(ka ^ kb):
                diffs.append(f"{rel}: attribute {k} of /{n} only in {'A' if k in ka else 'B'}")
            for k in sorted(ka & kb):
                if not same_value(oa.attrs[k], ob.attrs[k]):
                    diffs.append(f"{rel}: attribute {k} of /{n} differs")


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: compare_runs.py OUTPUT_A OUTPUT_B")
    ra, rb = sys.argv[1:]
    fa, fb = files(ra), files(rb)
    diffs = [f"{f}: only in {'A' if f in fa else 'B'}" for f in sorted(fa ^ fb)]
    n_stores = n_files = 0
    for rel in sorted(fa & fb):
        pa, pb = os.path.join(ra, rel), os.path.join(rb, rel)
        if rel.endswith(".h5"):
            n_stores += 1
            compare_store(pa, pb, rel, diffs)
        else:
            n_files += 1
            with open(pa, "rb") as x, open(pb, "rb") as y:
                if x.read() != y.read():
                    diffs.append(f"{rel}: bytes differ")
    for d in diffs:
        print(d)
    print(f"compare_runs: {n_stores} stores, {n_files} other files, {len(diffs)} difference(s)")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
