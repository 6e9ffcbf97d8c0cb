"""check_forward_cli.py - `miclip forward` end to end on PNG images: for random tiny ViT,
ResNet and CLIP folders written by `miclip model random`, the HDF5 store holds /pixel_values,
/output and /layers/<name> with the documented shapes; the output and layers equal what
model_dump (whose forward is checked against PyTorch in ref_*.py) computes on the same stored
pixel values; and runs with 1 and 2 MPI ranks and different --batch give identical files.
Also `miclip info` lists the layers and `miclip classify` prints 5 labels."""
import os
import subprocess
import sys

import h5py
import numpy as np
from PIL import Image

from refutil import Checker, make_tmp, read_mct, run_dump, write_mct

exe = os.environ["MICLIP"]
mpiexec = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
tmp = make_tmp("cli")
rng = np.random.RandomState(5)
imgs = []
for i in range(5):
    p = os.path.join(tmp, "img%d.png" % i)
    Image.fromarray(rng.randint(0, 256, (40 + 9 * i, 57, 3)).astype(np.uint8)).save(p)
    imgs.append(p)


def run(args, np_=0):
    cmd = ([mpiexec, "--oversubscribe", "-np", str(np_)] if np_ else []) + [exe] + args
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED:", " ".join(cmd), r.stdout, r.stderr)
        sys.exit(1)
    return r.stdout


ck = Checker()
cases = [("vit-tiny", ["1", "2", "embeddings", "layernorm"]),
         ("resnet-tiny", ["embedder", "stages.1", "stages.0.layers.0.shortcut", "pooler"]),
         ("clip-tiny", ["0", "2", "post_layernorm", "image_embeds"])]
for arch, layers in cases:
    d = os.path.join(tmp, arch)
    run(["model", "random", "--arch", arch, "--seed", "4", "--out", d])
    info = run(["info", d])
    for l in layers:
        name = "embeddings" if l == "0" else l
        if ("  %s " % name) not in info:
            print("FAIL info does not list", name)
            ck.failures += 1
    outs = []
    for np_, batch in [(0, 2), (2, 2), (2, 1)]:
        h5 = os.path.join(tmp, "%s_%d_%d.h5" % (arch, np_, batch))
        run(["forward", d] + imgs + ["--layers", ",".join(layers), "--batch", str(batch), "--out", h5], np_)
        with h5py.File(h5, "r") as f:
            outs.append({k: f[k][()] for k in ["pixel_values", "output"]} |
                        {l: f["layers/" + ("embeddings" if l == "0" else l)][()] for l in layers})
    # same --batch, 1 vs 2 ranks: bitwise equal (batches are cut globally); another --batch:
    # equal up to float rounding (sgemm blocking depends on the row count)
    for k in outs[0]:
        if not np.array_equal(outs[1][k], outs[0][k]):
            print("FAIL %s %s: 1 rank and 2 ranks differ" % (arch, k))
            ck.failures += 1
        ck.compare("%s %s --batch 1 vs 2" % (arch, k), outs[2][k], outs[0][k], tol=1e-6)
    o = outs[0]
    print("%s: pixel_values %s output %s %s" % (arch, o["pixel_values"].shape, o["output"].shape,
          " ".join("%s%s" % (l, o[l].shape) for l in layers)))
    write_mct(os.path.join(tmp, "px.mct"), o["pixel_values"])
    pre = os.path.join(tmp, "d")
    run_dump(d, os.path.join(tmp, "px.mct"), pre, "--layers", ",".join(layers))
    ck.compare("%s forward /output vs model_dump" % arch, o["output"], read_mct(pre + ".output.mct"), tol=1e-6)
    for l in layers:
        canon = "embeddings" if l == "0" else l
        ck.compare("%s forward /layers/%s" % (arch, l), o[l], read_mct(pre + ".%s.mct" % canon), tol=1e-6)
    if arch != "clip-tiny":
        out = run(["classify", d, imgs[0]])
        if out.count("class_") != 5:
            print("FAIL classify printed", out)
            ck.failures += 1
ck.finish()
