#!/usr/bin/python3
"""Network Dissection (baselines method netdissect) on a generated tiny world with concept masks
(`miclip world make --masks`) and the trained tiny ViT, layer 3 extracted with `pool: all`.

  test_netdissect.py ref       extract -> baselines -> intervene at 1, 2 and 4 ranks: outputs
                               bitwise equal; every stored IoU (describe/<set>/neuron/sim) equals
                               an independent numpy recomputation (np.quantile 0.995 over every
                               patch position of every image, torch bilinear upsampling with
                               align_corners=False, IoU summed over the images) within 1e-4
                               absolute (measured 7e-9; a pixel whose upsampled value sat at the
                               threshold could fall either side in float32); the top-unit and top-concept tables
                               follow the scores; intervene's netdissect units are the store's
                               top units of each class
  test_netdissect.py planted   the extraction store rewritten (sha256 attributes resealed) so
                               that neuron 7 fires (its whole map) on 6 of 360 images and a concept
                               'planted' covers exactly the images whose map passes the
                               threshold: IoU(7, planted) = 1 and 7 is the concept's first unit
  test_netdissect.py bad       refused before any work with one error line: extract.pool not all,
                               a logits layer, a missing masks folder; intervene.units sae
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import hashlib
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
sys.path.insert(0, HERE)
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from test_method import same_outputs  # noqa: E402
from test_baselines import bad_run, bl_store, one_error, run  # noqa: E402

VIT = os.path.join(SRC, "experiments", "world", "vit")
CLIP = os.path.join(SRC, "experiments", "world", "clip")


def make_world(root, per_class=4):
    if not os.path.exists(os.path.join(root, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", root, "--seed", "1", "--per-class",
                        str(per_class), "--val-per-class", "1", "--unseen-per-class", "1", "--masks"], check=True)
    return root


def write_config(path, world, out, layers='["3"]', pool="all", stages="[extract, baselines, report]", extra="",
                 baselines="{methods: [netdissect]}", concepts=""):
    with open(path, "w") as f:
        f.write(f"""name: nd
output_dir: {out}
seeds: [0]
models: {{target: {VIT}, clip: {CLIP}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
{concepts}
extract: {{layers: {layers}, pool: {pool}, batch_size: 64}}
localize: {{tau: 5}}
describe: {{tau: 3}}
baselines: {baselines}
report: {{figures: []}}
stages: {stages}
{extra}
""")


def train_store(out):
    f = sorted(glob.glob(os.path.join(out, "extract", "train-*.h5")))
    return f[0]


def iou_ref(acts, valid, paths, droot, mroot, texts):
    """numpy/torch NetDissect IoU [D, n_concepts] from acts [N, 65, D]."""
    import torch
    import torch.nn.functional as F
    from PIL import Image
    N, T, D = acts.shape
    g = int(round((T - 1) ** 0.5))
    maps = acts[valid][:, 1:, :]                                   # [NV, 64, D]
    thr = np.quantile(maps.transpose(2, 0, 1).reshape(D, -1).astype(np.float64), 0.995, axis=1)
    inter = np.zeros((D, len(texts)), np.int64)
    sum_m = np.zeros(D, np.int64)
    sum_l = np.zeros(len(texts), np.int64)
    for i in np.nonzero(valid)[0]:
        stem = os.path.splitext(os.path.relpath(paths[i], droot))[0]
        masks = {}
        for j, t in enumerate(texts):
            p = os.path.join(mroot, stem, t + ".png")
            if os.path.exists(p):
                masks[j] = np.asarray(Image.open(p).convert("L")) > 0
        H, W = next(iter(masks.values())).shape if masks else np.asarray(Image.open(paths[i])).shape[:2]
        for j, m in masks.items():
            sum_l[j] += m.sum()
        m = torch.from_numpy(np.ascontiguousarray(acts[i, 1:, :].T.reshape(D, 1, g, g)))
        up = F.interpolate(m, size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()
        binm = up.astype(np.float64) > thr[:, None, None]
        sum_m += binm.reshape(D, -1).sum(1)
        for j, mk in masks.items():
            inter[:, j] += (binm & mk[None]).reshape(D, -1).sum(1)
    den = sum_m[:, None] + sum_l[None, :] - inter
    return np.where(den > 0, inter / np.maximum(den, 1), 0.0)


def test_ref(tmp):
    world = make_world(os.path.join(tmp, "world"))
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "out%d" % n)
        cfg = os.path.join(tmp, "r%d.yaml" % n)
        write_config(cfg, world, out, stages="[extract, baselines, intervene, report]",
                     extra="intervene: {layer: \"3\", tau: 5, methods: [netdissect], units: [neuron], modes: [scale], "
                           "betas: [0.0], datasets: [eval], batch_size: 8}")
        t0 = time.time()
        r = run(n, ["run", cfg])
        check(r.returncode == 0, "extract -> baselines (netdissect) -> intervene at %d rank(s) exits 0 in %.1f s (%s)"
              % (n, time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%d-rank outputs equal the 1-rank outputs bitwise %s" % (n, why))
    out = outs[1]
    with h5py.File(train_store(out), "r") as f:
        acts = f["acts/3"][()].astype(np.float32)
        valid = f["images/valid"][()].astype(bool)
        pb, po = bytes(f["images/paths_bytes"][()]), f["images/paths_offsets"][()]
        paths = [pb[po[i]:po[i + 1]].decode().rstrip("\0") for i in range(len(po) - 1)]
    check(acts.ndim == 3 and acts.shape[1] == 65, "acts/3 holds every token (pool: all): %s" % (acts.shape,))
    st = bl_store(out, "baselines-s0-l3-netdissect")
    with h5py.File(st, "r") as f:
        check(f.attrs["method"] == "netdissect" and abs(f.attrs["netdissect_quantile"] - 0.005) < 1e-12,
              "store attributes name the method and the quantile")
        for s in ("classes", "world"):
            pb, po = bytes(f["describe/%s/concepts_bytes" % s][()]), f["describe/%s/concepts_offsets" % s][()]
            texts = [pb[po[i]:po[i + 1]].decode().rstrip("\0") for i in range(len(po) - 1)]
            t0 = time.time()
            ref = iou_ref(acts, valid, paths, os.path.join(world, "train"), os.path.join(world, "masks", "train"), texts)
            got = f["describe/%s/neuron/sim" % s][()]
            err = np.abs(got - ref).max()
            check(got.shape == ref.shape and err <= 1e-4,
                  "%s: stored IoU equals numpy/torch's within 1e-4 (max |diff| %.2e, max IoU %.3f, ref %.1f s)"
                  % (s, err, ref.max(), time.time() - t0))
            top = f["localize/%s/neuron/top_units" % s][()]
            sc = f["localize/%s/neuron/top_scores" % s][()]
            check(np.allclose(sc, np.take_along_axis(got.T, top, 1)) and np.all(np.diff(sc, axis=1) <= 0),
                  "%s: top units per concept are ranked by the stored IoU" % s)
            tc = f["describe/%s/neuron/top_concepts" % s][()]
            check(np.array_equal(got[np.arange(len(got)), tc[:, 0]], got.max(1)),
                  "%s: each unit's first concept is its best IoU" % s)
        units_cls = f["localize/classes/neuron/top_units"][()]
    iv = sorted(glob.glob(os.path.join(out, "intervene", "intervene-s0-l3-netdissect-scale-b0-*.h5")))
    check(len(iv) == 1, "one netdissect intervene store")
    if iv:
        with h5py.File(iv[0], "r") as f:
            check(f.attrs["method"] == "netdissect" and np.array_equal(f["eval/neuron/units"][()], units_cls[:, :5])
                  and "delta_acc" in f["eval/neuron"].attrs,
                  "intervene: class c's units are the netdissect store's top 5 units of concept c, Delta-Acc recorded")


def reseal(d):
    d.attrs["sha256"] = hashlib.sha256(d[()].astype(d.dtype.newbyteorder("<")).tobytes()).hexdigest()


def test_planted(tmp):
    world = make_world(os.path.join(tmp, "world"), per_class=10)  # 360 images: the top 0.5% < 2 maps
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "p.yaml")
    cfile = os.path.join(tmp, "planted.txt")
    open(cfile, "w").write("planted\nred\nblue\n")
    write_config(cfg, world, out, stages="[extract]", concepts="  - {name: planted, file: %s}" % cfile)
    r = run(1, ["run", cfg])
    check(r.returncode == 0, "extract (pool: all) exits 0 (%s)" % r.stderr.strip()[-300:])
    U = 7
    with h5py.File(train_store(out), "r+") as f:
        d = f["acts/3"]
        a = d[()]
        valid = f["images/valid"][()].astype(bool)
        pb, po = bytes(f["images/paths_bytes"][()]), f["images/paths_offsets"][()]
        paths = [pb[po[i]:po[i + 1]].decode().rstrip("\0") for i in range(len(po) - 1)]
        N = a.shape[0]
        fire = np.arange(0, N, 29)[:6]                  # 6 images: 1.7% of the positions
        a[:, :, U] = 0
        for q, i in enumerate(fire):
            a[i, :, U] = 10.0 + q                       # the whole map, distinct per image
        d[...] = a
        reseal(d)
        maps = a[valid][:, 1:, U].astype(np.float64).ravel()
        thr = np.quantile(maps, 0.995)
    above = [i for i in fire if valid[i] and a[i, 1, U] > thr]
    check(0 < len(above) < len(fire) and all(valid[fire]), "the threshold (%.2f) keeps %d of the %d firing images" % (thr, len(above), len(fire)))
    full = np.full((64, 64), 255, np.uint8)
    from PIL import Image
    for i in above:
        stem = os.path.splitext(os.path.relpath(paths[i], os.path.join(world, "train")))[0]
        Image.fromarray(full).save(os.path.join(world, "masks", "train", stem, "planted.png"))
    write_config(cfg, world, out, stages="[extract, baselines]", concepts="  - {name: planted, file: %s}" % cfile)
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "baselines on the planted store exits 0 (%s)" % r.stderr.strip()[-300:])
    with h5py.File(bl_store(out, "baselines-s0-l3-netdissect"), "r") as f:
        top = f["localize/planted/neuron/top_units"][()]
        sc = f["localize/planted/neuron/top_scores"][()]
        check(top[0, 0] == U and abs(sc[0, 0] - 1.0) < 1e-6,
              "neuron %d is first for 'planted' with IoU 1 (got %d, %.6f; next %.3f)" % (U, top[0, 0], sc[0, 0], sc[0, 1]))
        tc = f["describe/planted/neuron/top_concepts"][()]
        check(tc[U, 0] == 0, "neuron %d is described as 'planted'" % U)


def test_bad(tmp):
    world = make_world(os.path.join(tmp, "world"), per_class=1)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "b.yaml")
    cases = [(dict(pool="auto"), ["extract.pool: all", "netdissect"], "extract.pool auto"),
             (dict(layers='["3", logits]'), ["logits", "netdissect"], "a logits layer"),
             (dict(baselines="{methods: [netdissect], netdissect_masks: %s/nomasks}" % tmp), ["%s/nomasks" % tmp, "--masks"],
              "a missing masks folder"),
             (dict(stages="[extract, baselines, intervene]",
                   extra="intervene: {layer: \"3\", methods: [netdissect], units: [neuron, sae], datasets: [eval]}"),
              ["intervene.units", "netdissect"], "intervene with SAE units")]
    for kw, want, what in cases:
        write_config(cfg, world, out, **kw)
        one_error(bad_run(2, ["run", cfg]), want, what)
        check(not os.path.exists(out), "%s: refused before any work (no output folder)" % what)
    shutil.rmtree(os.path.join(world, "masks"))
    write_config(cfg, world, out)
    one_error(bad_run(2, ["run", cfg]), [os.path.join(world, "masks", "train"), "--masks"], "a world made without --masks")


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("netdissect_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    {"ref": test_ref, "planted": test_planted, "bad": test_bad}[what](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
