#!/usr/bin/python3
"""The report's Figures 3 (tsne) and 5 (flawed_reasoning) on a generated tiny world with the
trained tiny ViT and CLIP.

  test_report_figs.py tsne TSNE_RUN
      extract -> sae -> align -> localize -> report (figures: [tsne], png/svg/pdf) at 1 and 2
      ranks: the same bytes. Then, from the stores (h5py/numpy):
        * the points are the SAE features of the localize store's classes/sae/top_units, each once,
          labelled by the first class (class order, then rank) that localizes it; its category is
          the class's colour (the first word of "<colour> <shape>", one of the world's colours.txt);
        * the t-SNE's input rows (-input.csv) equal numpy's float64 recomputation of the embedding
          localize ranks by (algorithm2 over all training inputs: g_i E_n W_dec[:, i] + E_n b_pre,
          g_i the feature's mean top-k code, the SAE re-encoded in numpy), L2-normalised, to 1e-5;
        * the CSV's 2-D points are exactly (bitwise) what tests/tsne's driver gives on those input
          rows with the same settings (exact, perplexity min(30, (n - 1) / 3), seed 0), so the
          figure's layout is mc_tsne's on that input;
        * sklearn's TSNE (exact, same perplexity, pca init, auto learning rate) on the same input
          reaches a trustworthiness (k = 5, 10) at most 0.02 above the C layout's: the tolerance of
          tests/tsne/ref_tsne.py (sklearn's own reruns move it by ~0.005; a broken gradient or P
          costs > 0.05), one-sided because a C layout better than sklearn's is no fault;
      and the drawn figure equals the CSV: the SVG has one filled path of dots per category, in a
      colour of its own showing the category's hue (blue mostly blue, ...), whose dot centres are
      an axis-wise affine image of the CSV points (residual < 0.01 units), a legend dot of the same
      colour, and the legend names every category; the PNG (twice the SVG's size)
      shows each dot's colour at its centre (or a later-drawn overlapping dot's); pdftotext finds
      the title and the legend in the PDF; README.md lists the files.
  test_report_figs.py flawed
      extract (train and eval) -> sae -> align -> report (figures: [flawed_reasoning]) at 1 and 2
      ranks: the same bytes. numpy picks the first correct and first misclassified valid eval
      image, recomputes cos(W a, t) per layer for the ground truth and the competitor (the
      prediction; for the correct image the other class closest at the last layer) from the align
      stores, the eval activations and the concept store: the CSV equals it (labels exactly,
      cosines to 1e-5). The SVG's data lines are an affine image of the CSV's (layer index,
      cosine); its desc lists a marker exactly at the first layer where the competitor exceeds
      the ground truth, "(never overtaken)" in the other panels; PNG twice the SVG with the lines'
      colours; pdftotext finds the title and legend; README lists the files.
  test_report_figs.py attention
      extract -> sae -> align -> localize -> describe -> report (figures: [attention_maps]) at 1, 2
      and 4 ranks: the same bytes. numpy (float64) recomputes every map from the stores and the model
      folder: Figure 4's class is the localize set's first class, its features the class's
      top_units, its images the first 6 valid eval images of that class; Figure 6's feature is the
      SAE feature whose describe top-1 concept is report.attention_concept with the highest score
      (the test picks a colour some feature has), its images its top 6 valid eval images by its
      top-k code of acts/3. Per image: the ViT's embeddings and blocks 1..3 from the pixels
      (rescale, normalise 0.5/0.5; 64x64 needs no resize), the patch tokens replaced by
      b_pre + sum over the kept features of code x W_dec row, block 4's attention: each head's CLS
      row over the patch keys renormalised to 1, the mean of the heads. The CSV equals it to 1e-6
      absolute (maps average 1/64 ~ 0.016, so 1e-6 is float32's relative error through four blocks
      with margin (observed ~2e-8); a wrong block, head average or kept set moves values by
      > 1e-3). The drawing equals the CSV: the SVG embeds one 8x8 heat image per tile whose alpha
      inverts (alpha = 0.15 + 0.6 t, 8-bit) to (map - min) / (max - min) within 0.004 (the 8-bit
      step over 0.6 is 0.0065: half a step plus rounding); the PNG has the SVG's size; pdftotext
      finds the title; a report.attention_class naming no class is one error line naming the file
      and key with a non-zero exit at 2 ranks; README lists the files.
Prints 'N passed, N failed'; exit 0 only when all pass."""
import csv
import glob
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import h5py
import numpy as np

SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402

DOT = 2.5  # MC_PLOT_DOT
TOL_TRUST = 0.02


def run(np_, args):
    return fixture.mpirun(np_, ["--quiet"] + args, capture_output=True, text=True)


def strings(f, base):
    b, o = f[base + "_bytes"][()], f[base + "_offsets"][()]
    return [bytes(b[o[i]:o[i + 1]]).decode().rstrip("\x00") for i in range(len(o) - 1)]


def attr_str(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def sae_codes(x, f):
    """numpy top-k SAE codes [N, m] (relu of the top k of W_enc (x - b_pre) + b_enc)."""
    W_enc, b_enc, b_pre = f["W_enc"][()], f["b_enc"][()], f["b_pre"][()]
    k = int(f.attrs["k"])
    pre = (x - b_pre).astype(np.float64) @ W_enc.T.astype(np.float64) + b_enc
    idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    codes = np.zeros_like(pre)
    rows = np.arange(pre.shape[0])[:, None]
    codes[rows, idx] = np.maximum(pre[rows, idx], 0)
    return codes


def make_world(tmp):
    world = os.path.join(tmp, "world")
    if not os.path.exists(os.path.join(world, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "8",
                        "--val-per-class", "1", "--unseen-per-class", "1"], check=True)
    return world


def svg_dots(root):
    """[(fill rgb 0..255, [(cx, cy) per dot])] of the SVG's filled paths made only of circles
    (cairo writes an arc as M (cx + r, cy) and two curves), in document order."""
    ns = "{http://www.w3.org/2000/svg}"
    out = []
    for p in root.iter(ns + "path"):
        m = re.search(r"fill:rgb\(([\d.]+)%,\s*([\d.]+)%,\s*([\d.]+)%\)", p.get("style", ""))
        d = p.get("d", "")
        cmds = re.findall(r"[A-Za-z]", d)
        if not m or not cmds or set(cmds) != {"M", "C"} or cmds.count("C") != 2 * cmds.count("M"):
            continue
        rgb = tuple(int(round(float(v) * 2.55)) for v in m.groups())
        starts = re.findall(r"M\s*([-\d.e]+)\s+([-\d.e]+)", d)
        out.append((rgb, [(float(x) - DOT, float(y)) for x, y in starts]))
    return out


# The hue a colour name must show (first principles: which channels dominate).
def hue_ok(name, c):
    r, g, b = c
    return {"blue": b > r and b > g, "green": g > r and g > b, "red": r > g and r > b and abs(g - b) < 40,
            "orange": r > g > b, "yellow": r > b and g > b and abs(r - g) < 40, "purple": r > g and b > g}.get(name, True)


def test_tsne(tmp, tsne_run):
    from PIL import Image
    from sklearn.manifold import TSNE, trustworthiness
    world = make_world(tmp)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    snaps = {}
    for np_ in [1, 2]:
        out = os.path.join(tmp, "out%d" % np_)
        shutil.rmtree(out, ignore_errors=True)
        cfg = os.path.join(tmp, "tsne%d.yaml" % np_)
        with open(cfg, "w") as f:
            f.write(f"""name: figs
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: ["3"], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 32, epochs: 3}}
align: {{batch_size: 64, epochs: 3, lr: 0.15, variants: [in+out]}}
localize: {{tau: 5}}
stages: [extract, sae, align, localize, report]
report: {{figures: [tsne], figure_formats: [png, svg, pdf]}}
""")
        r = run(np_, ["run", cfg])
        check(r.returncode == 0, "extract/sae/align/localize/report at %d rank(s) exits 0%s"
              % (np_, "" if r.returncode == 0 else ": " + r.stderr[-800:]))
        figs = sorted(glob.glob(os.path.join(out, "report", "figures", "*")))
        snaps[np_] = {os.path.basename(p): open(p, "rb").read() for p in figs}
    names = sorted(snaps[1])
    want = sorted(["tsne_sae-l3.%s" % e for e in ("png", "svg", "pdf", "csv")] + ["tsne_sae-l3-input.csv"])
    check(names == want, "figure files: %s" % names)
    check(snaps[1] == snaps[2], "figure files identical at 1 and 2 ranks")
    out = os.path.join(tmp, "out1")
    figd = os.path.join(out, "report", "figures")
    with open(os.path.join(figd, "tsne_sae-l3.csv")) as f:
        rows = list(csv.DictReader(f))
    with open(os.path.join(figd, "tsne_sae-l3-input.csv")) as f:
        rd = csv.reader(f)
        head = next(rd)
        inp = [r for r in rd]
    feat_in = [int(r[0]) for r in inp]
    X = np.array([[np.float32(v) for v in r[1:]] for r in inp], dtype=np.float32)

    # The points from the localize store.
    lpath = sorted(glob.glob(os.path.join(out, "localize", "localize-s0-l3-inout-*.h5")))[0]
    with h5py.File(lpath, "r") as f:
        cnames = strings(f, "classes/concepts")
        top = f["classes/sae/top_units"][()]
        tsc = f["classes/sae/top_scores"][()]
        reading = attr_str(f["classes/sae"].attrs["reading"])
        sae_path = attr_str(f["classes/sae"].attrs["sae_store"])
        with h5py.File(attr_str(f.attrs["align_store"]), "r") as a:
            W = a["W"][()].astype(np.float64)
            train = attr_str(a.attrs["extract_store"])
    feats, first, best = [], [], []
    for j in range(top.shape[0]):
        for q in range(top.shape[1]):
            u = int(top[j, q])
            if u not in feats:
                feats.append(u)
                first.append(j)
                best.append(tsc[j, q])
            elif tsc[j, q] > best[feats.index(u)]:  # the class giving it the highest cosine (ties: earlier)
                first[feats.index(u)] = j
                best[feats.index(u)] = tsc[j, q]
    colours = open(os.path.join(world, "colours.txt")).read().split()
    cat = [cnames[j].split()[0] for j in first]
    order = sorted(range(len(feats)), key=lambda i: (colours.index(cat[i]), i))  # series by colour, then point order
    check([int(r["feature"]) for r in rows] == [feats[i] for i in order]
          and [r["class"] for r in rows] == [cnames[first[i]] for i in order]
          and [r["category"] for r in rows] == [cat[i] for i in order] and all(c in colours for c in cat),
          "CSV: %d features, each once, with the class giving it the highest cosine and that class's colour"
          % len(feats))
    check(feat_in == feats and head == ["feature"] + ["e%d" % k for k in range(W.shape[0])],
          "input rows: the same features in localize order, one column per E_n dimension")

    # The embedding localize ranks by, recomputed in numpy (float64).
    check(reading == "algorithm2 (all)", "the localize store's SAE reading is algorithm2 (all): %s" % reading)
    with h5py.File(train, "r") as t:
        valid = t["images/valid"][()].astype(bool)
        acts = t["acts/3"][()][valid].astype(np.float32)
    with h5py.File(sae_path, "r") as s:
        P = s["W_dec_T"][()].astype(np.float64) @ W.T
        g = sae_codes(acts, s).mean(axis=0)
        qv = W @ s["b_pre"][()].astype(np.float64)
    E = g[:, None] * P + qv[None, :]
    E = E[feats]
    E /= np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    err = float(np.abs(E - X).max())
    check(err <= 1e-5, "input rows equal numpy's g E_n W_dec + E_n b_pre, normalised (max |diff| %.2e <= 1e-5)" % err)

    # The layout: tests/tsne's driver on the same rows gives the same bits; sklearn's is as trustworthy.
    n, d = X.shape
    perp = min(30.0, (n - 1) / 3.0)
    xf, yf = os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.f64")
    X.tofile(xf)
    r = subprocess.run([tsne_run, "embed", xf, str(n), str(d), yf, "--method", "exact", "--perplexity", repr(perp),
                        "--seed", "0"], capture_output=True, text=True)
    Yref = np.fromfile(yf, dtype=np.float64).reshape(n, 2) if r.returncode == 0 else np.zeros((n, 2))
    pos = {f: i for i, f in enumerate(feats)}
    Y = np.zeros((n, 2))
    for row in rows:
        Y[pos[int(row["feature"])]] = (float(row["x"]), float(row["y"]))
    check(r.returncode == 0 and np.array_equal(Y, Yref), "CSV points are bitwise mc_tsne's layout of the input rows")
    steps = {"max_iter" if "max_iter" in TSNE().get_params() else "n_iter": 1000}
    ysk = TSNE(n_components=2, perplexity=perp, init="pca", learning_rate="auto", method="exact", random_state=0,
               **steps).fit_transform(X)
    x64 = X.astype(np.float64)
    for k in (5, 10):
        t_sk = trustworthiness(x64, ysk.astype(np.float64), n_neighbors=k)
        t_c = trustworthiness(x64, Y, n_neighbors=k)
        # One-sided: the C layout keeps neighbours at least as well as sklearn's, less the
        # tolerance. On ~25 points the two optimisers can settle in different minima; a better
        # layout than the reference's is no fault (the sanitizer build's rows, rounded a little
        # differently, once gave C 0.798 against sklearn 0.763), a broken gradient or P is worse.
        check(t_c >= t_sk - TOL_TRUST, "trustworthiness(k=%d): C layout %.4f, sklearn %.4f (C >= sklearn - %g)"
              % (k, t_c, t_sk, TOL_TRUST))

    # What is drawn equals the CSV.
    series = []  # (category, [(x, y)]) in CSV (= drawing) order
    for row in rows:
        if not series or series[-1][0] != row["category"]:
            series.append((row["category"], []))
        series[-1][1].append((float(row["x"]), float(row["y"])))
    root = ET.parse(os.path.join(figd, "tsne_sae-l3.svg")).getroot()
    dots = svg_dots(root)
    # Drawn in series order: each category's dots, then the legend's one dot per category.
    ns_ = len(series)
    ok = len(dots) == 2 * ns_
    worst, centres = float("inf"), []
    for s_, (name, pts) in enumerate(series):
        if not ok:
            break
        (rgb, got), (lrgb, lg) = dots[s_], dots[ns_ + s_]
        good = len(got) == len(pts) and len(lg) == 1 and rgb == lrgb and hue_ok(name, rgb)
        if not good:
            print("series %s: %d dots of %s drawn, %d in the CSV; legend dot %s %d" % (name, len(got), rgb, len(pts),
                                                                                    lrgb, len(lg)))
        ok = ok and good
        centres.append((rgb, got))
    ok = ok and len({c for c, _ in centres}) == ns_
    if ok:
        # One affine map per axis from the CSV's values to the SVG's.
        allc = np.array([c for _, g in centres for c in g])
        allp = np.array([p for _, pts in series for p in pts])
        worst = 0.0
        for ax in range(2):
            A = np.stack([allp[:, ax], np.ones(len(allp))], axis=1)
            coef, *_ = np.linalg.lstsq(A, allc[:, ax], rcond=None)
            worst = max(worst, float(np.abs(A @ coef - allc[:, ax]).max()))
    desc = root.find("{http://www.w3.org/2000/svg}desc")
    desc = desc.text if desc is not None and desc.text else ""
    check(ok and worst < 0.01 and all("series: %s" % name in desc for name, _ in series),
          "SVG: per category one path of dots in its own colour (its hue) and a legend dot, at the CSV's positions (affine residual %.2e), legend %s"
          % (worst, [n for n, _ in series]))
    svg_w, svg_h = int(float(root.get("width"))), int(float(root.get("height")))
    im = Image.open(os.path.join(figd, "tsne_sae-l3.png"))
    im.load()
    a = np.asarray(im.convert("RGB")).astype(int)
    # The legend box (white, grey border) is drawn over the data: dots under it are not visible.
    box = None
    for p in root.iter("{http://www.w3.org/2000/svg}path"):
        if "fill:rgb(100%,100%,100%)" in p.get("style", "") and "stroke:rgb(80%,80%,80%)" in p.get("style", ""):
            v = [float(t) for t in re.findall(r"[-\d.]+", p.get("d", ""))]
            box = (min(v[0::2]) - 1, min(v[1::2]) - 1, max(v[0::2]) + 1, max(v[1::2]) + 1)
    bad, hidden = 0, 0
    if ok:
        flat = [(rgb, c) for rgb, g in centres for c in g]
        for i, (rgb, (cx, cy)) in enumerate(flat):
            allowed = {rgb} | {o for o, (ox, oy) in flat[i + 1:] if (ox - cx) ** 2 + (oy - cy) ** 2 <= (2 * DOT + 1) ** 2}
            px = tuple(int(v) for v in a[int(round(2 * cy - 0.5)), int(round(2 * cx - 0.5))])
            if box and box[0] - DOT <= cx <= box[2] + DOT and box[1] - DOT <= cy <= box[3] + DOT:
                hidden += 1
                continue
            if px not in allowed:
                bad += 1
                print("dot at (%.1f, %.1f) of %s: pixel %s" % (cx, cy, rgb, px))
    check(im.size == (2 * svg_w, 2 * svg_h) and ok and box is not None and bad == 0 and hidden < len(rows) // 4,
          "PNG %dx%d (twice the SVG): every dot's centre pixel has its category's colour (%d wrong; %d under the "
          "legend box)" % (*im.size, bad, hidden))
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", os.path.join(figd, "tsne_sae-l3.pdf"), "-"],
                          capture_output=True, text=True).stdout
    check("t-SNE of the SAE features" in text and all(name in text for name, _ in series),
          "PDF text holds the title and every category of the legend")
    readme = open(os.path.join(out, "report", "README.md")).read()
    check("figures/tsne_sae-l3.png" in readme and "figures/tsne_sae-l3.csv" in readme
          and "figures/tsne_sae-l3-input.csv" in readme, "README lists the figure and both CSVs")


def svg_lines(root):
    """[(stroke rgb 0..255, [(x, y) per vertex])] of the SVG's 1.75-wide stroked paths (the data
    lines of src/plot/plot.c), in document order."""
    out = []
    for p in root.iter("{http://www.w3.org/2000/svg}path"):
        st = p.get("style", "")
        m = re.search(r"stroke:rgb\(([\d.]+)%,\s*([\d.]+)%,\s*([\d.]+)%\)", st)
        if not m or "stroke-width:1.75;" not in st:
            continue
        rgb = tuple(int(round(float(v) * 2.55)) for v in m.groups())
        pts = [(float(x), float(y)) for x, y in re.findall(r"[ML]\s*([-\d.e]+)\s+([-\d.e]+)", p.get("d", ""))]
        out.append((rgb, pts))
    return out


def test_flawed(tmp):
    from PIL import Image
    world = os.path.join(tmp, "world")
    if not os.path.exists(os.path.join(world, "classes.txt")):
        # 3 validation images per class: 108 eval images, enough for the ~93% model to miss some.
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "8",
                        "--val-per-class", "3", "--unseen-per-class", "1"], check=True)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    layers = ["2", "3", "logits"]
    snaps = {}
    for np_ in [1, 2]:
        out = os.path.join(tmp, "out%d" % np_)
        shutil.rmtree(out, ignore_errors=True)
        cfg = os.path.join(tmp, "fr%d.yaml" % np_)
        with open(cfg, "w") as f:
            f.write(f"""name: figs
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: ["2", "3", logits], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 32, epochs: 3}}
align: {{batch_size: 64, epochs: 3, lr: 0.15, variants: [in+out]}}
stages: [extract, sae, align, report]
report: {{figures: [flawed_reasoning], figure_formats: [png, svg, pdf]}}
""")
        r = run(np_, ["run", cfg])
        check(r.returncode == 0, "extract/sae/align/report at %d rank(s) exits 0%s"
              % (np_, "" if r.returncode == 0 else ": " + r.stderr[-800:]))
        figs = sorted(glob.glob(os.path.join(out, "report", "figures", "*")))
        snaps[np_] = {os.path.basename(p): open(p, "rb").read() for p in figs}
    names = sorted(snaps[1])
    check(names == ["flawed_reasoning.%s" % e for e in ("csv", "pdf", "png", "svg")], "figure files: %s" % names)
    check(snaps[1] == snaps[2], "figure files identical at 1 and 2 ranks")
    out = os.path.join(tmp, "out1")
    figd = os.path.join(out, "report", "figures")
    with open(os.path.join(figd, "flawed_reasoning.csv")) as f:
        rows = list(csv.DictReader(f))

    # numpy: the eval store, the concept set's text embeddings, E_n per layer.
    with h5py.File(glob.glob(os.path.join(out, "extract", "eval-*.h5"))[0], "r") as e:
        labels, pred = e["images/labels"][()], e["target/predictions"][()]
        valid = e["images/valid"][()].astype(bool)
        enames = strings(e, "classes/names")
        acts = {l: e["acts/" + l][()].astype(np.float64) for l in layers}
    with h5py.File(glob.glob(os.path.join(out, "concepts", "classes-*.h5"))[0], "r") as cst:
        texts, T = strings(cst, "names"), cst["embeds"][()].astype(np.float64)
    Ws = {}
    for l in layers:
        tag = l
        with h5py.File(glob.glob(os.path.join(out, "align", "align-s0-l%s-inout-*.h5" % tag))[0], "r") as a:
            Ws[l] = a["W"][()].astype(np.float64)
    low = [t.lower() for t in texts]
    pick = {}
    for i in range(len(labels)):
        if not valid[i] or not 0 <= pred[i] < len(texts) or enames[labels[i]].lower() not in low:
            continue
        t = low.index(enames[labels[i]].lower())
        k = "correct" if t == pred[i] else "misclassified"
        pick.setdefault(k, (i, t, int(pred[i])))
    check(set(pick) == {"correct", "misclassified"}, "the eval set has a correct and a misclassified image: %s" % pick)

    def cos(l, i, j):
        z = Ws[l] @ acts[l][i]
        return float(z @ T[j] / max(np.linalg.norm(z) * np.linalg.norm(T[j]), 1e-12))

    i, t, _ = pick["correct"]
    # The correct image's competitor: the other class closest at the last layer.
    cl = [cos(layers[-1], i, j) if j != t else -np.inf for j in range(len(texts))]
    pick["correct"] = (i, t, int(np.argmax(cl)))
    want, got = [], []
    for panel in ("correct", "misclassified"):
        i, t, o = pick[panel]
        for lab, j in (("ground_truth", t), ("closest_other" if panel == "correct" else "predicted", o)):
            for li, l in enumerate(layers):
                want.append((panel, str(i), str(li + 1), l, lab, texts[j], cos(l, i, j)))
    got = [(r["panel"], r["image"], r["layer_index"], r["layer"], r["label"], r["class"], float(r["cosine"])) for r in rows]
    same = len(got) == len(want) and all(g[:6] == w[:6] for g, w in zip(got, want))
    err = max(abs(g[6] - w[6]) for g, w in zip(got, want)) if same else float("inf")
    check(same and err <= 1e-5, "CSV rows: the first correct / misclassified eval image, their labels and every "
          "layer's cosine equal numpy's (max |diff| %.2e <= 1e-5)" % err)

    # What is drawn equals the CSV: two 1.75-wide lines per panel whose vertices are an affine image of
    # (layer index, cosine); the marker where the competitor first exceeds the ground truth.
    root = ET.parse(os.path.join(figd, "flawed_reasoning.svg")).getroot()
    lines = svg_lines(root)
    ok = len(lines) == 4 and all(len(p) == len(layers) for _, p in lines)
    worst = float("inf")
    if ok:
        worst = 0.0
        for pi in range(2):
            data = [r for r in got if r[0] == ("correct", "misclassified")[pi]]
            pts = np.array([p for _, pl in lines[2 * pi:2 * pi + 2] for p in pl])
            val = np.array([(float(r[2]), r[6]) for r in data])
            for ax in range(2):
                A = np.stack([val[:, ax], np.ones(len(val))], axis=1)
                coef, *_ = np.linalg.lstsq(A, pts[:, ax], rcond=None)
                worst = max(worst, float(np.abs(A @ coef - pts[:, ax]).max()))
    check(ok and worst < 0.01, "SVG: 2 lines per panel of %d vertices at the CSV's values (affine residual %.2e)"
          % (len(layers), worst))
    desc = root.find("{http://www.w3.org/2000/svg}desc")
    desc = desc.text if desc is not None and desc.text else ""
    markers = []
    for panel in ("correct", "misclassified"):
        d = [r for r in got if r[0] == panel]
        gt = [r[6] for r in d if r[4] == "ground_truth"]
        ot = [r[6] for r in d if r[4] != "ground_truth"]
        over = [li for li in range(len(layers)) if ot[li] > gt[li]]
        markers.append(over[0] + 1 if over else None)
    # desc lists each panel's title and its markers ("marker: <label> at x = <layer index>").
    mlines = [ln for ln in desc.splitlines() if ln.startswith("marker: ")]
    want_m = ["marker: %s overtakes at x = %d" % ("other label" if k == 0 else "wrong label", m)
              for k, m in enumerate(markers) if m is not None]
    never = sum(m is None for m in markers)
    check(mlines == want_m and desc.count("(never overtaken)") == never
          and all(("series: ground truth: %s" % texts[pick[p][1]]) in desc for p in pick),
          "SVG desc: the legend names the labels; markers %s exactly where the competitor first exceeds the ground "
          "truth (layer index per panel: %s), '(never overtaken)' in the other panels' titles" % (mlines, markers))
    svg_w, svg_h = int(float(root.get("width"))), int(float(root.get("height")))
    im = Image.open(os.path.join(figd, "flawed_reasoning.png"))
    im.load()
    a = np.asarray(im.convert("RGB")).astype(int)
    colours = {tuple(c) for c in a.reshape(-1, 3)}
    check(im.size == (2 * svg_w, 2 * svg_h) and all(c in colours for c, _ in lines),
          "PNG %dx%d (twice the SVG) shows both lines' colours" % im.size)
    text = subprocess.run(["pdftotext", "-enc", "UTF-8", os.path.join(figd, "flawed_reasoning.pdf"), "-"],
                          capture_output=True, text=True).stdout
    check("Flawed reasoning" in text and "ground truth" in text and "predicted" in text,
          "PDF text holds the title and the legend")
    readme = open(os.path.join(out, "report", "README.md")).read()
    check("figures/flawed_reasoning.png" in readme and "figures/flawed_reasoning.csv" in readme,
          "README lists the figure and its CSV")


def vit_forward_maps(vit_dir, px, layer, sae, feats):
    """numpy float64: pixels [3, 64, 64] -> the mean-of-heads CLS->patch attention of block layer+1
    when the patch tokens at layer keep only feats (dict of SAE arrays)."""
    import json
    import math
    sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
    from ref_vit_suffix import load_safetensors
    cfg = json.load(open(os.path.join(vit_dir, "config.json")))
    w = load_safetensors(os.path.join(vit_dir, "model.safetensors"))
    H, eps, P = cfg["num_attention_heads"], cfg.get("layer_norm_eps", 1e-12), cfg["patch_size"]
    pre = "vit." if "vit.embeddings.cls_token" in w else ""

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * w[p + ".weight"] + w[p + ".bias"]

    def lin(x, p):
        return x @ w[p + ".weight"].T + w[p + ".bias"]

    def attn_probs(x, i):
        p = "%sencoder.layer.%d." % (pre, i)
        T, D = x.shape
        hd = D // H
        h = ln(x, p + "layernorm_before")
        q, k = (lin(h, p + "attention.attention." + n).reshape(T, H, hd).transpose(1, 0, 2) for n in ("query", "key"))
        s_ = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s_ = np.exp(s_ - s_.max(-1, keepdims=True))
        return s_ / s_.sum(-1, keepdims=True)

    def block(x, i):
        p = "%sencoder.layer.%d." % (pre, i)
        T, D = x.shape
        hd = D // H
        pr = attn_probs(x, i)
        h = ln(x, p + "layernorm_before")
        v = lin(h, p + "attention.attention.value").reshape(T, H, hd).transpose(1, 0, 2)
        a = (pr @ v).transpose(1, 0, 2).reshape(T, D)
        x = x + lin(a, p + "attention.output.dense")
        h = lin(ln(x, p + "layernorm_after"), p + "intermediate.dense")
        erf = np.vectorize(math.erf)
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        return x + lin(h, p + "output.dense")

    C, S = px.shape[0], px.shape[1] // P
    Wp = w[pre + "embeddings.patch_embeddings.projection.weight"].reshape(-1, C * P * P)
    pat = px.reshape(C, S, P, S, P).transpose(1, 3, 0, 2, 4).reshape(S * S, C * P * P)
    x = np.concatenate([w[pre + "embeddings.cls_token"].reshape(1, -1),
                        pat @ Wp.T + w[pre + "embeddings.patch_embeddings.projection.bias"]], 0)
    x = x + w[pre + "embeddings.position_embeddings"].reshape(x.shape)
    for i in range(layer):
        x = block(x, i)
    codes = sae_codes(x[1:], sae)
    keep = np.zeros(codes.shape[1], bool)
    keep[list(feats)] = True
    x = x.copy()
    x[1:] = sae["b_pre"][()].astype(np.float64) + (codes * keep) @ sae["W_dec_T"][()].astype(np.float64)
    pr = attn_probs(x, layer)[:, 0, 1:]
    pr = pr / pr.sum(-1, keepdims=True)
    return pr.mean(0)


def svg_heat_images(path):
    """The small RGBA images cairo embedded in the SVG (base64 PNG), in document order."""
    import base64
    import io
    from PIL import Image
    txt = open(path).read()
    out = []
    for m in re.finditer(r"data:image/png;base64,([A-Za-z0-9+/=\s]+)", txt):
        im = Image.open(io.BytesIO(base64.b64decode(re.sub(r"\s", "", m.group(1)))))
        im.load()
        out.append(im)
    return out


def test_attention(tmp):
    from PIL import Image
    world = os.path.join(tmp, "world")  # 6 eval images per class: Figure 4 shows a class's first 6
    if not os.path.exists(os.path.join(world, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "8",
                        "--val-per-class", "6", "--unseen-per-class", "1"], check=True)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    colours = open(os.path.join(world, "colours.txt")).read().split()

    def config(np_, concept):
        out = os.path.join(tmp, "out%d" % np_)
        cfg = os.path.join(tmp, "attn%d.yaml" % np_)
        with open(cfg, "w") as f:
            f.write(f"""name: figs
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
extract: {{layers: ["3"], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 32, epochs: 3}}
align: {{batch_size: 64, epochs: 3, lr: 0.15, variants: [in+out]}}
localize: {{tau: 5}}
describe: {{tau: 3}}
stages: [extract, sae, align, localize, describe, report]
report: {{figures: [attention_maps], figure_formats: [png, svg, pdf], attention_concept: "{concept}"}}
""")
        return out, cfg

    # First pass: the default concept ("green"), to learn which colours some feature is described by.
    snaps = {}
    out, cfg = config(1, "green")
    shutil.rmtree(out, ignore_errors=True)
    r = run(1, ["run", cfg])
    check(r.returncode == 0, "the pipeline with attention_maps exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-800:]))
    dpath = glob.glob(os.path.join(out, "describe", "describe-s0-l3-inout-*.h5"))
    with h5py.File(dpath[0], "r") as d:
        con = strings(d, "world/concepts")
        tc, ts = d["world/sae/top_concepts"][()], d["world/sae/top_scores"][()]
    described = [con[t] for t in tc[:, 0]]
    have = [c for c in colours if c in described]
    concept = "green" if "green" in have else (have[0] if have else None)
    check(concept is not None, "some SAE feature's top description is a colour: %s" % have)
    if concept is None:
        return
    for np_ in [1, 2, 4]:
        out, cfg = config(np_, concept)
        if np_ > 1:
            shutil.rmtree(out, ignore_errors=True)
        r = run(np_, ["run", cfg])
        check(r.returncode == 0, "report with attention_concept %s at %d rank(s) exits 0%s"
              % (concept, np_, "" if r.returncode == 0 else ": " + r.stderr[-800:]))
        figs = sorted(glob.glob(os.path.join(out, "report", "figures", "attention_maps*")))
        snaps[np_] = {os.path.basename(p): open(p, "rb").read() for p in figs}
    names = sorted(snaps[1])
    want = sorted(["attention_maps.csv"] + ["attention_maps_%s.%s" % (f, e) for f in ("class", "concept")
                                           for e in ("png", "svg", "pdf")])
    check(names == want, "figure files: %s" % names)
    check(snaps[1] == snaps[2] == snaps[4], "figure files identical at 1, 2 and 4 ranks")
    out = os.path.join(tmp, "out1")
    figd = os.path.join(out, "report", "figures")
    rows = list(csv.DictReader(open(os.path.join(figd, "attention_maps.csv"))))

    # numpy: which images and features.
    with h5py.File(glob.glob(os.path.join(out, "extract", "eval-*.h5"))[0], "r") as e:
        labels, valid = e["images/labels"][()], e["images/valid"][()].astype(bool)
        enames, paths = strings(e, "classes/names"), strings(e, "images/paths")
        acts = e["acts/3"][()].astype(np.float64)
    with h5py.File(glob.glob(os.path.join(out, "localize", "localize-s0-l3-inout-*.h5"))[0], "r") as f:
        cnames = strings(f, "classes/concepts")
        top = f["classes/sae/top_units"][()]
        sae_path = os.path.join(out, "sae", os.path.basename(attr_str(f["classes/sae"].attrs["sae_store"])))
    sae = h5py.File(sae_path, "r")
    cls = cnames[0]
    f4 = [i for i in range(len(labels)) if valid[i] and enames[labels[i]].lower() == cls.lower()][:6]
    cand = [u for u in range(tc.shape[0]) if con[tc[u, 0]] == concept]
    feat6 = max(cand, key=lambda u: (ts[u, 0], -u))
    z = sae_codes(acts, sae)[:, feat6]
    order = sorted([i for i in range(len(labels)) if valid[i] and z[i] > 0], key=lambda i: (-z[i], i))[:6]
    plan = [("class", f4, [int(u) for u in top[0]]), ("concept", order, [feat6])]
    got = {}
    for r_ in rows:
        got.setdefault((r_["figure"], int(r_["image"])), []).append(float(r_["attention"]))
    check([(k[0], k[1]) for k in got] == [(f, i) for f, imgs, _ in plan for i in imgs]
          and all(r_["features"] == " ".join(map(str, dict((p[0], p[2]) for p in plan)[r_["figure"]])) for r_ in rows),
          "CSV: Figure 4 = the first %d eval images of '%s' with its localized features %s; Figure 6 = feature %d "
          "(top description '%s'), its top images %s" % (len(f4), cls, list(top[0]), feat6, concept, order))
    worst, want_maps = 0.0, {}
    for fig, imgs, feats in plan:
        for i in imgs:
            im = np.asarray(Image.open(paths[i]).convert("RGB"), np.float64) / 255.0
            assert im.shape == (64, 64, 3), "world images are 64x64 (no resize): %s" % (im.shape,)
            px = ((im - 0.5) / 0.5).transpose(2, 0, 1)
            m = vit_forward_maps(vit, px, 3, sae, feats)
            want_maps[(fig, i)] = m
            g = np.array(got.get((fig, i), []))
            worst = max(worst, float(np.abs(g - m).max()) if g.shape == m.shape else float("inf"))
    check(worst <= 1e-6, "every map equals numpy's recomputation (block 4, CLS row over patches renormalised, "
          "mean of heads; max |diff| %.2e <= 1e-6)" % worst)

    # The drawing: each SVG embeds one 8x8 heat image per tile, alpha = 0.15 + 0.6 * map / max.
    for fig, imgs, _ in plan:
        svg = os.path.join(figd, "attention_maps_%s.svg" % fig)
        heats = [h for h in svg_heat_images(svg) if h.size == (8, 8) and h.mode == "RGBA"]
        ok, err_ = len(heats) == len(imgs), float("inf")
        if ok:
            err_ = 0.0
            for h, i in zip(heats, imgs):
                a = np.asarray(h, np.float64)[:, :, 3].reshape(-1) / 255.0
                t = (a - 0.15) / 0.6
                m = want_maps[(fig, i)]
                m = m - m.min()  # drawn from the map's minimum (cold) to its maximum
                err_ = max(err_, float(np.abs(t - m / m.max()).max()))
        check(ok and err_ <= 0.004, "%s SVG: %d heat images decode to the maps over their max (max |diff| %.4f <= "
              "0.004)" % (fig, len(heats), err_))
        root = ET.parse(svg).getroot()
        im = Image.open(os.path.join(figd, "attention_maps_%s.png" % fig))
        check(im.size == (int(float(root.get("width"))), int(float(root.get("height")))),
              "%s PNG has the SVG's size %s" % (fig, im.size))
        text = subprocess.run(["pdftotext", "-enc", "UTF-8", os.path.join(figd, "attention_maps_%s.pdf" % fig), "-"],
                              capture_output=True, text=True).stdout
        check("CLS attention, block 4" in text, "%s PDF text holds the title" % fig)
    # A class that is not one: one error line naming the file and the key, non-zero exit on every rank.
    out, cfg = config(2, concept)
    txt = open(cfg).read().replace('attention_concept:', 'attention_class: "no such class", attention_concept:')
    open(cfg, "w").write(txt)
    r = run(2, ["run", cfg, "--stage", "report"])
    errs = [l for l in r.stderr.splitlines() if "error" in l.lower()]
    check(r.returncode != 0 and len(errs) == 1 and "report.attention_class" in errs[0] and cfg in errs[0],
          "report.attention_class naming no class: one error line naming the file and key, non-zero exit: %s" % errs)
    out = os.path.join(tmp, "out1")
    readme = open(os.path.join(out, "report", "README.md")).read()
    check(all("figures/attention_maps_%s.png" % f in readme for f in ("class", "concept"))
          and "figures/attention_maps.csv" in readme, "README lists both figures and the CSV")


def main():
    part = sys.argv[1]
    tmp = os.path.join(os.getcwd(), "report_figs_" + part)
    os.makedirs(tmp, exist_ok=True)
    {"tsne": lambda t: test_tsne(t, sys.argv[2]), "flawed": test_flawed,
     "attention": test_attention}[part](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
