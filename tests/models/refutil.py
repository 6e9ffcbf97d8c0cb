"""refutil.py - shared helpers of the PyTorch reference tests: a safetensors writer (the
format is tiny; Debian has no safetensors package), the MCT1 raw tensor format of
model_dump.c, running the C side, and the error report with the stated tolerance."""
import json
import os
import struct
import subprocess
import sys

import numpy as np

# Tolerance of every comparison: max |C - torch| <= REL_TOL * max |torch| per tensor. float32
# with different summation orders (OpenBLAS vs torch's kernels) over 12-16 blocks stays well
# inside it; a wrong eps, activation or layout is off by orders of magnitude more.
REL_TOL = 1e-4

_DT = {np.dtype("float32"): "F32", np.dtype("float16"): "F16", np.dtype("int64"): "I64"}


def write_safetensors(path, tensors, dtype=None):
    """tensors: dict name -> numpy array (or torch tensor). dtype 'bf16' or 'f16' converts the
    floating tensors (to test conversion at load)."""
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy() if hasattr(t, "detach") else np.asarray(t)
        if a.dtype == np.float64:
            a = a.astype(np.float32)
        if a.dtype == np.float32 and dtype == "f16":
            a = a.astype(np.float16)
        if a.dtype == np.float32 and dtype == "bf16":
            u = a.view(np.uint32).astype(np.uint64)
            u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)  # round to nearest even
            b = np.ascontiguousarray(u).tobytes()
            header[name] = {"dtype": "BF16", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
            blobs.append(b)
            off += len(b)
            continue
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {"dtype": _DT[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def bf16_round(a):
    """float32 values rounded to bfloat16 and back (what a BF16 export stores)."""
    u = np.asarray(a, np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16
    return u.astype(np.uint32).view(np.float32)


def write_mct(path, a):
    a = np.ascontiguousarray(np.asarray(a, dtype=np.float32))
    with open(path, "wb") as f:
        f.write(b"MCT1")
        f.write(struct.pack("<i", a.ndim))
        f.write(struct.pack("<%dq" % a.ndim, *a.shape))
        f.write(a.tobytes())


def read_mct(path):
    with open(path, "rb") as f:
        assert f.read(4) == b"MCT1", path
        (nd,) = struct.unpack("<i", f.read(4))
        shape = struct.unpack("<%dq" % nd, f.read(8 * nd))
        return np.frombuffer(f.read(), dtype=np.float32).reshape(shape)


def make_tmp(tag):
    """A scratch folder in the test's build directory, removed at exit (also on failure)."""
    import atexit, shutil, tempfile
    d = tempfile.mkdtemp(prefix="miclip_ref_%s_" % tag, dir=".")
    atexit.register(shutil.rmtree, d, True)
    return d


def dump_exe():
    exe = os.environ.get("MICLIP_MODEL_DUMP")
    if not exe:
        exe = os.path.join(os.path.dirname(os.environ["MICLIP"]), "tests", "models", "model_dump")
    return exe


def run_dump(model_dir, pixels_path, prefix, *args):
    cmd = [dump_exe(), model_dir, pixels_path, prefix] + [str(a) for a in args]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd), "\n", r.stdout, r.stderr)
        sys.exit(1)


class Checker:
    def __init__(self):
        self.failures = 0

    def compare(self, what, got, ref, tol=REL_TOL):
        got = np.asarray(got, np.float64)
        ref = np.asarray(ref, np.float64)
        if got.shape != ref.shape:
            print("FAIL %-40s shape %s vs reference %s" % (what, got.shape, ref.shape))
            self.failures += 1
            return
        scale = max(np.abs(ref).max(), 1e-30)
        err = np.abs(got - ref).max()
        ratio = err / scale
        ok = ratio <= tol and np.isfinite(got).all()
        flat_g, flat_r = got.ravel(), ref.ravel()
        print("%s %-40s max|err|/max|ref| = %.2e (limit %.0e, %.2f of it)  first: %s vs %s" % (
            "ok  " if ok else "FAIL", what, ratio, tol, ratio / tol,
            np.array2string(flat_g[:3], precision=5), np.array2string(flat_r[:3], precision=5)))
        if not ok:
            self.failures += 1

    def finish(self):
        print("%d failure(s)" % self.failures)
        sys.exit(1 if self.failures else 0)
