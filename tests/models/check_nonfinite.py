"""check_nonfinite.py - issue 16: a model folder whose weights hold a NaN or an infinity is refused
at load, with a message naming the file, the tensor, the count and the first index, instead of
printing `nan%` (classify) or writing NaN activations (forward, extract).

Cases: a NaN in a ViT attention weight (F32) under `miclip classify` and `miclip forward` at 1 and
2 ranks; a +Inf in a ResNet weight stored as BF16 (the check runs after conversion); an -Inf in
the CLIP text tower (`miclip embed-text`). At 2 ranks every rank must exit non-zero (each rank's
own exit status is recorded by a wrapper shell) and within the timeout (no hang). A clean copy of
each folder still works, so the check cannot pass by refusing everything."""
import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
from PIL import Image

from refutil import make_tmp

exe = os.environ["MICLIP"]
mpiexec = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
src = os.environ.get("MICLIP_SOURCE_DIR", ".")
tmp = os.path.abspath(make_tmp("nonfinite"))
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL", msg)


def poison(path, name, index, value):
    """Sets element `index` of tensor `name` (F32, F16 or BF16) in a safetensors file in place."""
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        t = h[name]
        size = {"F32": 4, "F16": 2, "BF16": 2}[t["dtype"]]
        if t["dtype"] == "F32":
            raw = np.float32(value).tobytes()
        elif t["dtype"] == "F16":
            raw = np.float16(value).tobytes()
        else:
            raw = np.float32(value).tobytes()[2:]  # bfloat16: the top half of the float32
        f.seek(8 + n + t["data_offsets"][0] + index * size)
        f.write(raw)


def run(args, ranks, expect_ok):
    """Runs miclip; ranks 0 = no mpiexec. Returns (stdout+stderr, per-rank exit codes)."""
    rcdir = os.path.join(tmp, "rc")
    shutil.rmtree(rcdir, True)
    os.makedirs(rcdir)
    if ranks:
        wrap = 'r=${OMPI_COMM_WORLD_RANK:-x}; "$0" "$@"; c=$?; echo $c > %s/rank$r; exit 0' % rcdir
        cmd = [mpiexec, "--oversubscribe", "-np", str(ranks), "sh", "-c", wrap, exe] + args
    else:
        cmd = [exe] + args
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        fail("%s: timed out (a rank hangs)" % " ".join(args[:2]))
        return "", []
    out = r.stdout + r.stderr
    codes = [r.returncode]
    if ranks:
        codes = []
        for k in range(ranks):
            p = os.path.join(rcdir, "rank%d" % k)
            codes.append(int(open(p).read()) if os.path.exists(p) else None)
    if expect_ok and any(c != 0 for c in codes):
        fail("%s at %d rank(s) should succeed: exit %s\n%s" % (" ".join(args[:2]), ranks, codes, out))
    if not expect_ok and any(c in (0, None) for c in codes):
        fail("%s at %d rank(s) should fail on every rank: exit %s\n%s" % (" ".join(args[:2]), ranks, codes, out))
    return out, codes


def expect_msg(out, want, what):
    if want in out:
        print("ok   %s: %s" % (what, want))
    else:
        fail("%s: message lacks %r:\n%s" % (what, want, out))
    if "nan%" in out:
        fail("%s printed nan%%:\n%s" % (what, out))


img = os.path.join(tmp, "img.png")
Image.fromarray(np.random.RandomState(1).randint(0, 256, (40, 50, 3)).astype(np.uint8)).save(img)

# --- ViT, F32, NaN ------------------------------------------------------------------------
vit = os.path.join(tmp, "vit")
subprocess.run([exe, "model", "random", "--arch", "vit-tiny", "--seed", "3", "--out", vit], check=True,
               capture_output=True)
run(["classify", vit, img], 0, True)
tname = "vit.encoder.layer.1.attention.output.dense.weight"
poison(os.path.join(vit, "model.safetensors"), tname, 123, np.nan)
want = "model.safetensors: tensor '%s': 1 non-finite value (NaN at index 123)" % tname
for ranks in (0, 1, 2):
    out, _ = run(["classify", vit, img], ranks, False)
    expect_msg(out, want, "classify at %d rank(s)" % ranks)
for ranks in (1, 2):
    out, _ = run(["forward", vit, img, "--out", os.path.join(tmp, "f%d.h5" % ranks)], ranks, False)
    expect_msg(out, want, "forward at %d rank(s)" % ranks)

# --- ResNet, BF16 storage, +Inf (two of them) ----------------------------------------------
rn = os.path.join(tmp, "resnet")
subprocess.run([exe, "model", "random", "--arch", "resnet-tiny", "--seed", "3", "--dtype", "bf16", "--out", rn],
               check=True, capture_output=True)
run(["classify", rn, img], 0, True)
with open(os.path.join(rn, "model.safetensors"), "rb") as f:
    hdr = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
rname = next(k for k in sorted(hdr) if k.endswith("convolution.weight"))
poison(os.path.join(rn, "model.safetensors"), rname, 7, np.inf)
poison(os.path.join(rn, "model.safetensors"), rname, 9, -np.inf)
out, _ = run(["classify", rn, img], 2, False)
expect_msg(out, "model.safetensors: tensor '%s': 2 non-finite values (+Inf at index 7)" % rname,
           "resnet bf16 classify at 2 ranks")

# --- CLIP text tower, -Inf ------------------------------------------------------------------
clip = os.path.join(tmp, "clip")
shutil.copytree(os.path.join(src, "experiments", "world", "clip"), clip)
texts = os.path.join(tmp, "texts.json")
with open(texts, "w") as f:
    json.dump(["a red circle", "a blue square"], f)
run(["embed-text", clip, "--texts", texts, "--out", os.path.join(tmp, "e0.h5")], 0, True)
with open(os.path.join(clip, "model.safetensors"), "rb") as f:
    hdr = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
cname = "text_model.encoder.layers.0.mlp.fc1.weight"
if cname not in hdr:
    fail("fixture: %s not in the world CLIP folder" % cname)
else:
    poison(os.path.join(clip, "model.safetensors"), cname, 5, -np.inf)
    for ranks in (1, 2):
        out, _ = run(["embed-text", clip, "--texts", texts, "--out", os.path.join(tmp, "e%d.h5" % ranks)], ranks,
                     False)
        expect_msg(out, "model.safetensors: tensor '%s': 1 non-finite value (-Inf at index 5)" % cname,
                   "embed-text at %d rank(s)" % ranks)

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
