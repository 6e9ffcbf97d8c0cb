#!/usr/bin/python3
"""check_python_xcheck.py ST_TOOL - safetensors interoperability between C and Python.

1. Files written by Python (a hand-written serialiser: struct + json + numpy/torch, since Debian
   12 has no python3-safetensors) are read by the C reader (st_tool dump) byte for byte, and
   F16/BF16/F64 -> F32 conversion equals torch's .float().
2. Files written by the C writer (st_tool write) are read by a Python reader and equal values
   recomputed here; F16/BF16 rounding of the C writer equals torch's float32 -> half/bfloat16.
3. `miclip inspect` on the Python file reports the parameter count computed here.
Exits non-zero on any mismatch.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

ST_TOOL = sys.argv[1]
MICLIP = os.environ.get("MICLIP")
failures = 0

NP = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "BF16": "<u2", "I64": "<i8", "I32": "<i4",
      "I16": "<i2", "I8": "i1", "U8": "u1", "BOOL": "u1"}


def fail(msg):
    global failures
    failures += 1
    print("FAIL:", msg)


def write_st(path, tensors, metadata=None):
    hdr, off, data = {}, 0, b""
    for name, dt, arr in tensors:
        b = np.ascontiguousarray(arr).astype(NP[dt], copy=False).tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    if metadata:
        hdr["__metadata__"] = metadata
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + data)


def read_st(path):
    """A Python reader with the same checks that matter here: bounds and exact tiling."""
    blob = open(path, "rb").read()
    (n,) = struct.unpack("<Q", blob[:8])
    assert n <= 100_000_000 and 8 + n <= len(blob)
    hdr = json.loads(blob[8:8 + n])
    meta = hdr.pop("__metadata__", {})
    data = blob[8 + n:]
    spans = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in hdr.items())
    pos = 0
    for b, e, k in spans:
        assert b == pos, f"{k}: gap/overlap"
        pos = e
    assert pos == len(data), "trailing bytes"
    out = {}
    for k, v in hdr.items():
        b, e = v["data_offsets"]
        out[k] = (v["dtype"], np.frombuffer(data[b:e], NP[v["dtype"]]).reshape(v["shape"]))
    return out, meta, [s[2] for s in spans]


def bf16_bits(t):
    return t.to(torch.bfloat16).view(torch.int16).numpy().view("<u2")


def to_f32_torch(dt, arr):
    """torch's conversion to float32 of the values stored as dt (BF16 given as raw bits)."""
    if dt == "BF16":
        return torch.from_numpy(arr.astype(np.int16)).view(torch.bfloat16).float().numpy()
    return torch.from_numpy(np.asarray(arr).astype(NP[dt])).float().numpy()


def c_dump(path):
    r = subprocess.run([ST_TOOL, "dump", path], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"st_tool dump {path}: {r.stderr}")
        return {}, {}, {}
    tensors, f32, meta, order = {}, {}, {}, []
    for line in r.stdout.splitlines():
        parts = line.split("\t")
        if parts[0] == "meta":
            meta[parts[1]] = parts[2]
        elif parts[0] == "tensor":
            shape = () if parts[3] == "-" else tuple(int(x) for x in parts[3].split(","))
            tensors[parts[1]] = (parts[2], shape, bytes.fromhex(parts[4]))
            order.append(parts[1])
        elif parts[0] == "f32":
            f32[parts[1]] = np.array([float(x) for x in parts[2].split(",") if x], np.float32)
    return tensors, f32, meta, order


with tempfile.TemporaryDirectory() as tmp:
    # --- 1. Python writes, C reads -----------------------------------------------------------
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    big = torch.randn(7, 3, generator=g) * 1000
    tensors = [
        ("w.F32", "F32", torch.randn(4, 6, generator=g).numpy()),
        ("w.F16", "F16", (torch.randn(5, 2, generator=g) * 100).half().numpy()),
        ("w.BF16", "BF16", bf16_bits(big)),
        ("w.F64", "F64", rng.standard_normal((2, 2, 2))),
        ("ids.I64", "I64", rng.integers(-2**62, 2**62, size=(1, 9))),
        ("w.I32", "I32", rng.integers(-2**31, 2**31, size=(3,))),
        ("w.I16", "I16", rng.integers(-2**15, 2**15, size=(3,))),
        ("w.I8", "I8", rng.integers(-128, 128, size=(4,))),
        ("w.U8", "U8", rng.integers(0, 256, size=(2, 3))),
        ("w.BOOL", "BOOL", rng.integers(0, 2, size=(5,))),
        ("logit_scale", "F32", np.array(4.6052, np.float32)),
        ("nbt", "I64", np.array(12, np.int64)),
        ("empty", "F16", np.zeros((0, 5), np.float16)),
        ("sub.F16", "F16", np.array([6e-8, -6e-5, 65504, -0.0], np.float16)),
    ]
    py_path = os.path.join(tmp, "py.safetensors")
    write_st(py_path, tensors, {"format": "pt", "note": "written by Python"})
    ctens, cf32, cmeta, corder = c_dump(py_path)
    if cmeta != {"format": "pt", "note": "written by Python"}:
        fail(f"metadata seen by C: {cmeta}")
    if corder != [t[0] for t in tensors]:
        fail(f"C tensor order {corder}")
    for name, dt, arr in tensors:
        if name not in ctens:
            fail(f"C did not see {name}")
            continue
        cdt, cshape, cbytes = ctens[name]
        want = np.ascontiguousarray(arr).astype(NP[dt]).tobytes()
        if cdt != dt or cshape != tuple(arr.shape) or cbytes != want:
            fail(f"{name}: C read {cdt} {cshape} ({len(cbytes)} bytes), wrote {dt} {arr.shape}")
        if dt in ("F16", "BF16", "F32", "F64"):
            ref = to_f32_torch(dt, arr.astype(NP[dt])).reshape(-1) if dt != "F64" else \
                torch.from_numpy(arr).float().numpy().reshape(-1)
            got = cf32.get(name, np.zeros(0, np.float32))
            if got.shape != ref.shape or not np.array_equal(got.view(np.uint32), ref.astype(np.float32).view(np.uint32)):
                fail(f"{name}: C F32 conversion differs from torch: {got[:4]} vs {ref[:4]}")
    print(f"1. Python -> C: {len(tensors)} tensors compared")

    # --- 2. C writes, Python reads -----------------------------------------------------------
    c_path = os.path.join(tmp, "c.safetensors")
    r = subprocess.run([ST_TOOL, "write", c_path], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"st_tool write: {r.stderr}")
    else:
        out, meta, order = read_st(c_path)
        if meta != {"format": "pt", "source": "miclip st_tool"}:
            fail(f"metadata seen by Python: {meta}")
        with open(c_path, "rb") as fh:
            (hn,) = struct.unpack("<Q", fh.read(8))
        if hn % 8:
            fail(f"C header length {hn} is not padded to 8")
        i = np.arange(15)
        k = (37 * i) % 101 - 50
        v = k / 7.0
        f32v = v.astype(np.float32)
        expect = {
            "x.F64": v, "x.F32": f32v,
            "x.F16": torch.from_numpy(f32v).half().numpy(),
            "x.BF16": bf16_bits(torch.from_numpy(f32v)),
            "x.I64": k.astype(np.int64) * 123456789012, "x.I32": k * 100000, "x.I16": k * 300,
            "x.I8": k, "x.U8": (37 * i) % 256, "x.BOOL": (i % 3 == 0).astype(np.uint8),
        }
        edge = np.array([0.0, -0.0, 1e-8, 6e-5, 65504.0, 65519.0, 65520.0, 1e5, 3.0e38,
                         -1.17549435e-38, 0.333333343, -2.5, 1.00390625, 1.0009765625, 7.0e-8],
                        np.float32)
        expect["edge.F16"] = torch.from_numpy(edge).half().numpy()
        expect["edge.BF16"] = bf16_bits(torch.from_numpy(edge))
        for name, want in expect.items():
            dt, arr = out[name]
            shape = (3, 5) if name.startswith("x.") else (len(edge),)
            want = np.asarray(want).astype(NP[dt]).reshape(shape)
            if arr.shape != shape or arr.tobytes() != want.tobytes():
                fail(f"{name}: Python read {arr.reshape(-1)[:6]} want {want.reshape(-1)[:6]}")
        dt, arr = out["s.F32"]
        if dt != "F32" or arr.shape != () or arr.item() != np.float32(2.6592):
            fail(f"s.F32 = {dt} {arr.shape} {arr}")
        dt, arr = out["e.BF16"]
        if dt != "BF16" or arr.shape != (0, 3):
            fail(f"e.BF16 = {dt} {arr.shape}")
        # the data section keeps the order tensors were added in
        corder2 = order
        want_order = ["x." + n for n in ["F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL"]] \
            + ["edge.F16", "edge.BF16", "s.F32", "e.BF16"]
        if corder2 != want_order:
            fail(f"data order {corder2}")
        print(f"2. C -> Python: {len(expect) + 2} tensors compared")

    # --- 3. miclip inspect reports the parameter count -------------------------------------
    if MICLIP:
        r = subprocess.run([MICLIP, "inspect", py_path], capture_output=True, text=True, timeout=60)
        nparam = sum(int(np.prod(a.shape)) for _, _, a in tensors)
        if r.returncode != 0 or f"parameters: {nparam}," not in r.stdout:
            fail(f"miclip inspect: rc {r.returncode}, want parameters {nparam}:\n{r.stdout}{r.stderr}")
        else:
            print(f"3. miclip inspect: {nparam} parameters")

print("PASS" if failures == 0 else f"{failures} failures")
sys.exit(1 if failures else 0)
