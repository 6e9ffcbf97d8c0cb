#!/usr/bin/python3
"""The results site's heat maps for a ResNet target (a unit's spatial map upsampled over the image).

Runs extract -> sae -> align -> localize -> intervene -> report on a generated tiny world with the
trained tiny ResNet (experiments/world/resnet, stages.2: a [128, 4, 4] map of the 64x64 input) at 1
rank, then for every unit page (neurons and SAE features):
  - the top images it lists (data-row) are numpy's top 8 prefix rows by the unit's pooled value
    (the spatial mean, as extract pools a map; an SAE feature: its top-k code of that mean);
  - the grid PNG's tiles equal an independent composite: the image as the preprocessor crops it
    (64x64, no resize) upsampled 2x bilinearly, under the heat map: the unit's [4, 4] map (a neuron:
    its channel; a feature: its top-k code at each position) over the grid's max, coloured as
    plot.c's heat scale (premultiplied ARGB, 8-bit), upsampled to the 128 px tile by PyTorch's
    bilinear interpolation (align_corners=False, edges clamped: cairo's BILINEAR filter with PAD
    extend), composited OVER. Tolerance: 99% of the tile's interior channel values within 3 of 255
    and all within 4 (pixman interpolates with 7-bit weights and rounds each step in 8 bits); the
    same composite with a nearest-neighbour upsampling (blocks, as ViT patches are drawn) must be
    off by more than 8 somewhere, so the check tells bilinear from blocks.
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import os
import re
import shutil
import subprocess
import sys

import h5py
import numpy as np

SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402

TOP = 8  # report_site.c SITE_TOP
# plot.c's grid layout (mc_grid_tile_origin): margin, title band, caption band, gap; the site's tile
# edge and columns (report_site.c SITE_TILE, SITE_COLS).
MARGIN, TITLE_H, CAPTION_H, GAP, TILE, COLS = 8, 26, 30, 6, 128, 4


def heat_argb(t):
    """plot.c heat_argb: t in [0, 1] -> premultiplied (A, R, G, B) in 0..255 (8-bit rounded)."""
    t = np.clip(t, 0, 1)
    stop = np.array([[0.05, 0.05, 0.45], [0.75, 0.05, 0.15], [1.0, 0.55, 0.0], [1.0, 1.0, 0.3]])
    f = t * 3
    i = np.minimum(f.astype(int), 2)
    u = (f - i)[..., None]
    c = stop[i] + u * (stop[i + 1] - stop[i])
    a = 0.15 + 0.6 * t
    A = np.round(a * 255)
    rgb = np.round(c * a[..., None] * 255)
    return np.concatenate([A[..., None], rgb], -1)


def upsample(x, size, mode):
    import torch
    t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None]).astype(np.float64))
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return torch.nn.functional.interpolate(t, size=(size, size), mode=mode, **kw)[0].numpy().transpose(1, 2, 0)


def composite(img, heat, mx, mode):
    """The tile: img [64, 64, 3] uint8 bilinearly to TILE px, heat [h, w] OVER it."""
    base = np.round(upsample(img.astype(np.float64), TILE, "bilinear"))
    t = np.where((heat > 0) & (mx > 0), heat / mx if mx > 0 else 0, 0)
    argb = upsample(heat_argb(t), TILE, mode)
    a = argb[..., :1] / 255.0
    return argb[..., 1:] + base * (1 - a)


def sae_codes(x, W, b, bp, k):
    pre = (x - bp) @ W.T + b
    idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    codes = np.zeros_like(pre)
    rows = np.arange(pre.shape[0])[:, None]
    codes[rows, idx] = np.maximum(pre[rows, idx], 0)
    return codes


def main():
    from PIL import Image
    tmp = os.path.join(os.getcwd(), "report_site_resnet")
    os.makedirs(tmp, exist_ok=True)
    world = os.path.join(tmp, "world")
    if not os.path.exists(os.path.join(world, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "6",
                        "--val-per-class", "2", "--unseen-per-class", "1"], check=True)
    resnet, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("resnet", "clip"))
    out = os.path.join(tmp, "out")
    shutil.rmtree(out, ignore_errors=True)
    cfg = os.path.join(tmp, "site.yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: site
output_dir: {out}
seeds: [0]
models: {{target: {resnet}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: ["stages.2"], batch_size: 64}}
sae: {{layer: "stages.2", input: pooled, features: 64, k: 4, batch_size: 32, epochs: 2}}
align: {{batch_size: 72, epochs: 2, lr: 0.15, variants: [in+out]}}
localize: {{tau: 2}}
intervene: {{layer: "stages.2", units: [neuron, sae], methods: [miclip], modes: [scale], betas: [0.0],
             datasets: [eval], tau: 2}}
report: {{figures: []}}
stages: [extract, sae, align, localize, intervene, report]
""")
    r = fixture.mpirun(1, ["--quiet", "run", cfg], capture_output=True, text=True)
    check(r.returncode == 0, "the ResNet pipeline exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
    if r.returncode:
        return fixture.summary()
    ipath = sorted(glob.glob(os.path.join(out, "intervene", "intervene-*.h5")))[0]
    with h5py.File(ipath, "r") as inter:
        pre_name = os.path.basename(inter["eval/neuron"].attrs["prefix_store"])
        sae_name = os.path.basename(inter["eval/sae"].attrs["sae_store"])
    with h5py.File(os.path.join(out, "intervene", pre_name), "r") as p:
        state, image_index = p["state"][()].astype(np.float64), p["image_index"][()]
    with h5py.File(os.path.join(out, "sae", sae_name), "r") as s:
        W, b, bp, k = s["W_enc"][()].astype(np.float64), s["b_enc"][()].astype(np.float64), \
            s["b_pre"][()].astype(np.float64), int(s.attrs["k"])
    with h5py.File(glob.glob(os.path.join(out, "extract", "eval-*.h5"))[0], "r") as e:
        b_, o_ = e["images/paths_bytes"][()], e["images/paths_offsets"][()]
        paths = [bytes(b_[o_[i]:o_[i + 1]]).decode().rstrip("\x00") for i in range(len(o_) - 1)]
    n, Cc, gh, gw = state.shape
    check((gh, gw) == (4, 4), "the prefix state is a [%d, 4, 4] map (stages.2 of a 64x64 input): %s" % (Cc, state.shape))
    pooled = state.mean((2, 3))
    codes = sae_codes(pooled, W, b, bp, k)
    pages = sorted(glob.glob(os.path.join(out, "report", "site", "*-*.html")))
    pages = [p for p in pages if re.search(r"/(neuron|sae)-\d+\.html$", p)]
    check(len(pages) > 0, "%d unit pages" % len(pages))
    bad_rows, worst, worst_nn, n_tiles = [], (0.0, 0.0), 0.0, 0
    for page in pages:
        kind, unit = re.search(r"/(neuron|sae)-(\d+)\.html$", page).groups()
        unit = int(unit)
        rows = [int(x) for x in re.findall(r'data-row="(\d+)"', open(page).read())]
        v = pooled[:, unit] if kind == "neuron" else codes[:, unit]
        cand = [i for i in range(n) if kind == "neuron" or v[i] > 0]
        want = sorted(cand, key=lambda i: (-v[i], i))[:TOP]
        if rows != want:
            bad_rows.append((page, rows, want))
            continue
        if not rows:  # a feature that fires on no eval image has an empty grid
            continue
        maps = []
        for i in rows:
            if kind == "neuron":
                maps.append(state[i, unit])
            else:
                tok = state[i].reshape(Cc, gh * gw).T
                maps.append(sae_codes(tok, W, b, bp, k)[:, unit].reshape(gh, gw))
        mx = max(0.0, max(m.max() for m in maps))
        grid = np.asarray(Image.open(os.path.join(out, "report", "site", "grids", "%s-%d.png" % (kind, unit)))
                          .convert("RGB"), np.float64)
        for j, i in enumerate(rows):
            x0 = MARGIN + (j % COLS) * (TILE + GAP)
            y0 = MARGIN + TITLE_H + (j // COLS) * (TILE + CAPTION_H)
            got = grid[y0 + 2:y0 + TILE - 2, x0 + 2:x0 + TILE - 2]
            img = np.asarray(Image.open(paths[image_index[i]]).convert("RGB"))
            if img.shape != (64, 64, 3):
                bad_rows.append((page, "image %s is not 64x64" % paths[image_index[i]]))
                continue
            d = np.abs(got - composite(img, maps[j], mx, "bilinear")[2:-2, 2:-2])
            dn = np.abs(got - composite(img, maps[j], mx, "nearest")[2:-2, 2:-2])
            worst = (max(worst[0], float(np.percentile(d, 99))), max(worst[1], float(d.max())))
            worst_nn = max(worst_nn, float(dn.max()))
            n_tiles += 1
    check(not bad_rows, "every unit page lists numpy's top %d prefix rows by the pooled value%s"
          % (TOP, "" if not bad_rows else ": %s" % bad_rows[:3]))
    check(n_tiles > 0 and worst[0] <= 3 and worst[1] <= 4,
          "%d tiles equal the bilinear upsampling of the unit's map over the image (worst tile: 99th percentile "
          "|diff| %.1f <= 3, max %.1f <= 4 of 255)" % (n_tiles, worst[0], worst[1]))
    check(worst_nn > 8,
          "a nearest-neighbour (block) upsampling would not pass (its max |diff| %.1f > 8)" % worst_nn)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
