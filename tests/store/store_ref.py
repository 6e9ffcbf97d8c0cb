"""store_ref.py - h5py side of the store tests (Debian's /usr/bin/python3 with h5py).

  store_ref.py check STORE N [--units U]  reads a store written by `store_prog write STORE N ...`
                                          (or `units`), and checks every dataset's shape, dtype
                                          and values (computed here in numpy from the same
                                          formulas as store_prog.c), the store-id and the
                                          provenance attributes
  store_ref.py compare A B [B...]         datasets equal bitwise (dtype, shape, bytes), same
                                          objects, same attributes except the run-specific ones
                                          (each B against A)
  store_ref.py foreign DIR                writes HDF5 files that miclip must refuse
Exit code 0 only when every check passed.
"""
import os
import re
import subprocess
import sys

import h5py
import numpy as np

RUN_SPECIFIC = {"created_utc", "host", "mpi_ranks", "slurm_job_id", "slurm_array_job_id",
                "slurm_array_task_id", "slurm_restart_count", "completed_utc",
                "completed_slurm_job_id", "completed_slurm_restart_count"}

SPECS = [  # name, numpy dtype, shape (-1 = N rows), as in store_prog.c (index = ds number)
    ("extract/acts", np.float32, (-1, 3, 5)),
    ("extract/acts16", np.float16, (-1, 7)),
    ("extract/labels", np.int64, (-1,)),
    ("extract/pred", np.int32, (-1, 2)),
    ("extract/mask", np.uint8, (-1, 2, 2, 3)),
    ("tiny", np.uint8, (3, 2)),
    ("empty", np.float32, (0, 4)),
]

failures = 0


def check(cond, what):
    global failures
    if not cond:
        failures += 1
        print("FAIL:", what)


def expected(k, n):
    name, dt, shape = SPECS[k]
    shape = tuple(n if s < 0 else s for s in shape)
    rows = shape[0]
    re = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    r = np.arange(rows, dtype=np.int64)[:, None]
    c = np.arange(re, dtype=np.int64)[None, :]
    if dt in (np.float32, np.float16):
        # float32 arithmetic exactly as C: (float)(int % 1009) / 7.0f - 50.0f
        v = (((r * 131 + c * 7 + k * 1000) % 1009).astype(np.float32) / np.float32(7.0)) - np.float32(50.0)
        v = v.astype(np.float32)
        if dt == np.float16:
            v = v.astype(np.float16)  # round to nearest even, as mc_f32_to_f16
    elif dt == np.int64:
        v = r * 10000000000 + c * 3 - 5
    elif dt == np.int32:
        v = (-(r * 10 + c)).astype(np.int32)
    else:
        v = ((r * 7 + c) % 256).astype(np.uint8)
    return v.astype(dt).reshape(shape)


def as_str(v):
    return v.decode() if isinstance(v, bytes) else v


def cmd_check(path, n, units):
    miclip = os.environ.get("MICLIP")
    with h5py.File(path, "r") as f:
        check(as_str(f.attrs.get("miclip_store")) == "miclip-store/1", "store-id attribute")
        for k, (name, dt, _) in enumerate(SPECS):
            check(name in f, f"dataset {name} present")
            if name not in f:
                continue
            d = f[name]
            want = expected(k, n)
            check(d.dtype == np.dtype(dt), f"{name} dtype {d.dtype} want {np.dtype(dt)}")
            check(d.shape == want.shape, f"{name} shape {d.shape} want {want.shape}")
            got = d[()]
            check(got.tobytes() == want.tobytes(), f"{name} values differ from the formula")
        if "extract/acts" in f:
            check(f["extract/acts"].chunks == (4, 3, 5), f"acts chunks {f['extract/acts'].chunks}")
            check(f["extract/acts16"].chunks is None, "acts16 contiguous")
        a = f.attrs
        check(as_str(a.get("config_hash")) == "cfg-0123abcd", "config_hash")
        check(as_str(a.get("model")) == "tiny-vit@sha256:feed", "model")
        check(as_str(a.get("dataset")) == "world/train@n", "dataset")
        check(int(a.get("seed", -1)) == 17 and a["seed"].dtype == np.int64, "seed int64 17")
        check(int(a.get("mpi_ranks", 0)) >= 1, "mpi_ranks")
        check(len(as_str(a.get("created_utc", ""))) == 20, "created_utc ISO 8601")
        check(isinstance(a.get("host"), str), "host is a str")
        # the version the writer was built with (store_prog version), else the binary's
        want = os.environ.get("MC_EXPECT_VERSION")
        if not want and miclip:
            out = subprocess.run([miclip, "--version"], capture_output=True, text=True).stdout.split()
            want = out[1] if len(out) == 2 else "?"
        cv = as_str(a.get("code_version", ""))
        check(want is None or cv == want, f"code_version {cv!r}, want {want!r}")
        check(re.match(r"^\d+\.\d+\.\d+\+\S+$", cv) is not None, f"code_version {cv!r} format")
        if units:
            done = f["extract/_done"][()]
            check(done.dtype == np.uint8 and done.shape == (units,) and (done == 1).all(), "all units done")
        else:
            check(as_str(f["extract"].attrs.get("layer")) == "10", "extract@layer")
            check(float(f["extract/acts"].attrs.get("scale")) == 0.125, "acts@scale")
        check(int(f["extract"].attrs.get("complete", 0)) == 1, "extract complete")


def walk(f):
    out = {}
    f.visititems(lambda name, obj: out.__setitem__(name, obj))
    out["/"] = f
    return out


def cmd_compare(a_path, b_path):
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        oa, ob = walk(a), walk(b)
        check(sorted(oa) == sorted(ob), f"objects differ: {sorted(set(oa) ^ set(ob))}")
        n = 0
        for name in sorted(set(oa) & set(ob)):
            x, y = oa[name], ob[name]
            check(type(x) == type(y), f"{name}: kind differs")
            if isinstance(x, h5py.Dataset):
                n += 1
                check(x.dtype == y.dtype and x.shape == y.shape, f"{name}: {x.dtype}{x.shape} vs {y.dtype}{y.shape}")
                if x.dtype == y.dtype and x.shape == y.shape:
                    check(x[()].tobytes() == y[()].tobytes(), f"{name}: bytes differ")
            ka = set(x.attrs) - RUN_SPECIFIC
            kb = set(y.attrs) - RUN_SPECIFIC
            check(ka == kb, f"{name}: attributes differ: {sorted(ka ^ kb)}")
            for k in sorted(ka & kb):
                va, vb = x.attrs[k], y.attrs[k]
                check(type(va) == type(vb) and np.array_equal(va, vb), f"{name}@{k}: {va!r} vs {vb!r}")
        check(n > 0, "no datasets compared")
        print(f"compared {n} datasets")


def cmd_foreign(d):
    with h5py.File(os.path.join(d, "plain.h5"), "w") as f:
        f["x"] = np.arange(5)
    with h5py.File(os.path.join(d, "badver.h5"), "w") as f:
        f.attrs["miclip_store"] = "miclip-store/99"
    with h5py.File(os.path.join(d, "otherfmt.h5"), "w") as f:
        f.attrs["miclip_store"] = "somebody-else/1"
    with h5py.File(os.path.join(d, "intid.h5"), "w") as f:
        f.attrs["miclip_store"] = np.int64(1)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    if mode == "check":
        units = int(sys.argv[5]) if len(sys.argv) > 5 and sys.argv[4] == "--units" else 0
        cmd_check(sys.argv[2], int(sys.argv[3]), units)
    elif mode == "compare":
        for b in sys.argv[3:]:
            before = failures
            cmd_compare(sys.argv[2], b)
            if failures > before:
                print("FAIL: ^ in", b)
    elif mode == "foreign":
        cmd_foreign(sys.argv[2])
    else:
        print(__doc__)
        sys.exit(2)
    print(f"{failures} failures")
    sys.exit(1 if failures else 0)
