#!/usr/bin/python3
"""The baselines stage (Act-Values, CLIP-Dissect) end to end on a generated tiny world with the
trained tiny ViT and CLIP (experiments/world/{vit,clip}): extract -> sae -> baselines.

  test_baselines.py ranks      layers 3 and logits, neurons and a 520-feature SAE (3 unit blocks,
                               so 2 and 4 ranks split the units), both methods, three concept
                               sets, at 1, 2 (streamed activations) and 4 ranks: every store
                               dataset, CSV table and report bitwise equal; a rerun is a no-op
                               that says "complete, skipping"; a store left incomplete is
                               rebuilt; the documented store layout
  test_baselines.py ref        an independent numpy (float64) Act-Values and soft-WPMI from the
                               stored activations, predictions, CLIP image embeddings, concept
                               embeddings and SAE weights: the stored score matrices (describe/
                               <set>/<kind>/sim) within 1e-5 relative (Act-Values) and 2e-5
                               relative + 1e-4 absolute (soft-WPMI: a sum of 100 logs stored as
                               float32); top-tau concept and unit tables equal numpy's where the
                               numpy scores at the cut differ by more than the tolerance
  test_baselines.py world      seeds 0 and 1 (900 of 1,080 images each), layer logits: the
                               description accuracy of both methods is reported; Act-Values
                               names at least 90% of the logit neurons by their own class (a
                               logit is largest, on average, on the images predicted as its class
                               unless the class is rarely predicted; measured 100%), CLIP-Dissect
                               at least 60% (it depends on how well the tiny CLIP matches images
                               to class names; measured 94-97%, the misses are similar shapes)
  test_baselines.py intervene  intervene with act_values and clip_dissect (neurons and SAE
                               features, beta 0, eval): each class's units are the baselines
                               store's top units of the class's concept; records name the method
  test_baselines.py bad        a missing extract store and a missing SAE name the stage to run;
                               intervene without the baselines output (one error line, exit 1 on
                               every rank)
  test_baselines.py vinterp    V-Interp with the scripted explainer tests/baselines/
                               vinterp_explainer.sh (the majority predicted class of a unit's top
                               images) at 1, 2 and 4 ranks: outputs, grids and manifests equal;
                               each neuron's manifest lists its numpy top-9 images; the stored
                               descriptions are the explainer's first lines; the cosines and the
                               unit and concept rankings equal numpy's from the descriptions' CLIP
                               text embeddings; intervene edits V-Interp's units; the reports name
                               the explainer; the same descriptions from a JSON file give the same
                               store; failing explainers (non-zero exit, no output, timeout) and
                               bad descriptions files give one error line on both ranks
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from test_method import file_states, h5_datasets, same_outputs, strings  # noqa: E402

VIT = os.path.join(SRC, "experiments", "world", "vit")
CLIP = os.path.join(SRC, "experiments", "world", "clip")

# CLIP-Dissect's published defaults (the authors' similarity.soft_wpmi), as the stage uses them.
TOP_K, A, LAM, MIN_PROB, P_START, P_END = 100, 10.0, 1.0, 1e-7, 0.998, 0.97


def make_world(root, per_class, val=1):
    if not os.path.exists(os.path.join(root, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", root, "--seed", "1", "--per-class",
                        str(per_class), "--val-per-class", str(val), "--unseen-per-class", "1"], check=True)
    return root


def write_config(path, world, out, stages="[extract, sae, baselines, report]", layers='["3", logits]', extra="",
                 methods="[act_values, clip_dissect]", seeds="[0]", eval_set=False, sae_layer="3", train=""):
    with open(path, "w") as f:
        f.write(f"""name: bl
output_dir: {out}
seeds: {seeds}
models: {{target: {VIT}, clip: {CLIP}}}
datasets:
  train: {{kind: world, root: {world}, split: train{train}}}
{"  eval: {kind: world, root: %s, split: val}" % world if eval_set else ""}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
  - {{name: textures, file: {world}/textures.txt}}
extract: {{layers: {layers}, batch_size: 64}}
sae: {{layer: "{sae_layer}", features: 520, k: 6, batch_size: 64, epochs: 2, init_samples: 256}}
localize: {{tau: 5}}
describe: {{tau: 4}}
baselines: {{methods: {methods}}}
report: {{figures: []}}
stages: {stages}
{extra}
""")


def run(np_, args, **kw):
    return fixture.mpirun(np_, ["--quiet"] + args, capture_output=True, text=True, **kw)


def bl_store(out, task):
    f = sorted(glob.glob(os.path.join(out, "baselines", task + "-*.h5")))
    return f[0] if len(f) == 1 else None


def test_ranks(tmp):
    world = make_world(os.path.join(tmp, "world"), 8)
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        write_config(cfg, world, out)
        env = dict(os.environ, MICLIP_PRELOAD_MB="0") if n == 2 else None
        t0 = time.time()
        r = run(n, ["run", cfg], env=env)
        check(r.returncode == 0, "extract -> sae -> baselines at %d rank(s)%s exits 0 in %.1f s (%s)" % (
            n, " (streamed)" if env else "", time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%d-rank outputs (baselines stores, CSV tables, reports) equal the 1-rank outputs bitwise %s" % (n, why))
    out = outs[1]
    stores = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "baselines", "*.h5")))
    check(len(stores) == 4, "4 baselines stores (2 layers x 2 methods): %s" % stores)
    before = file_states(outs[2])
    r = fixture.mpirun(2, ["run", os.path.join(tmp, "ranks2.yaml")], capture_output=True, text=True)
    after = file_states(outs[2])
    touched = sorted(os.path.relpath(p, outs[2]) for p in set(before) | set(after) if before.get(p) != after.get(p))
    check(r.returncode == 0 and not touched, "a rerun exits 0 and touches no file %s" % touched[:5])
    check(sum(re.match(r"miclip(\[0\])?: baselines baselines-", l) is not None and "complete, skipping" in l
              for l in r.stderr.splitlines()) == 4,
          "the rerun skips the 4 baselines tasks")
    # A store left incomplete (a killed run: no `complete` mark, data half written) is redone.
    s2 = bl_store(outs[2], "baselines-s0-l3-clip_dissect")
    with h5py.File(s2, "a") as f:
        del f.attrs["complete"]
        f["describe/world/sae/sim"][:10] = 0
    r = fixture.mpirun(2, ["run", os.path.join(tmp, "ranks2.yaml")], capture_output=True, text=True)
    ok, why = same_outputs(outs[1], outs[2])
    check(r.returncode == 0 and ok, "an incomplete store is rebuilt on the rerun and equals the 1-rank one %s" % why)
    # Layout (docs/baselines.md).
    s = bl_store(out, "baselines-s0-l3-clip_dissect")
    with h5py.File(s, "r") as f:
        names = h5_datasets(f)
        want = []
        for g in ("localize", "describe"):
            for cs in ("classes", "world", "textures"):
                want += ["%s/%s/concepts_bytes" % (g, cs), "%s/%s/concepts_offsets" % (g, cs)]
                for k in ("neuron", "sae"):
                    if g == "localize":
                        want += ["localize/%s/%s/top_units" % (cs, k), "localize/%s/%s/top_scores" % (cs, k)]
                    else:
                        want += ["describe/%s/%s/%s" % (cs, k, d) for d in ("top_concepts", "top_scores", "sim")]
        check(sorted(want) == names, "clip_dissect store datasets as documented (%d)" % len(names))
        check(f.attrs["method"] == "clip_dissect" and f.attrs["layer"] == "3" and f.attrs["complete"] == 1 and
              int(f.attrs["clip_dissect_top_k"]) == 100 and f.attrs["stage"] == "baselines",
              "root attributes: method, layer, complete, top_k, provenance")
        check(f["localize/classes/sae/top_units"].shape == (36, 5) and f["describe/world/sae/sim"].shape[0] == 520 and
              int(f["describe/classes/neuron"].attrs["n_units"]) == 64 and int(f["describe/classes/neuron"].attrs["tau"]) == 4,
              "shapes: top_units [36, 5], 520 SAE features, 64 neurons, tau 4")
        su = f["localize/classes/sae/top_units"][()]
        check(len(set(su[:, 0].tolist())) > 1 and su.max() >= 256,
              "SAE top units come from more than one unit block (max index %d)" % su.max())
    s = bl_store(out, "baselines-s0-llogits-act_values")
    with h5py.File(s, "r") as f:
        names = h5_datasets(f)
        check(all(n.split("/")[1] == "classes" for n in names) and "describe/classes/neuron/sim" in names,
              "act_values writes only the class-name set (%d datasets)" % len(names))
        check("description_accuracy" in f["describe/classes/neuron"].attrs, "logits: description accuracy attribute")
    rep = open(os.path.join(out, "report", "baselines.md")).read()
    check("| logits | act_values | classes | 1 |" in rep and "| logits | clip_dissect | classes | 1 |" in rep,
          "report/baselines.md has the logit description accuracy of both methods")
    frag = open(os.path.join(out, "report", "baselines", "baselines-s0-llogits-clip_dissect.md")).read()
    with h5py.File(glob.glob(os.path.join(out, "baselines", "baselines-s0-llogits-clip_dissect-*.h5"))[0], "r") as f:
        acc = f["describe/classes/neuron"].attrs.get("description_accuracy")
    check("<!--" not in frag and acc is not None and "| logits | clip_dissect | classes | 1 | %.1f%% |" % (100 * acc) in rep,
          "the accuracy lives in the store (describe's group layout) and the report reads it there, not from the text")
    csvs = sorted(os.path.basename(p) for p in glob.glob(os.path.join(out, "tables", "baselines-*.csv")))
    check("baselines-s0-l3-clip_dissect-localize-world-sae.csv" in csvs and
          "baselines-s0-l3-act_values-describe-classes-neuron.csv" in csvs and len(csvs) == 2 * 2 + 2 * 6 + 1 * 2 + 1 * 6,
          "CSV tables per (task, layout, set, kind): %d" % len(csvs))


# ---- numpy reference ------------------------------------------------------------------------------


def concept_embeds(out, name, prompt="{}"):
    """The stored text embeddings of a concept set under prompt (the baselines embed bare texts)."""
    for p in sorted(glob.glob(os.path.join(out, "concepts", name + "-*.h5"))):
        with h5py.File(p, "r") as f:
            if f.attrs["prompt"] == prompt:
                return f["embeds"][()].astype(np.float64)
    raise AssertionError("no concept store of set %s with prompt %r" % (name, prompt))


def norm_rows(x):
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def sae_pre(sae_path, x):
    """The SAE's pre-activations W_enc (x - b_pre) + b_enc of the vectors x, float64."""
    with h5py.File(sae_path, "r") as f:
        W, b, bp = f["W_enc"][()].astype(np.float64), f["b_enc"][()].astype(np.float64), f["b_pre"][()].astype(np.float64)
    return (x - bp) @ W.T + b


def act_values_ref(a, pred, valid, C):
    """[U, C] mean activation over the valid images predicted as each class (-inf: none)."""
    S = np.full((a.shape[1], C), -np.inf)
    for c in range(C):
        m = valid & (pred == c)
        if m.any():
            S[:, c] = a[m].mean(axis=0)
    return S


def soft_wpmi_official(clip_feats, target_feats, top_k=TOP_K, a=A, lam=LAM, min_prob=MIN_PROB, p_start=P_START,
                       p_end=P_END):
    """The authors' similarity.soft_wpmi (github.com/Trustworthy-ML-Lab/CLIP-dissect), written in
    numpy (float64) from its published behaviour: clip_feats [N, Cn] cosines of the probe images with
    the concept texts, target_feats [N, U] activations; returns [U, Cn]. Its top_k images per unit
    come from torch.topk, which orders equal activations arbitrarily; this reference takes every
    group of equal activations reaching into the top_k slots at its expected value over a uniformly
    random order (slot i adds the mean of its term over the group holding sorted position i), which
    is the authors' sum wherever a unit has no ties."""
    z = a * clip_feats
    P = np.exp(z - z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)  # softmax over concepts
    N, U = target_feats.shape
    p_in = p_start - np.arange(top_k) / top_k * (p_start - p_end)
    L = np.zeros((U, P.shape[1]))
    for u in range(U):
        v = target_feats[:, u]
        order = np.argsort(-v, kind="stable")[:top_k]  # any order of ties: only the groups matter
        for val in np.unique(v[order]):
            slots = np.nonzero(v[order] == val)[0]
            grp = np.nonzero(v == val)[0]
            L[u] += np.log(1 + p_in[slots, None, None] * (P[grp][None] - 1) + min_prob).mean(axis=1).sum(axis=0)
    mx = L.max(axis=0)
    prob_d = mx + np.log(np.exp(L - mx).sum(axis=0)) - np.log(U)  # logsumexp over units - log U
    return L - lam * prob_d


def soft_wpmi_ref(a, img_emb, txt_emb, valid):
    """[U, Cn] soft-WPMI of the valid images: the authors' function on the cosines of the
    normalised CLIP image and (bare) concept text embeddings, as their utils computes them."""
    idx = np.nonzero(valid)[0]
    clip_feats = norm_rows(img_emb[idx]) @ norm_rows(txt_emb).T
    return soft_wpmi_official(clip_feats, a[idx], top_k=min(TOP_K, len(idx)))


def top_ok(ref, got_idx, tau, tol, skip_rows=(), skip_cols=()):
    """Rows of ref (one per row of got_idx): the stored top-tau list must equal numpy's ranking
    where numpy's scores at the cut (tau-th vs tau+1-th) and within the list differ by > tol.
    Rows in skip_rows, and rows whose numpy top tau+1 hold a column of skip_cols, are left out."""
    bad = checked = 0
    for i in range(ref.shape[0]):
        r = ref[i]
        order = np.lexsort((np.arange(len(r)), -r))
        s = r[order]
        gaps = np.abs(np.diff(s[:tau + 1]))
        if np.isneginf(s[:tau + 1]).any() or (gaps.size and gaps.min() <= tol):
            continue
        if i in skip_rows or set(order[:tau + 1].tolist()) & set(skip_cols):
            continue
        checked += 1
        bad += not np.array_equal(order[:tau], got_idx[i])
    return bad, checked


def test_ref(tmp):
    world = make_world(os.path.join(tmp, "world"), 8)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "ref.yaml")
    write_config(cfg, world, out)
    r = run(1, ["run", cfg])
    check(r.returncode == 0, "extract -> sae -> baselines exits 0 (%s)" % r.stderr.strip()[-300:])
    train = sorted(glob.glob(os.path.join(out, "extract", "train-*.h5")))[0]
    sae = sorted(glob.glob(os.path.join(out, "sae", "*.h5")))[0]
    with h5py.File(train, "r") as f:
        pred, valid = f["target/predictions"][()], f["images/valid"][()].astype(bool)
        img_emb = f["clip/image_embeds"][()].astype(np.float64)
        acts = {l: f["acts/" + l][()].astype(np.float64) for l in ("3", "logits")}
        C = f["text/class_embeds"].shape[0]
    sets = {n: concept_embeds(out, n) for n in ("classes", "world", "textures")}
    # SAE codes of the layer-3 vectors in float64; rows whose k-th and (k+1)-th pre-activations are
    # within 2e-5 (float32 error of a 64-term dot product is ~1e-6) could select differently in
    # float32; their classes are left out of the SAE Act-Values check.
    pre = sae_pre(sae, acts["3"])
    k = 6
    part = -np.sort(-pre, axis=1)
    margin = part[:, k - 1] - part[:, k]
    top = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    codes = np.zeros_like(pre)
    np.put_along_axis(codes, top, np.maximum(np.take_along_axis(pre, top, axis=1), 0), axis=1)
    clear = (margin > 2e-5) | (part[:, k - 1] <= 0)  # both ReLU to 0: either selection gives 0
    print("SAE rows with a clear top-k selection: %d of %d" % (clear.sum(), len(clear)))
    # Classes with an image whose selection is ambiguous: their SAE scores are left out.
    amb = sorted(set(pred[valid & ~clear].tolist()))
    cases = [("3", "neuron", acts["3"], ()), ("logits", "neuron", acts["logits"], ()), ("3", "sae", codes, amb)]
    for layer, kind, a, amb_cls in cases:
        S = act_values_ref(a, pred, valid, C)
        with h5py.File(bl_store(out, "baselines-s0-l%s-act_values" % layer), "r") as f:
            got = f["describe/classes/%s/sim" % kind][()].astype(np.float64)
            tc = f["describe/classes/%s/top_concepts" % kind][()]
            tu = f["localize/classes/%s/top_units" % kind][()]
        fin = np.isfinite(S)
        scale = np.abs(S[fin]).max()
        fin[:, list(amb_cls)] = False
        err = np.abs(got[fin] - S[fin]).max() if fin.any() else 0
        check(np.array_equal(np.isinf(got), np.isinf(S)) and err <= 1e-5 * scale,
              "act_values %s/%s: scores equal numpy's class means (max error %.2e, scale %.2e, tol 1e-5 relative)"
              % (layer, kind, err, scale))
        tol = 1e-5 * scale
        bad, n = top_ok(S, tc, tc.shape[1], tol, skip_cols=amb_cls)
        check(bad == 0 and n > 0, "act_values %s/%s: top-4 classes per unit equal numpy's (%d units with clear margins)"
              % (layer, kind, n))
        bad, n = top_ok(S.T, tu, tu.shape[1], tol, skip_rows=amb_cls)
        check(bad == 0 and n > 0, "act_values %s/%s: top-5 units per class equal numpy's (%d classes with clear margins)"
              % (layer, kind, n))
    # CLIP-Dissect: neurons of both layers and the SAE features. An image whose k-th and (k+1)-th
    # SAE pre-activations are within float32 noise may select either feature in the stage: the
    # reference takes, of the 2^a alternative code matrices (a <= 4 such images), the one closest
    # to the stored scores (ties at 0 go by image index in both).
    unclear = np.nonzero(~clear)[0]
    variants = []
    if len(unclear) <= 4:
        for bits in range(2 ** len(unclear)):
            cv = codes.copy()
            for j, i in enumerate(unclear):
                if bits >> j & 1:
                    o = np.argsort(-pre[i], kind="stable")
                    cv[i, o[k - 1]], cv[i, o[k]] = 0.0, max(pre[i, o[k]], 0.0)
            variants.append(cv)
    else:
        print("SAE soft-WPMI check left out: %d images with an ambiguous top-k selection" % len(unclear))
    # The reference is the authors' literal sum (torch.topk's images, slot weights) on units without
    # ties; the SAE features firing on fewer than top_k images are the ones with a group at the cut.
    idx = np.nonzero(valid)[0]
    cf = norm_rows(img_emb[idx]) @ norm_rows(sets["world"]).T
    a3 = acts["3"][idx]
    z = A * cf
    P = np.exp(z - z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    w = P_START - np.arange(TOP_K) / TOP_K * (P_START - P_END)
    lit = np.stack([np.log(1 + w[:, None] * (P[np.argsort(-a3[:, u])[:TOP_K]] - 1) + MIN_PROB).sum(axis=0)
                    for u in range(a3.shape[1])])
    mx = lit.max(axis=0)
    lit = lit - LAM * (mx + np.log(np.exp(lit - mx).sum(axis=0)) - np.log(lit.shape[0]))
    check(np.abs(lit - soft_wpmi_official(cf, a3)).max() < 1e-9,
          "the numpy reference is the authors' literal soft_wpmi on units without ties (layer-3 neurons)")
    few = int(((codes[valid] > 0).sum(axis=0) < TOP_K).sum())
    print("SAE features firing on fewer than %d of %d images (a tie group at the cut): %d of %d"
          % (TOP_K, valid.sum(), few, codes.shape[1]))
    cd = [("3", "neuron", [acts["3"]]), ("logits", "neuron", [acts["logits"]])] + ([("3", "sae", variants)] if variants else [])
    for layer, kind, alts in cd:
        with h5py.File(bl_store(out, "baselines-s0-l%s-clip_dissect" % layer), "r") as f:
            for name, T in sets.items():
                got = f["describe/%s/%s/sim" % (name, kind)][()].astype(np.float64)
                refs = [soft_wpmi_ref(a, img_emb, T, valid) for a in alts]
                S = min(refs, key=lambda r: np.abs(got - r).max())
                err = np.abs(got - S)
                ok = np.all(err <= 2e-5 * np.abs(S) + 1e-4)
                check(ok, "clip_dissect %s/%s/%s: soft-WPMI equals numpy's (max error %.2e, |S| up to %.1f; tol 2e-5 rel + "
                      "1e-4)" % (layer, kind, name, err.max(), np.abs(S).max()))
                tc = f["describe/%s/%s/top_concepts" % (name, kind)][()]
                tu = f["localize/%s/%s/top_units" % (name, kind)][()]
                tol = 2e-5 * np.abs(S).max() + 1e-4
                bad, n = top_ok(S, tc, tc.shape[1], 2 * tol)
                check(bad == 0 and n > 0, "clip_dissect %s/%s/%s: top-%d concepts per unit equal numpy's (%d units with clear "
                      "margins)" % (layer, kind, name, tc.shape[1], n))
                bad, n = top_ok(S.T, tu, tu.shape[1], 2 * tol)
                check(bad == 0 and n > 0, "clip_dissect %s/%s/%s: top-%d units per concept equal numpy's (%d concepts with "
                      "clear margins)" % (layer, kind, name, tu.shape[1], n))


def test_world(tmp):
    world = make_world(os.path.join(tmp, "world"), 30)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "world.yaml")
    write_config(cfg, world, out, stages="[extract, baselines, report]", layers="[logits]", seeds="[0, 1]", sae_layer="logits",
                 train=", n_samples: 900")
    t0 = time.time()
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "extract -> baselines on 900 of 1,080 images, seeds 0 and 1 (%.1f s) %s" % (time.time() - t0, r.stderr[-300:]))
    floors = {"act_values": 0.90, "clip_dissect": 0.60}
    for m, floor in floors.items():
        for seed in (0, 1):
            s = bl_store(out, "baselines-s%d-llogits-%s" % (seed, m))
            with h5py.File(s, "r") as f:
                acc = float(f["describe/classes/neuron"].attrs["description_accuracy"])
                with h5py.File(sorted(glob.glob(os.path.join(out, "extract", "train-s%d-*.h5" % seed)))[0], "r") as e:
                    names = [n for n in e["classes/names_bytes"][()].tobytes().split(b"\0") if n]
                tc = f["describe/classes/neuron/top_concepts"][()]
                own = np.mean(tc[:, 0] == np.arange(tc.shape[0]))
            print("%s seed %d: description accuracy on logits %.1f%%" % (m, seed, 100 * acc))
            check(abs(own - acc) < 1e-12 and len(names) == 36,
                  "%s seed %d: the stored accuracy is the fraction of neurons whose top class is their own" % (m, seed))
            check(acc >= floor, "%s seed %d: description accuracy on logits %.1f%% >= %.0f%%" % (m, seed, 100 * acc, 100 * floor))
    rep = open(os.path.join(out, "report", "baselines.md")).read()
    check("| logits | act_values | classes | 2 |" in rep and "| logits | clip_dissect | classes | 2 |" in rep,
          "report/baselines.md summarises both methods over the 2 seeds")


def test_intervene(tmp):
    world = make_world(os.path.join(tmp, "world"), 8, val=2)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "iv.yaml")
    write_config(cfg, world, out, stages="[extract, sae, baselines, intervene, report]", layers='["3"]', eval_set=True,
                 extra="intervene: {layer: \"3\", tau: 5, methods: [act_values, clip_dissect], units: [neuron, sae], "
                       "modes: [scale], betas: [0.0], datasets: [eval], batch_size: 8}")
    t0 = time.time()
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "extract -> sae -> baselines -> intervene (act_values, clip_dissect) exits 0 in %.1f s (%s)"
          % (time.time() - t0, r.stderr.strip()[-400:]))
    for m in ("act_values", "clip_dissect"):
        iv = sorted(glob.glob(os.path.join(out, "intervene", "intervene-s0-l3-%s-scale-b0-*.h5" % m)))
        check(len(iv) == 1, "%s: one intervene task store" % m)
        if not iv:
            continue
        with h5py.File(iv[0], "r") as f, h5py.File(bl_store(out, "baselines-s0-l3-" + m), "r") as b:
            check(f.attrs["method"] == m and f.attrs["units_source"] == b.attrs["baselines_key"],
                  "%s: the task names its method and the baselines store's key as its unit source" % m)
            for k in ("neuron", "sae"):
                check(np.array_equal(f["eval/%s/units" % k][()], b["localize/classes/%s/top_units" % k][()][:, :5]),
                      "%s %s: class c's units are the baselines store's top 5 units of concept c" % (m, k))
        # The report finds the task's results through its index entry: the store names the method and
        # holds Delta-Acc per unit kind.
        entry = json.load(open(os.path.join(out, "intervene", "intervene-s0-l3-%s-scale-b0.json" % m)))
        with h5py.File(entry["store"], "r") as f:
            recs = sorted(k for k in ("neuron", "sae") if "delta_acc" in f["eval/%s" % k].attrs)
            named = f.attrs["method"] == m and f.attrs["intervene_key"] == entry["key"]
        check(named and recs == ["neuron", "sae"], "%s: the intervene results name the method (%s)" % (m, recs))
    rep = open(os.path.join(out, "report", "interventions.md")).read()
    check("| act_values |" in rep and "| clip_dissect |" in rep, "report/interventions.md lists both methods")


def bad_run(np_, args):
    cmd = "%s --quiet %s; echo rank-exit=$? >&2" % (fixture.MICLIP, " ".join(args))
    return subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", str(np_), "sh", "-c", cmd],
                          capture_output=True, text=True)


def one_error(r, want, what):
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    codes = [l for l in r.stderr.splitlines() if l.startswith("rank-exit=")]
    check(len(errs) == 1 and all(w in errs[0] for w in want) and len(codes) == 2 and
          all(c != "rank-exit=0" for c in codes),
          "%s: one error line naming %s, non-zero exit on both ranks (%s; %s)" % (what, want, errs, codes))


def test_bad(tmp):
    world = make_world(os.path.join(tmp, "world"), 2, val=1)
    out = os.path.join(tmp, "out")
    # netdissect's and vinterp's refusals are test_netdissect.py's `bad` part and the `vinterp` part
    cfg = os.path.join(tmp, "stages.yaml")
    write_config(cfg, world, out)
    one_error(bad_run(2, ["run", cfg, "--stage", "baselines"]), ["extract stage", "training activations"],
              "baselines before extract")
    r = run(2, ["run", cfg, "--stage", "extract"])
    check(r.returncode == 0, "extract alone exits 0")
    one_error(bad_run(2, ["baselines", cfg]), ["no trained SAE", "sae stage"], "miclip baselines before sae")
    cfg = os.path.join(tmp, "iv.yaml")
    write_config(cfg, world, out, stages="[extract, baselines, intervene]", layers='["3"]', eval_set=True,
                 extra="intervene: {layer: \"3\", tau: 5, methods: [clip_dissect], units: [neuron], datasets: [eval]}")
    r = run(2, ["run", cfg, "--stage", "extract"])
    check(r.returncode == 0, "extract (train, eval) for the intervene case exits 0")
    one_error(bad_run(2, ["run", cfg, "--stage", "intervene"]), ["baselines output", "baselines stage"],
              "intervene (clip_dissect) before baselines")


EXPLAINER = os.path.join(HERE, "vinterp_explainer.sh")
VI_SAE = 260


def majority(manifest):
    """The scripted explainer's answer, recomputed: the most frequent predicted class of the
    unit's top images, ties to the smallest in byte order."""
    n = {}
    for im in manifest["images"]:
        n[im["prediction"]] = n.get(im["prediction"], 0) + 1
    best = max(n.values())
    return sorted((c for c, k in n.items() if k == best), key=lambda c: c.encode())[0]


def tie_aware_order_ok(ref, groups, got_idx, tau, tol):
    """ref [rows, U]: numpy's scores; groups[u]: the unit's description (equal texts give equal
    embeddings up to rounding, so ties). The stored top-tau list must be a ranking by numpy's
    scores: at every position its unit's score equals that of numpy's (score descending, index
    ascending) ranking within tol, so units tied within tol may come in either order (a build
    whose text tower rounds two copies of one text differently orders them by that rounding).
    Rows where scores of different texts at the top tau+1 are within tol of each other are left
    out. Returns (bad, checked)."""
    bad = checked = 0
    for i in range(ref.shape[0]):
        r = ref[i]
        order = np.lexsort((np.arange(len(r)), -r))
        near = any(groups[order[q]] != groups[order[q + 1]] and abs(r[order[q]] - r[order[q + 1]]) <= tol
                   for q in range(min(tau, len(r) - 1)))
        if near:
            continue
        checked += 1
        got = np.asarray(got_idx[i][:tau])
        bad += not (len(set(got.tolist())) == tau and np.allclose(r[got], r[order[:tau]], rtol=0, atol=tol))
    return bad, checked


def vinterp_config(cfg, world, out, extra_bl="", stages="[extract, sae, baselines, intervene, report]"):
    write_config(cfg, world, out, stages=stages, layers='["3"]', eval_set=True, methods="[vinterp, clip_dissect]",
                 extra="intervene: {layer: \"3\", tau: 5, methods: [vinterp], units: [neuron, sae], "
                       "modes: [scale], betas: [0.0], datasets: [eval], batch_size: 8}")
    # 260 SAE features: two unit blocks (2 and 4 ranks split them), fewer explainer calls than 520
    txt = open(cfg).read().replace("baselines: {methods: [vinterp, clip_dissect]}",
                                   "baselines: {methods: [vinterp, clip_dissect], vinterp: {%s}}" % extra_bl)
    txt = txt.replace("features: 520", "features: %d" % VI_SAE)
    open(cfg, "w").write(txt)


def same_outputs_baselines(a, b):
    """same_outputs on the baselines stores, tables and report sections only."""
    ta, tb = os.path.join(a, "_cmp"), os.path.join(b, "_cmp")
    for src, dst in ((a, ta), (b, tb)):
        shutil.rmtree(dst, ignore_errors=True)
        os.makedirs(dst)
        for sub in ("baselines", "tables", os.path.join("report", "baselines")):
            if os.path.isdir(os.path.join(src, sub)):
                shutil.copytree(os.path.join(src, sub), os.path.join(dst, sub),
                                ignore=shutil.ignore_patterns("grids", "*.json", "intervene-*"))
    r = same_outputs(ta, tb)
    shutil.rmtree(ta), shutil.rmtree(tb)
    return r


def test_vinterp(tmp):
    world = make_world(os.path.join(tmp, "world"), 8, val=2)
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        vinterp_config(cfg, world, out, "explainer: \"%s\"" % EXPLAINER)
        t0 = time.time()
        if n > 1:  # the same extraction and SAE (checked bitwise by the `ranks` part); baselines on
            shutil.copytree(os.path.join(outs[1], "extract"), os.path.join(out, "extract"))
            shutil.copytree(os.path.join(outs[1], "sae"), os.path.join(out, "sae"))
        r = run(n, ["run", cfg] + (["--stage", "baselines"] if n > 1 else []))
        check(r.returncode == 0, "%s at %d rank(s) exits 0 in %.1f s (%s)" % (
            "extract -> sae -> baselines (vinterp with the scripted explainer, clip_dissect) -> intervene" if n == 1
            else "baselines", n, time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs_baselines(outs[1], outs[n])
        check(ok, "%d-rank baselines stores, tables and reports equal the 1-rank ones bitwise %s" % (n, why))
        a = sorted(glob.glob(os.path.join(outs[1], "baselines", "*vinterp*", "**", "*.*"), recursive=True))
        b = sorted(glob.glob(os.path.join(outs[n], "baselines", "*vinterp*", "**", "*.*"), recursive=True))
        same = [os.path.relpath(x, outs[1]) for x in a] == [os.path.relpath(y, outs[n]) for y in b] and all(
            open(x, "rb").read().replace(outs[1].encode(), b"OUT") == open(y, "rb").read().replace(outs[n].encode(), b"OUT")
            for x, y in zip(a, b))
        check(same and len(a) > 0, "%d ranks: the %d grid PNGs, manifests and descriptions equal the 1-rank ones" %
              (n, len(a)))
    out = outs[1]
    st = bl_store(out, "baselines-s0-l3-vinterp")
    train = sorted(glob.glob(os.path.join(out, "extract", "train-*.h5")))[0]
    with h5py.File(train, "r") as f:
        pred, valid = f["target/predictions"][()], f["images/valid"][()].astype(bool)
        a3 = f["acts/3"][()].astype(np.float64)
    with h5py.File(st, "r") as f:
        attrs = dict(f.attrs)
        descs = {k: [x for x in strings(f, "vinterp/%s/descriptions" % k)] for k in ("neuron", "sae")}
        sim = {(k, cs): f["describe/%s/%s/sim" % (cs, k)][()].astype(np.float64)
               for k in ("neuron", "sae") for cs in ("classes", "world")}
        tu = {(k, cs): f["localize/%s/%s/top_units" % (cs, k)][()] for k in ("neuron", "sae") for cs in ("classes", "world")}
        tc = {(k, cs): f["describe/%s/%s/top_concepts" % (cs, k)][()] for k in ("neuron", "sae") for cs in ("classes", "world")}
        class_texts = strings(f, "localize/classes/concepts")
    check(attrs.get("vinterp_explainer") == EXPLAINER and attrs.get("method") == "vinterp" and
          attrs.get("vinterp_images") == 9, "the store names the explainer, the method and 9 images per unit")
    vdir = attrs["vinterp_dir"]
    # Grids and manifests: one per unit; the manifest's images are the unit's top 9 training
    # images by activation (numpy, on the stored layer-3 vectors for neurons), and the description
    # is the scripted explainer's answer recomputed from the manifest.
    bad_top = bad_desc = bad_png = 0
    av = np.where(valid)[0]
    for k, U in (("neuron", a3.shape[1]), ("sae", VI_SAE)):
        check(len(descs[k]) == U, "%s: %d descriptions stored" % (k, U))
        for u in range(U):
            m = json.load(open(os.path.join(vdir, "grids", "%s-%d.json" % (k, u))))
            png = open(os.path.join(vdir, "grids", "%s-%d.png" % (k, u)), "rb").read(8)
            bad_png += png != b"\x89PNG\r\n\x1a\n" or m["grid"] != os.path.join(vdir, "grids", "%s-%d.png" % (k, u))
            bad_desc += majority(m) != descs[k][u]
            if k == "neuron":
                v = a3[av, u]
                order = av[np.lexsort((av, -v))][:9]
                got = [im["index"] for im in m["images"]]
                acts = np.array([im["activation"] for im in m["images"]])
                bad_top += not (got == order.tolist() and np.allclose(acts, a3[order, u], rtol=1e-6, atol=1e-6))
    check(bad_png == 0, "every unit has a PNG grid and a manifest naming it")
    check(bad_desc == 0, "every stored description is the explainer's first line (the majority class of the "
          "manifest's images)")
    check(bad_top == 0, "every neuron's manifest lists its top 9 training images and activations (numpy)")
    idx = json.load(open(os.path.join(vdir, "manifest.json")))
    dj = json.load(open(os.path.join(vdir, "descriptions.json")))
    check(idx["explainer"] == EXPLAINER and len(idx["units"]) == a3.shape[1] + VI_SAE and
          dj == {"%s-%d" % (k, u): descs[k][u] for k in descs for u in range(len(descs[k]))},
          "manifest.json indexes every unit and names the explainer; descriptions.json holds every description")
    # Scores and rankings from the CLIP text embeddings: the descriptions are class names, whose
    # bare text embeddings the concept cache holds (clip_dissect embeds the bare texts); the
    # concepts are embedded with align.prompt (the default "a photo of a {}.").
    bare = norm_rows(concept_embeds(out, "classes", "{}"))
    cls = {t: i for i, t in enumerate(class_texts)}
    for k in ("neuron", "sae"):
        D = norm_rows(np.stack([bare[cls[d]] for d in descs[k]]))
        for cs in ("classes", "world"):
            ref = D @ norm_rows(concept_embeds(out, cs, "a photo of a {}.")).T
            err = np.abs(ref - sim[(k, cs)]).max()
            check(err < 1e-5, "%s %s: stored cosines equal numpy's from the text embeddings (max err %.1e)" % (k, cs, err))
            b1, n1 = tie_aware_order_ok(ref.T, descs[k], tu[(k, cs)], 5, 1e-5)
            check(b1 == 0 and n1 > 0, "%s %s: top-5 units per concept equal numpy's ranking (%d of %d concepts differ)"
                  % (k, cs, b1, n1))
            b2, n2 = tie_aware_order_ok(ref, [0] * ref.shape[1], tc[(k, cs)], 4, 1e-5)
            check(b2 == 0 and n2 > 0, "%s %s: top-4 concepts per unit equal numpy's (%d of %d differ)" % (k, cs, b2, n2))
    # intervene edits V-Interp's units; the report names the explainer.
    iv = sorted(glob.glob(os.path.join(out, "intervene", "intervene-s0-l3-vinterp-scale-b0-*.h5")))
    check(len(iv) == 1, "intervene ran with method vinterp")
    if iv:
        with h5py.File(iv[0], "r") as f:
            for k in ("neuron", "sae"):
                check(np.array_equal(f["eval/%s/units" % k][()], tu[(k, "classes")][:, :5]),
                      "intervene %s: class c's units are V-Interp's top 5 units of concept c" % k)
    rep = open(os.path.join(out, "report", "baselines.md")).read()
    check(EXPLAINER in rep, "report/baselines.md names the explainer")
    irep = open(os.path.join(out, "report", "interventions.md")).read()
    check("| vinterp |" in irep and EXPLAINER in irep, "report/interventions.md lists vinterp and names the explainer")
    # The same descriptions from a JSON file: the same rankings (a new store: the key names the file).
    djf = os.path.join(tmp, "descs.json")
    json.dump(dj, open(djf, "w"))
    out2 = os.path.join(tmp, "file")
    cfg = os.path.join(tmp, "file.yaml")
    vinterp_config(cfg, world, out2, "descriptions: %s" % djf)
    shutil.copytree(os.path.join(out, "extract"), os.path.join(out2, "extract"))
    shutil.copytree(os.path.join(out, "sae"), os.path.join(out2, "sae"))
    r = run(2, ["run", cfg, "--stage", "baselines"])
    check(r.returncode == 0, "baselines with baselines.vinterp.descriptions exits 0 (%s)" % r.stderr.strip()[-300:])
    s2 = bl_store(out2, "baselines-s0-l3-vinterp")
    if s2:
        with h5py.File(s2, "r") as f, h5py.File(st, "r") as g:
            same = all(np.array_equal(f[n][()], g[n][()]) for n in h5_datasets(g))
            check(same and f.attrs["vinterp_descriptions"] == djf,
                  "the descriptions file gives the same store datasets and the store names the file")
        check(djf in open(os.path.join(out2, "report", "baselines", "baselines-s0-l3-vinterp.md")).read(),
              "the report section names the descriptions file")
    # Failing explainers: one error line naming the unit and the command, non-zero exit on both ranks.
    for cmd, why in (("false", "exited with status 1"), ("true", "printed no description"),
                     ("sleep 20; echo x", "took more than")):
        out3 = os.path.join(tmp, "fail")
        shutil.rmtree(out3, ignore_errors=True)
        shutil.copytree(os.path.join(out, "extract"), os.path.join(out3, "extract"))
        shutil.copytree(os.path.join(out, "sae"), os.path.join(out3, "sae"))
        cfg = os.path.join(tmp, "fail.yaml")
        vinterp_config(cfg, world, out3, "explainer: \"%s\", timeout: 1" % cmd)
        t0 = time.time()
        one_error(bad_run(2, ["run", cfg, "--stage", "baselines"]), ["V-Interp neuron-0", cmd, why],
                  "explainer '%s'" % cmd)
        check(time.time() - t0 < 15, "explainer '%s': the run ends promptly (%.1f s)" % (cmd, time.time() - t0))
    bad = os.path.join(tmp, "bad.json")
    json.dump({"neuron-0": "x"}, open(bad, "w"))
    for extra, want in (("descriptions: %s" % bad, [bad, "neuron-1", "baselines.vinterp.descriptions"]),
                        ("descriptions: /nonexistent.json", ["/nonexistent.json", "baselines.vinterp.descriptions"]),
                        ("", ["baselines.vinterp.explainer", "missing"]),
                        ("descriptions: %s, explainer: \"true\"" % bad, ["baselines.vinterp", "not both"])):
        cfg = os.path.join(tmp, "fail.yaml")
        vinterp_config(cfg, world, out3, extra)
        one_error(bad_run(2, ["run", cfg, "--stage", "baselines"]), want, "vinterp with {%s}" % extra)


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("baselines_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if not (os.path.exists(os.path.join(VIT, "model.safetensors")) and os.path.exists(os.path.join(CLIP, "model.safetensors"))):
        check(False, "the trained tiny models exist under experiments/world")
        return fixture.summary()
    {"ranks": test_ranks, "ref": test_ref, "world": test_world, "intervene": test_intervene, "bad": test_bad,
     "vinterp": test_vinterp}[what](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
