#!/usr/bin/python3
"""The intervene stage end to end, on a generated tiny world with the trained tiny ViT and CLIP
(experiments/world/{vit,clip}): extract -> sae -> align -> localize -> intervene.

  test_intervene.py ranks   methods miclip and random, neuron and SAE units, scale and add,
                            betas 0, 1 and 2, eval and unseen (skipped: the ViT has no texture
                            classes), batches of 3, at 1, 2 and 4 ranks: every store dataset, CSV
                            table and the report bitwise equal; scale x1 and add +0 reproduce the
                            clean predictions, probabilities and logits bit for bit (Delta-Acc 0)
                            then intervene.variants [in+out, in]: one new task named by the
                            variant, editing the `in` localize store's units, the first variant's
                            stores untouched, and a rerun that finds both tasks complete in the
                            stage's complete hook; then intervene.cache_dtype f16: the state is
                            numpy's float16 rounding of the f32 state, scale x1 reproduces the f16
                            clean run exactly, 1 and 4 ranks bitwise equal
  test_intervene.py ref     the stored edited logits of the first image of every class against
                            an independent numpy (float64) forward of block 4 + final LayerNorm +
                            classifier from the stored prefix state, with the edit (neuron and
                            SAE, scale and add, tokens: patches) done in numpy: within 1e-5
                            relative; the prefix state and clean logits against the same
  test_intervene.py causal  removal (scale, beta 0) at layer 3 of the top-5 units of class c found
                            by miclip against 5 random units, seeds 0-2: neurons on the CLS token
                            lower the class's probability more (Delta-P, measured -2.6 vs -1.8 pp;
                            their Delta-Acc is printed, not asserted: docs/intervene.md); SAE
                            features on every token drop the class's accuracy more (Delta-Acc,
                            measured -3.9 vs -0.5 pp)
  test_intervene.py resume  SIGKILL of mpirun and every rank during the stage (prefix or tasks),
                            rerun at another rank count: outputs equal an uninterrupted run's
  test_intervene.py oracle  methods oracle and random, neuron and SAE units, removal (scale 0),
                            batches of 7 (pairs straddle units), at 1, 2 and 4 ranks: every output
                            bitwise equal; the oracle's ablation scores of two classes against a
                            numpy forward of the suffix with each single unit removed (within 1e-5);
                            its units the top 5 of its scores; its Delta-Acc and Delta-P for removal
                            at most random's (neurons and SAE features); the localization
                            precision of both methods' units (per class, neuron and SAE) against a
                            numpy recomputation, and its table in the report
  test_intervene.py codes   the SAE code store (docs/intervene.md, "Code store"): methods random
                            and oracle, SAE units, scale x0/x2 and add, tokens patches, batches of
                            3, at 1, 2 and 4 ranks: one codes-eval-*.h5 store written once for
                            every task, every output bitwise equal; its codes against numpy's
                            top-k encoding (float64) of the prefix state; a second config that
                            shares the prefix and the SAE reuses the store untouched; a SIGKILL
                            while the store is written (a store call of its own), rerun at 4 ranks:
                            it resumes and every output equals the uninterrupted run's
  test_intervene.py bad     intervene.layer not in extract.layers, a missing localize output, SAE
                            units off sae.layer, a baseline method: one error line, exit 1 on
                            every rank
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import json
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from ref_clip_resnet_suffix import ClipVisionSuffix, ResNetSuffix  # noqa: E402
from ref_vit_suffix import ViTSuffix  # noqa: E402
from test_method import h5_datasets, same_outputs  # noqa: E402

SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
VIT = os.path.join(SRC, "experiments", "world", "vit")
CLIP = os.path.join(SRC, "experiments", "world", "clip")
RESNET = os.path.join(SRC, "experiments", "world", "resnet")


def make_world(root, per_class, val, unseen=2):
    if not os.path.exists(os.path.join(root, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", root, "--seed", "1", "--per-class",
                        str(per_class), "--val-per-class", str(val), "--unseen-per-class", str(unseen)], check=True)
    return root


def write_config(path, world, out, seeds="[0]", intervene="", stages="[extract, sae, align, localize, intervene, report]",
                 layers='["3"]', sae_layer="3", sae="features: 96, k: 6, batch_size: 64, epochs: 2", target=VIT,
                 layer="3", extra="", align=""):
    with open(path, "w") as f:
        f.write(f"""name: iv
output_dir: {out}
seeds: {seeds}{extra}
models: {{target: {target}, clip: {CLIP}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
  unseen: {{kind: world, root: {world}, split: unseen}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: textures, file: {world}/textures.txt}}
extract: {{layers: {layers}, batch_size: 64}}
sae: {{layer: "{sae_layer}", {sae}}}
align: {{batch_size: 256, stop: epochs, epochs: 3, lr: 0.15, variants: [in+out]{align}}}
localize: {{tau: 5}}
intervene: {{layer: "{layer}", tau: 5{intervene}}}
report: {{figures: []}}
stages: {stages}
""")


def run(np_, args, **kw):
    return fixture.mpirun(np_, ["--quiet"] + args, capture_output=True, text=True, **kw)


def one(out, pat):
    f = sorted(glob.glob(os.path.join(out, "intervene", pat + ".h5")))
    return f[0] if len(f) == 1 else None


FULL = (", methods: [miclip, random], units: [neuron, sae], modes: [scale, add], betas: [0.0, 1.0, 2.0], "
        "datasets: [eval, unseen], batch_size: 3")


def test_ranks(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        write_config(cfg, world, out, intervene=FULL)
        t0 = time.time()
        r = fixture.mpirun(n, ["run", cfg], capture_output=True, text=True) if n == 1 else run(n, ["run", cfg])
        check(r.returncode == 0, "the chain with intervene at %d rank(s) exits 0 in %.1f s (%s)" % (
            n, time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
        if n == 1:
            check("unseen skipped" in r.stderr, "the unseen textures are no ViT classes: skipped with a message")
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%d-rank outputs (prefix cache, task stores, CSV, report) equal the 1-rank outputs bitwise %s" % (n, why))
    out = outs[1]
    tasks = sorted(glob.glob(os.path.join(out, "intervene", "intervene-*.h5")))
    check(len(tasks) == 12, "12 task stores (2 methods x 2 modes x 3 betas): %d" % len(tasks))
    pre = one(out, "prefix-eval-*")
    check(pre is not None and one(out, "prefix-unseen-*") is None, "one prefix cache (eval), none for unseen")
    with h5py.File(pre, "r") as f:
        clean_pred, clean_prob = f["clean_pred"][()], f["clean_prob"][()]
        clean_logits, first, labels = f["clean_logits"][()], f["class_first_row"][()], f["labels"][()]
        check(f["state"].shape == (labels.shape[0], 65, 64) and labels.shape[0] == 36 * 4,
              "prefix state [144 images, 65 tokens, 64] %s" % (f["state"].shape,))
        check(np.all(np.diff(labels) >= 0) and np.all(labels[first[:-1]] == np.arange(36)), "rows sorted by class")
        acc = f["clean_class_acc"][()]
        check(np.allclose(acc, [(clean_pred[first[c]:first[c + 1]] == c).mean() for c in range(36)]),
              "clean per-class accuracy stored")
    for name in ("scale-b1", "add-b0"):
        for meth in ("miclip", "random"):
            st = one(out, "intervene-s0-l3-%s-%s-*" % (meth, name))
            if not st:
                check(False, "store of %s %s" % (meth, name))
                continue
            with h5py.File(st, "r") as f:
                for kind in ("neuron", "sae"):
                    g = f["eval/" + kind]
                    same = (np.array_equal(g["edit_pred"][()], clean_pred) and np.array_equal(g["cross_pred"][()], clean_pred)
                            and np.array_equal(g["edit_prob"][()], clean_prob)
                            and np.array_equal(g["first_logits"][()], clean_logits[first[:-1]]))
                    check(same and g.attrs["delta_acc"] == 0 and g.attrs["delta_prob"] == 0 and g.attrs["specificity"] == 0,
                          "%s %s %s: every edited prediction, probability and logit equals the clean one (Delta-Acc %g)"
                          % (meth, name, kind, g.attrs["delta_acc"]))
    with h5py.File(one(out, "intervene-s0-l3-random-scale-b2-*"), "r") as f:
        u = f["eval/sae/units"][()]
        check(u.shape == (36, 5) and all(len(set(r)) == 5 for r in u) and u.max() < 96, "random: 5 distinct SAE features per class")
        check(f["eval/neuron/acc_edit"].shape == (36,) and "unseen" not in f, "per-class metrics; no unseen group")
    with h5py.File(one(out, "intervene-s0-l3-miclip-scale-b2-*"), "r") as f, \
            h5py.File(glob.glob(os.path.join(out, "localize", "*.h5"))[0], "r") as l:
        check(np.array_equal(f["eval/neuron/units"][()], l["classes/neuron/top_units"][()][:, :5]),
              "miclip units are the localize stage's top-5 units of each class's concept")
    csv = os.path.join(out, "tables", "intervene-s0-l3-miclip-scale-b0-eval-sae.csv")
    check(os.path.exists(csv) and len(open(csv).read().splitlines()) == 37, "CSV: a header and one line per class")
    rep = os.path.join(out, "report", "interventions.md")
    txt = open(rep).read() if os.path.exists(rep) else ""
    check(txt.count("| miclip | scale | 0 | neuron | eval | 1 |") == 1 and "Delta-Acc" in txt, "report summary rows")
    # A rerun of the complete stage changes nothing.
    before = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(out, "intervene", "*"))}
    r = run(2, ["intervene", os.path.join(tmp, "ranks1.yaml")])
    after = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(out, "intervene", "*"))}
    check(r.returncode == 0 and before == after, "rerun of the complete stage exits 0 and touches no store")
    # A second E_n variant (intervene.variants): align and localize train `in`, intervene adds its
    # task, named by the variant, with the units of that variant's localize store; every store of
    # the first variant stays untouched (same ids, same keys).
    cfg2 = os.path.join(tmp, "variants.yaml")
    write_config(cfg2, world, out, intervene=", methods: [miclip], units: [neuron, sae], modes: [scale], "
                 "betas: [2.0], datasets: [eval, unseen], batch_size: 3, variants: [in+out, in]")
    with open(cfg2) as f:
        text = f.read().replace("variants: [in+out]}", "variants: [in+out, in]}")
    with open(cfg2, "w") as f:
        f.write(text)
    r = run(2, ["run", cfg2])
    after2 = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(out, "intervene", "*"))}
    new = sorted(os.path.basename(p) for p in set(after2) - set(before))
    check(r.returncode == 0 and all(after2[p] == before[p] for p in before) and len(new) == 2 and
          new[0].startswith("intervene-s0-l3-in-miclip-scale-b2-") and new[1] == "intervene-s0-l3-in-miclip-scale-b2.json",
          "intervene.variants [in+out, in]: one new task (%s), the first variant's stores untouched%s" %
          (new, "" if r.returncode == 0 else ": " + r.stderr.strip()[-300:]))
    loc = glob.glob(os.path.join(out, "localize", "localize-s0-l3-in-*.h5"))
    st = one(out, "intervene-s0-l3-in-miclip-scale-b2-*")
    if len(loc) == 1 and st:
        with h5py.File(st, "r") as f, h5py.File(loc[0], "r") as l:
            ok = all(np.array_equal(f["eval/%s/units" % k][()], l["classes/%s/top_units" % k][()][:, :5])
                     for k in ("neuron", "sae"))
            check(ok and f.attrs["variant"] == "in" and f.attrs["method"] == "miclip",
                  "the `in` task edits the top-5 units of the `in` localize store (neurons, SAE) and records its variant")
    else:
        check(False, "the `in` localize store (%s) and intervene store (%s)" % (loc, st))
    # A rerun finds every task complete in the stage's `complete` hook, the `in` variant's too (its
    # source key is the `in` localize store's, not the first variant's): no task is run.
    env = dict(os.environ, MICLIP_LOG_TASKS="1")
    r = fixture.mpirun(2, ["intervene", cfg2], capture_output=True, text=True, env=env)
    ran = [l for l in r.stderr.splitlines() if "stage intervene: task " in l]
    check(r.returncode == 0 and not ran and r.stderr.count("complete, skipping") == 2,
          "a rerun with intervene.variants finds both tasks complete before running any (%s)" %
          (ran or r.stderr.strip()[-300:]))
    # intervene.cache_dtype: f16 (docs/intervene.md, "Float16 cache"): the state stored as IEEE half,
    # numpy's rounding of the float32 state; the clean run starts from the rounded state, so scale
    # x1 reproduces it exactly; 1 and 4 ranks bitwise equal. On copies of the 1-rank chain.
    f16 = {}
    for n in (1, 4):
        o = os.path.join(tmp, "f16-%d" % n)
        shutil.copytree(out, o)
        cfg = os.path.join(tmp, "f16-%d.yaml" % n)
        write_config(cfg, world, o, intervene=", methods: [random], units: [neuron, sae], modes: [scale], "
                     "betas: [0.0, 1.0], datasets: [eval], batch_size: 3, cache_dtype: f16")
        r = run(n, ["intervene", cfg])
        check(r.returncode == 0, "cache_dtype f16 at %d rank(s) exits 0 (%s)" % (n, r.stderr.strip()[-300:]))
        f16[n] = o
    ok, why = same_outputs(f16[1], f16[4])
    check(ok, "cache_dtype f16: 4-rank outputs equal the 1-rank outputs bitwise %s" % why)
    pres = sorted(glob.glob(os.path.join(f16[1], "intervene", "prefix-eval-*.h5")))
    half = [q for q in pres if h5py.File(q, "r")["state"].dtype == np.float16]
    check(len(pres) == 2 and len(half) == 1, "an f16 prefix cache beside the f32 one (%s)" % pres)
    if len(half) == 1:
        with h5py.File(pre, "r") as f, h5py.File(half[0], "r") as h:
            check(np.array_equal(h["state"][()], f["state"][()].astype(np.float16)),
                  "the f16 state is numpy's float16 rounding of the f32 state, bitwise")
            h_pred, h_prob, h_logits = h["clean_pred"][()], h["clean_prob"][()], h["clean_logits"][()]
        same = []
        for st in glob.glob(os.path.join(f16[1], "intervene", "intervene-s0-l3-random-scale-b1-*.h5")):
            with h5py.File(st, "r") as f:
                g = f["eval/neuron"], f["eval/sae"]
                if g[0].attrs["prefix_store"] != half[0]:
                    continue
                same = [np.array_equal(x["edit_pred"][()], h_pred) and np.array_equal(x["edit_prob"][()], h_prob)
                        and np.array_equal(x["first_logits"][()], h_logits[first[:-1]]) for x in g]
        check(same == [True, True], "f16 scale x1 (neurons, SAE) reproduces the f16 clean run exactly %s" % same)


def sae_encode(x, W_enc, b_enc, b_pre, k):
    pre = (x - b_pre) @ W_enc.T + b_enc
    idx = np.argsort(-pre, axis=-1, kind="stable")[..., :k]
    val = np.maximum(np.take_along_axis(pre, idx, -1), 0)
    return idx, val


def test_ref(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "ref.yaml")
    write_config(cfg, world, out, intervene=", methods: [miclip, random], units: [neuron, sae], modes: [scale, add], "
                 "betas: [0.0, 2.0], datasets: [eval], batch_size: 5, tokens: patches")
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "chain for the reference (%s)" % r.stderr[-300:])
    m = ViTSuffix(VIT)
    pre = one(out, "prefix-eval-*")
    with h5py.File(pre, "r") as f:
        state, first = f["state"][()].astype(np.float64), f["class_first_row"][()]
        clean = f["clean_logits"][()]
    ref = m.logits(state[:12], 3)
    err = np.abs(ref - clean[:12]).max() / np.abs(ref).max()
    check(err < 1e-5, "clean logits from the stored prefix state equal numpy's (rel %.2e)" % err)
    # The stored state is the model's own hidden state after block 3: numpy from the pixels would
    # need the preprocessing; the prefix's consistency is checked through the clean logits above.
    with h5py.File(glob.glob(os.path.join(out, "sae", "*.h5"))[0], "r") as f:
        W_enc, b_enc = f["W_enc"][()].astype(np.float64), f["b_enc"][()].astype(np.float64)
        W_dec_T, b_pre = f["W_dec_T"][()].astype(np.float64), f["b_pre"][()].astype(np.float64)
        k = int(f.attrs.get("k", 6))
    worst, n = 0.0, 0
    for st in sorted(glob.glob(os.path.join(out, "intervene", "intervene-*.h5"))):
        with h5py.File(st, "r") as f:
            mode, beta = f.attrs["mode"], float(f.attrs["beta"])
            for kind in ("neuron", "sae"):
                units, got = f["eval/%s/units" % kind][()], f["eval/%s/first_logits" % kind][()]
                for c in range(0, 36, 3):
                    x = state[first[c]:first[c] + 1].copy()
                    u = units[c]
                    p = x[:, 1:]  # tokens: patches
                    if kind == "neuron":
                        if mode == "scale":
                            p[..., u] *= beta
                        else:
                            p[..., u] += beta
                    else:
                        if mode == "scale":
                            idx, val = sae_encode(p, W_enc, b_enc, b_pre, k)
                            coef = np.where(np.isin(idx, u), (beta - 1) * val, 0)
                            p += np.einsum("btk,btkd->btd", coef, W_dec_T[idx])
                        else:
                            p += beta * W_dec_T[u].sum(0)
                    want = m.logits(x, 3)[0]
                    e = np.abs(want - got[c]).max() / np.abs(want).max()
                    worst, n = max(worst, e), n + 1
    print("edited logits: %d comparisons, worst relative error %.2e" % (n, worst))
    check(n == 8 * 2 * 12 and worst < 1e-5, "edited logits (neuron/SAE x scale/add x beta 0/2, patches) equal numpy's "
          "within 1e-5 relative: %d cases, worst %.2e" % (n, worst))


def edit_rows(x, kind, mode, beta, u, sae):
    """x [B, T, D] (float64, edited in place on every token): a neuron or SAE-feature edit in numpy."""
    if kind == "neuron":
        if mode == "scale":
            x[..., u] *= beta
        else:
            x[..., u] += beta
    elif mode == "scale":
        W_enc, b_enc, W_dec_T, b_pre, k = sae
        idx, val = sae_encode(x, W_enc, b_enc, b_pre, k)
        coef = np.where(np.isin(idx, u), (beta - 1) * val, 0)
        x += np.einsum("btk,btkd->btd", coef, W_dec_T[idx])
    else:
        x += beta * sae[2][u].sum(0)
    return x


def packed_strings(f, stem):
    """A store's packed string list: STEM_bytes (NUL-terminated) cut at STEM_offsets."""
    b, o = bytes(f[stem + "_bytes"][()]), f[stem + "_offsets"][()]
    return [b[o[i]:o[i + 1]].rstrip(b"\0").decode() for i in range(len(o) - 1)]


def read_sae(out):
    with h5py.File(glob.glob(os.path.join(out, "sae", "*.h5"))[0], "r") as f:
        return (f["W_enc"][()].astype(np.float64), f["b_enc"][()].astype(np.float64),
                f["W_dec_T"][()].astype(np.float64), f["b_pre"][()].astype(np.float64), int(f.attrs["k"]))


def ranks_identical(tmp, name, world, n_tasks, **cfg_kw):
    """The chain at 1, 2 and 4 ranks: every output bitwise equal; returns the 1-rank output folder."""
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "%s%d" % (name, n))
        cfg = os.path.join(tmp, "%s%d.yaml" % (name, n))
        write_config(cfg, world, out, **cfg_kw)
        t0 = time.time()
        r = run(n, ["run", cfg])
        check(r.returncode == 0, "%s: the chain at %d rank(s) exits 0 in %.1f s (%s)" % (
            name, n, time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%s: %d-rank outputs (prefix, task stores, CSV, report) equal the 1-rank ones bitwise %s" % (name, n, why))
    tasks = sorted(glob.glob(os.path.join(outs[1], "intervene", "intervene-*.h5")))
    check(len(tasks) == n_tasks, "%s: %d task stores: %d" % (name, n_tasks, len(tasks)))
    return outs[1], tasks


def check_delta(name, g, labels, first, clean_pred, clean_prob, pred, prob):
    """The stored per-class accuracies and Delta-Acc / Delta-P against the reference predictions."""
    C = first.shape[0] - 1
    acc_c = np.array([(clean_pred[first[c]:first[c + 1]] == c).mean() for c in range(C)])
    acc_e = np.array([(pred[first[c]:first[c + 1]] == c).mean() for c in range(C)])
    p_c = np.array([clean_prob[first[c]:first[c + 1]].mean() for c in range(C)])
    p_e = np.array([prob[first[c]:first[c + 1]].mean() for c in range(C)])
    d_acc, d_prob = 100 * (acc_e - acc_c).mean(), 100 * (p_e - p_c).mean()
    ok = (np.array_equal(g["edit_pred"][()], pred) and np.allclose(g["acc_edit"][()], acc_e, rtol=0, atol=1e-12)
          and np.allclose(g["acc_clean"][()], acc_c, rtol=0, atol=1e-12)
          and abs(g.attrs["delta_acc"] - d_acc) < 1e-9)
    check(ok, "%s: edited predictions, per-class accuracies and Delta-Acc equal the reference's (%.4f vs %.4f pp)"
          % (name, g.attrs["delta_acc"], d_acc))
    e = np.abs(g["edit_prob"][()] - prob).max()
    check(e < 1e-5 and abs(g.attrs["delta_prob"] - d_prob) < 1e-3,
          "%s: edited probabilities within 1e-5 (worst %.2e), Delta-P %.5f vs %.5f pp" % (name, e, g.attrs["delta_prob"], d_prob))
    return d_acc


def test_clip(tmp):
    """A CLIP target: zero-shot on the unseen textures (never seen in alignment), E_n on train."""
    world = make_world(os.path.join(tmp, "world"), 20, 2, unseen=6)
    ref = json.load(open(os.path.join(SRC, "experiments", "world", "reference", "clip.json")))
    # PyTorch's texture prompts are "a photo of a T texture.": the same prompt for the config.
    tex = [p_[len("a photo of a "):-len(" texture.")] for p_ in ref["texture_prompts"]]
    prompt = "a photo of a {} texture."
    check(all(p_ == prompt.format(x) for p_, x in zip(ref["texture_prompts"], tex)), "reference prompts %s" % tex)
    out, tasks = ranks_identical(
        tmp, "clip", world, 8, target=CLIP, align=', prompt: "%s"' % prompt,
        intervene=", methods: [miclip, random], units: [neuron, sae], modes: [scale, add], betas: [0.0, 2.0], "
        "add_beta: mu, add_betas: [-1.0, 1.0], datasets: [unseen], batch_size: 5, tokens: all")
    m = ClipVisionSuffix(CLIP)
    pre = one(out, "prefix-unseen-*")
    check(pre is not None and one(out, "prefix-eval-*") is None, "a prefix cache of the unseen set only")
    with h5py.File(pre, "r") as f:
        state, first, labels = f["state"][()].astype(np.float64), f["class_first_row"][()], f["labels"][()]
        clean_emb, clean_pred, clean_prob = f["clean_logits"][()], f["clean_pred"][()], f["clean_prob"][()]
    check(state.shape == (36, 65, 64) and np.array_equal(first, np.arange(0, 37, 6)),
          "unseen prefix: 6 textures x 6 images, [65 tokens, 64] %s" % (state.shape,))
    # The class text embeddings: PyTorch's (experiments/world/reference/clip.json, the same prompt),
    # matched by name, never miclip's own text tower.
    xs = [p for p in glob.glob(os.path.join(out, "extract", "*.h5"))
          if h5py.File(p, "r")["text/class_embeds"].shape[0] == 6]
    with h5py.File(xs[0], "r") as f:
        names = packed_strings(f, "classes/names")
        stored = f["text/class_embeds"][()]
    text = np.array([ref["texture_text_embeds"][tex.index(n)] for n in names], np.float64)
    e = np.abs(stored - text).max() / np.abs(text).max()
    check(e < 1e-5, "the unseen classes' prompted text embeddings equal PyTorch's (rel %.2e): %s" % (e, names))
    emb = m.image_embeds(state, 3)
    pred, prob, cos = m.zero_shot(emb, text)
    e = np.abs(emb - clean_emb).max() / np.abs(emb).max()
    check(e < 1e-5 and np.array_equal(pred, clean_pred), "clean image embeddings (rel %.2e) and zero-shot predictions "
          "from the prefix state equal numpy's (clean accuracy %.3f)" % (e, (pred == labels).mean()))
    pc = prob[np.arange(len(labels)), labels]
    check(np.abs(pc - clean_prob).max() < 1e-5, "clean probabilities: softmax(exp(logit_scale) = %.2f x cos)" % m.scale)
    sae = read_sae(out)
    with h5py.File(glob.glob(os.path.join(out, "localize", "*.h5"))[0], "r") as l:
        top = l["textures/neuron/top_units"][()][:, :5], l["textures/sae/top_units"][()][:, :5]
        lnames = packed_strings(l, "textures/concepts")
    worst, n_cases, moved = 0.0, 0, 0
    for st in tasks:
        with h5py.File(st, "r") as f:
            mode, beta, meth = f.attrs["mode"], float(f.attrs["beta"]), f.attrs["method"]
            for ki, kind in enumerate(("neuron", "sae")):
                g = f["unseen/" + kind]
                units = g["units"][()]
                if meth == "miclip":
                    want = np.array([top[ki][lnames.index(c)] for c in names])
                    check(np.array_equal(units, want), "miclip %s: the units of each texture are the localize "
                          "store's top-5 of its concept in the `textures` set" % kind)
                mult = beta
                if mode == "add":
                    mult = beta * g["units_mu"][()]  # add_beta: mu
                epred, eprob = np.zeros_like(labels), np.zeros(len(labels))
                for c in range(6):
                    x = state[first[c]:first[c + 1]].copy()
                    if mode == "add":
                        for j, u in enumerate(units[c]):  # beta x mu_i per unit
                            edit_rows(x, kind, "add", mult[c, j], np.array([u]), sae)
                    else:
                        edit_rows(x, kind, mode, beta, units[c], sae)
                    em = m.image_embeds(x, 3)
                    p, pr, _ = m.zero_shot(em, text)
                    epred[first[c]:first[c + 1]] = p
                    eprob[first[c]:first[c + 1]] = pr[:, c]
                    got = g["first_logits"][()][c]
                    worst = max(worst, np.abs(em[0] - got).max() / np.abs(em[0]).max())
                    n_cases += 1
                d = check_delta("%s %s %g %s" % (meth, mode, beta, kind), g, labels, first, clean_pred,
                                clean_prob, epred, eprob)
                moved += d != 0
    check(n_cases == 8 * 2 * 6 and worst < 1e-5, "edited image embeddings of each texture's first image equal "
          "numpy's: %d cases, worst relative error %.2e" % (n_cases, worst))
    check(moved > 0, "some edit changes the zero-shot accuracy (%d of 16 task x kind)" % moved)
    t3 = os.path.join(out, "report", "tables", "table3_unseen.csv")
    txt = open(t3).read() if os.path.exists(t3) else ""
    check("Removal (scale x0)" in txt and "Enhancement (scale x2)" in txt and "(b) Intervention on SAE features" in txt,
          "the report writes Table 3 (unseen) with the paper's columns")


def test_resnet(tmp):
    """A ResNet target: edits on every position of a stage's map, against a PyTorch suffix."""
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    out, tasks = ranks_identical(
        tmp, "resnet", world, 4, target=RESNET, layers='["stages.2"]', sae_layer="stages.2", layer="stages.2",
        sae="input: pooled, features: 96, k: 6, batch_size: 64, epochs: 2",
        intervene=", methods: [miclip, random], units: [neuron, sae], modes: [scale], betas: [0.0, 2.0], "
        "datasets: [eval], batch_size: 5")
    m = ResNetSuffix(RESNET)
    pre = one(out, "prefix-eval-*")
    with h5py.File(pre, "r") as f:
        state, first, labels = f["state"][()].astype(np.float64), f["class_first_row"][()], f["labels"][()]
        clean_logits, clean_pred, clean_prob = f["clean_logits"][()], f["clean_pred"][()], f["clean_prob"][()]
    check(state.shape == (144, 128, 4, 4), "prefix state: the [128, 4, 4] map of stages.2 (64x64 input) %s" % (state.shape,))
    id2label = json.load(open(os.path.join(RESNET, "config.json")))["id2label"]
    classes = [l.strip() for l in open(os.path.join(world, "classes.txt")) if l.strip()]
    to_ds = np.array([classes.index(id2label[str(i)]) for i in range(len(id2label))])

    def predict(lg, c_rows):
        z = np.exp(lg - lg.max(-1, keepdims=True))
        z /= z.sum(-1, keepdims=True)
        return to_ds[lg.argmax(-1)], np.array([z[i, to_ds == c].sum() for i, c in enumerate(c_rows)])

    lg = m.logits(state, 2)
    e = np.abs(lg - clean_logits).max() / np.abs(lg).max()
    p, pr = predict(lg, labels)
    check(e < 1e-5 and np.array_equal(p, clean_pred) and np.abs(pr - clean_prob).max() < 1e-5,
          "clean logits (rel %.2e), predictions and probabilities from the prefix map equal PyTorch's" % e)
    sae = read_sae(out)
    worst, n_cases = 0.0, 0
    for st in tasks:
        with h5py.File(st, "r") as f:
            mode, beta, meth = f.attrs["mode"], float(f.attrs["beta"]), f.attrs["method"]
            for kind in ("neuron", "sae"):
                g = f["eval/" + kind]
                units = g["units"][()]
                epred, eprob = np.zeros_like(labels), np.zeros(len(labels))
                for c in range(36):
                    x = state[first[c]:first[c + 1]]
                    B, Cc, H, W = x.shape
                    tok = x.reshape(B, Cc, H * W).transpose(0, 2, 1).copy()  # every position a token
                    edit_rows(tok, kind, mode, beta, units[c], sae)
                    xe = tok.transpose(0, 2, 1).reshape(B, Cc, H, W)
                    lg = m.logits(xe, 2)
                    p, pr = predict(lg, labels[first[c]:first[c + 1]])
                    epred[first[c]:first[c + 1]], eprob[first[c]:first[c + 1]] = p, pr
                    if c % 3 == 0:
                        got = g["first_logits"][()][c]
                        worst = max(worst, np.abs(lg[0] - got).max() / np.abs(lg[0]).max())
                        n_cases += 1
                check_delta("%s %s %g %s" % (meth, mode, beta, kind), g, labels, first, clean_pred, clean_prob,
                            epred, eprob)
    check(n_cases == 4 * 2 * 12 and worst < 1e-5, "edited logits of every third class's first image equal PyTorch's: "
          "%d cases, worst relative error %.2e" % (n_cases, worst))


def causal_means(out, kind, what):
    """Mean over seeds 0-2 of the stores' attribute `what` for miclip and random (scale, beta 0)."""
    res = {}
    for meth in ("miclip", "random"):
        vals = []
        for seed in (0, 1, 2):
            st = one(out, "intervene-s%d-l3-%s-scale-b0-*" % (seed, meth))
            if not st:
                check(False, "store of seed %d %s" % (seed, meth))
                continue
            with h5py.File(st, "r") as f:
                g = f["eval/" + kind]
                vals.append(float(g.attrs[what]))
                if what == "delta_prob":
                    pc, pe = g["prob_clean"][()], g["prob_edit"][()]
                    check(abs(100 * np.mean(pe - pc) - vals[-1]) < 1e-9, "Delta-P is the mean of the per-class changes")
                else:
                    ac, ae = g["acc_clean"][()], g["acc_edit"][()]
                    check(abs(100 * np.mean(ae - ac) - vals[-1]) < 1e-9, "Delta-Acc is the mean of the per-class changes")
        res[meth] = float(np.mean(vals)) if vals else 0.0
        print("removal (scale 0) of %s's top-5 %s units: %s per seed %s, mean %.2f pp"
              % (meth, kind, what, ["%.2f" % v for v in vals], res[meth]))
    return res


SAE_WORLD = "features: 256, k: 8, batch_size: 64, epochs: 20, dead_after: 20000"


def test_causal(tmp):
    world = make_world(os.path.join(tmp, "world"), 40, 10)
    out = os.path.join(tmp, "cls")
    cfg = os.path.join(tmp, "causal_cls.yaml")
    write_config(cfg, world, out, seeds="[0, 1, 2]", sae=SAE_WORLD,
                 intervene=", methods: [miclip, random], units: [neuron], modes: [scale], betas: [0.0], "
                 "datasets: [eval], batch_size: 32, tokens: cls")
    t0 = time.time()
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "causal chain, seeds 0-2 (%.1f s) %s" % (time.time() - t0, r.stderr[-300:]))
    # Neurons on the CLS token: the class's probability (Delta-Acc does not separate the methods
    # at this size: measured -0.28 vs +0.28 pp, a few images either way; docs/intervene.md).
    res = causal_means(out, "neuron", "delta_prob")
    causal_means(out, "neuron", "delta_acc")
    # Measured on this world: miclip -2.60 pp, random -1.77 pp (std over seeds 0.12 and 0.51).
    check(res["miclip"] < res["random"] - 0.4 and res["miclip"] < -1.0,
          "removing miclip's top-5 neurons of class c (CLS) lowers class c's probability more than 5 random neurons, "
          "averaged over classes and seeds (margin 0.4 pp): %.2f vs %.2f pp" % (res["miclip"], res["random"]))
    # SAE features on every token, from the same upstream stores: accuracy.
    out2 = os.path.join(tmp, "all")
    cfg2 = os.path.join(tmp, "causal_all.yaml")
    write_config(cfg2, world, out2, seeds="[0, 1, 2]", sae=SAE_WORLD,
                 intervene=", methods: [miclip, random], units: [sae], modes: [scale], betas: [0.0], "
                 "datasets: [eval], batch_size: 32, tokens: all")
    for d in ("extract", "sae", "align", "localize", "concepts"):
        shutil.copytree(os.path.join(out, d), os.path.join(out2, d))
    r = run(2, ["intervene", cfg2])
    check(r.returncode == 0, "SAE interventions on every token %s" % r.stderr[-300:])
    res = causal_means(out2, "sae", "delta_acc")
    # Measured on this world: miclip -3.89 pp (seeds -3.06, -3.06, -5.56), random -0.46 pp.
    check(res["miclip"] < res["random"] - 2.0,
          "removing miclip's top-5 SAE features of class c drops class c's accuracy more than 5 random features, "
          "averaged over classes and seeds (margin 2 pp): %.2f vs %.2f pp" % (res["miclip"], res["random"]))


def test_resume(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    base = os.path.join(tmp, "base")
    cfg = os.path.join(tmp, "resume.yaml")
    write_config(cfg, world, base, intervene=", methods: [miclip, random], units: [neuron, sae], modes: [scale], "
                 "betas: [0.0, 0.5, 1.5, 2.0, 3.0], datasets: [eval], batch_size: 1")
    for st in ("extract", "sae", "align", "localize"):
        r = run(2, [st, cfg])
        check(r.returncode == 0, "%s for the resume test" % st)
    ref = os.path.join(tmp, "ref")
    cfg_ref = os.path.join(tmp, "resume_ref.yaml")
    open(cfg_ref, "w").write(open(cfg).read().replace(base, ref))
    shutil.copytree(base, ref)
    # The store calls of an uninterrupted run at 2 ranks (rank 0's, MICLIP_TEST_STORE_TRACE): the
    # kill points are chosen from the program's progress, never from the clock (src/store/store_hook.c).
    r = fixture.mpirun(2, ["intervene", cfg_ref], capture_output=True, text=True,
                       env=dict(os.environ, MICLIP_TEST_STORE_TRACE="1"))
    total = sum(1 for l in r.stderr.splitlines() if l.startswith("miclip[0] store call "))
    check(r.returncode == 0 and total > 10, "uninterrupted intervene (%d store calls on rank 0)" % total)
    mid = False
    for frac in (0.5, 0.3, 0.7, 0.15, 0.85):
        shutil.rmtree(os.path.join(base, "intervene"), ignore_errors=True)
        shutil.rmtree(os.path.join(base, "report"), ignore_errors=True)
        n = max(1, int(frac * total))
        k = subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "intervene", cfg],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env=dict(os.environ, MICLIP_TEST_KILL_AT_STORE_CALL=str(n)))
        check(k.returncode != 0, "SIGKILL after store call %d of %d ends the run (exit %d)" % (n, total, k.returncode))
        r = fixture.mpirun(4, ["intervene", cfg], capture_output=True, text=True)
        if r.returncode != 0:
            check(False, "intervene after SIGKILL exits 0: %s" % r.stderr[-400:])
            return
        # Resumed mid-stage: a partly done group or prefix, or some tasks complete and others run.
        if "resuming" in r.stderr or ("complete, skipping" in r.stderr and ": -> " in r.stderr):
            mid = True
            print("resumed:", [l for l in r.stderr.splitlines() if "resuming" in l] or
                  [l for l in r.stderr.splitlines() if "skipping" in l][-1:])
            break
    check(mid, "a SIGKILL landed mid-stage and the rerun (at 4 ranks) resumed")
    ok, why = same_outputs(base, ref)
    check(ok, "resumed outputs equal the uninterrupted run's bitwise %s" % why)


def codes_store(out):
    f = sorted(glob.glob(os.path.join(out, "intervene", "codes-eval-*.h5")))
    return f[0] if len(f) == 1 else None


def test_codes(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    cfg_kw = dict(stages="[extract, sae, intervene]",
                  intervene=", methods: [random, oracle], units: [sae], modes: [scale, add], betas: [0.0, 2.0], "
                  "add_betas: [1.0], datasets: [eval], batch_size: 3, tokens: patches")
    out, tasks = ranks_identical(tmp, "codes", world, 6, **cfg_kw)
    store = codes_store(out)
    check(store is not None, "one code store intervene/codes-eval-*.h5 beside the prefix cache")
    if store is None:
        return
    with h5py.File(one(out, "prefix-eval-*"), "r") as f:
        state = f["state"][()].astype(np.float64)
    W_enc, b_enc, _, b_pre, k = read_sae(out)
    with h5py.File(store, "r") as f:
        idx, val = f["idx"][()], f["val"][()]
        attrs = dict(f.attrs)
    n, T = state.shape[0], state.shape[1]
    check(idx.shape == (n, T - 1, k) and val.shape == idx.shape and idx.dtype == np.int32 and val.dtype == np.float32,
          "idx / val are [images, patch tokens, k] int32 / float32: %s %s" % (idx.shape, val.dtype))
    check(attrs.get("complete") == 1 and attrs.get("token_begin") == 1 and attrs.get("token_end") == T
          and attrs.get("k") == k, "the store is complete and names its tokens [1, %d) and k %d" % (T, k))
    # numpy's top-k of the same rows in float64. The float32 encoder may order two pre-activations
    # closer than its rounding (~1e-6 here) the other way: such near-ties at the k-th place are
    # left out of the index check (counted and printed); the values agree within 1e-5.
    pre = (state[:, 1:, :] - b_pre) @ W_enc.T + b_enc
    order = np.sort(pre, axis=-1)[..., ::-1]
    ref_idx, ref_val = sae_encode(state[:, 1:, :], W_enc, b_enc, b_pre, k)
    clear = (order[..., k - 1] - order[..., k]) > 1e-5
    same_sets = np.all(np.sort(idx, -1) == np.sort(ref_idx, -1), axis=-1)
    check(bool(np.all(same_sets[clear])), "the code's features equal numpy's top %d on every token without a near-tie "
          "(%d of %d tokens; %d near-ties)" % (k, int(same_sets[clear].sum()), int(clear.sum()), int((~clear).sum())))
    got = np.take_along_axis(pre, idx.astype(np.int64), -1)
    err_v = float(np.max(np.abs(val - np.maximum(got, 0))))
    ref_sorted = np.sort(ref_val, -1)
    err_s = float(np.max(np.abs(np.sort(val, -1) - ref_sorted)))
    print("code store against numpy: worst |val - relu(pre)| %.2e, sorted values %.2e" % (err_v, err_s))
    check(err_v < 1e-5 and err_s < 1e-5, "each code value is numpy's relu(pre-activation) of its feature within 1e-5 "
          "(%.2e), the sorted values numpy's top-k within 1e-5 (%.2e)" % (err_v, err_s))
    # Written once: a second config with other edits over the same prefix and SAE reads it.
    before = (os.stat(store).st_mtime_ns, open(store, "rb").read())
    cfg2 = os.path.join(tmp, "codes_more.yaml")
    write_config(cfg2, world, out, **dict(cfg_kw, intervene=cfg_kw["intervene"].replace("betas: [0.0, 2.0]",
                                                                                       "betas: [0.5]")))
    loud = dict(os.environ, MICLIP_LOG_TASKS="1")  # the tasks' info lines, where "SAE codes of" would be
    r = fixture.mpirun(2, ["intervene", cfg2], capture_output=True, text=True, env=loud)
    check(r.returncode == 0 and "SAE codes of eval complete, reusing" in r.stderr and "images x" not in r.stderr,
          "a second sweep (scale x0.5) runs without writing codes (%s)" % r.stderr.strip()[-300:])
    check((os.stat(store).st_mtime_ns, open(store, "rb").read()) == before, "and leaves the code store untouched")
    # SIGKILL while the code store is written (one of its own store calls, from an uninterrupted
    # run's trace), then a rerun at 4 ranks resumes it: every output equals the uninterrupted run's.
    base = os.path.join(tmp, "kill")
    cfg_k = os.path.join(tmp, "codes_kill.yaml")
    write_config(cfg_k, world, base, **cfg_kw)
    shutil.copytree(out, base)
    for p in glob.glob(os.path.join(base, "intervene", "*")):
        if not os.path.basename(p).startswith("prefix-"):
            os.remove(p)
    shutil.rmtree(os.path.join(base, "tables"), ignore_errors=True)
    ref = os.path.join(tmp, "kill_ref")
    shutil.copytree(base, ref)
    cfg_r = os.path.join(tmp, "codes_kill_ref.yaml")
    write_config(cfg_r, world, ref, **cfg_kw)
    r = fixture.mpirun(2, ["intervene", cfg_r], capture_output=True, text=True,
                       env=dict(os.environ, MICLIP_TEST_STORE_TRACE="1"))
    calls = [int(l.split()[3].rstrip(":")) for l in r.stderr.splitlines()
             if l.startswith("miclip[0] store call ") and "/codes-eval-" in l and "units_mark" in l]
    check(r.returncode == 0 and len(calls) > 4, "uninterrupted run: %d batches marked in the code store" % len(calls))
    if len(calls) <= 4:
        return
    kill_at = calls[len(calls) // 2]
    k_ = subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "intervene", cfg_k],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        env=dict(os.environ, MICLIP_TEST_KILL_AT_STORE_CALL=str(kill_at)))
    st = codes_store(base)
    partial = st is not None and h5py.File(st, "r").attrs.get("complete") != 1
    check(k_.returncode != 0 and partial, "SIGKILL after store call %d (a batch of the code store) leaves it "
          "incomplete (exit %d)" % (kill_at, k_.returncode))
    r = fixture.mpirun(4, ["intervene", cfg_k], capture_output=True, text=True, env=loud)
    check(r.returncode == 0 and "SAE codes of eval resuming" in r.stderr,
          "the rerun at 4 ranks resumes the code store (%s)" % r.stderr.strip()[-300:])
    ok, why = same_outputs(base, ref)
    check(ok, "resumed outputs (code store, task stores, CSV) equal the uninterrupted run's bitwise %s" % why)


def bad_run(np_, args):
    """Runs every rank under sh to see each rank's exit code."""
    cmd = "%s --quiet %s; echo rank-exit=$? >&2" % (fixture.MICLIP, " ".join(args))
    return subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", str(np_), "sh", "-c", cmd],
                          capture_output=True, text=True)


def top_units(drop, tau):
    """The top-tau units of each row of drop (NaN never; ties: the lower index)."""
    d = np.where(np.isnan(drop), -np.inf, drop)
    return np.argsort(-d, axis=1, kind="stable")[:, :tau]


def test_oracle(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "oracle%d.yaml" % n)
        write_config(cfg, world, out, stages="[extract, sae, intervene, report]",
                     intervene=", methods: [oracle, random], units: [neuron, sae], modes: [scale], betas: [0.0], "
                     "datasets: [eval], batch_size: 7")
        t0 = time.time()
        r = run(n, ["run", cfg])
        check(r.returncode == 0, "oracle chain at %d rank(s) exits 0 in %.1f s (%s)" % (n, time.time() - t0,
                                                                                        r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%d-rank outputs (oracle scores, task stores, CSV, report) equal the 1-rank outputs bitwise %s" % (n, why))
    out = outs[1]
    t2 = os.path.join(out, "report", "tables", "table2_interventions.md")
    txt = open(t2).read() if os.path.exists(t2) else ""
    check("Clean accuracy: eval" in txt and "Reference row `oracle`" in txt and "\n| oracle |" in txt
          and "\n| random |" in txt, "Table 2: oracle and random rows, the clean accuracy and headroom in its intro")
    m = ViTSuffix(VIT)
    with h5py.File(one(out, "prefix-eval-*"), "r") as f:
        state, first = f["state"][()].astype(np.float64), f["class_first_row"][()]
        clean_prob, clean_pred = f["clean_prob"][()], f["clean_pred"][()]
    with h5py.File(glob.glob(os.path.join(out, "sae", "*.h5"))[0], "r") as f:
        W_enc, b_enc = f["W_enc"][()].astype(np.float64), f["b_enc"][()].astype(np.float64)
        W_dec_T, b_pre = f["W_dec_T"][()].astype(np.float64), f["b_pre"][()].astype(np.float64)
        k = int(f.attrs.get("k", 6))

    def probs(x, c):
        z = m.logits(x, 3)
        z = np.exp(z - z.max(1, keepdims=True))
        return z[:, c] / z.sum(1), np.argmax(z, 1)

    st = one(out, "intervene-s0-l3-oracle-scale-b0-*")
    rs = one(out, "intervene-s0-l3-random-scale-b0-*")
    for kind, nu in (("neuron", 64), ("sae", 96)):
        sc = one(out, "oracle-eval-l3-%s-*" % kind)
        if not (sc and st and rs):
            check(False, "oracle stores for %s" % kind)
            continue
        with h5py.File(sc, "r") as f:
            drop, dacc, nf = f["drop_prob"][()], f["drop_acc"][()], f["n_forward"][()]
        check(drop.shape == (36, nu) and not np.isnan(drop).any(), "%s ablation scores [36, %d], every unit measured" % (kind, nu))
        worst, worst_acc, cases = 0.0, 0.0, 0
        for c in (0, 23):
            x = state[first[c]:first[c + 1]]
            n = x.shape[0]
            p0, y0 = probs(x, c)
            check(np.abs(p0 - clean_prob[first[c]:first[c + 1]]).max() < 1e-5, "class %d: numpy clean probabilities" % c)
            ref, ref_acc = np.zeros(nu), np.zeros(nu)
            if kind == "neuron":
                xs = np.repeat(x[None], nu, 0)  # [unit, image, T, D]
                for u in range(nu):
                    xs[u, :, :, u] = 0.0
                pu, yu = probs(xs.reshape(nu * n, *x.shape[1:]), c)
                ref = (p0[None] - pu.reshape(nu, n)).mean(1)
                ref_acc = ((y0 == c)[None].astype(float) - (yu.reshape(nu, n) == c)).mean(1)
            else:
                idx, val = sae_encode(x, W_enc, b_enc, b_pre, k)  # [n, T, k]
                pairs = [(u, i) for u in range(nu) for i in range(n) if (idx[i] == u).any()]
                xs = np.stack([x[i] + np.einsum("tk,tkd->td", np.where(idx[i] == u, -val[i], 0), W_dec_T[idx[i]])
                               for u, i in pairs])
                pu, yu = probs(xs, c)
                for (u, i), pv, yv in zip(pairs, pu, yu):
                    ref[u] += (p0[i] - pv) / n
                    ref_acc[u] += (float(y0[i] == c) - float(yv == c)) / n
                check(nf[c] == len(pairs), "class %d: %d suffix forwards = the (feature, image) pairs where the feature "
                      "fires (%d)" % (c, nf[c], len(pairs)))
            worst = max(worst, np.abs(ref - drop[c]).max())
            worst_acc = max(worst_acc, np.abs(ref_acc - dacc[c]).max())
            cases += nu
        print("oracle %s: %d unit scores, worst abs error %.2e (probability), %.2e (accuracy)" % (kind, cases, worst, worst_acc))
        check(worst < 1e-5 and worst_acc < 1e-9, "%s ablation scores equal numpy's single-unit removals (worst %.2e, "
              "accuracy %.2e)" % (kind, worst, worst_acc))
        with h5py.File(st, "r") as f, h5py.File(rs, "r") as g:
            units = f["eval/%s/units" % kind][()]
            check(np.array_equal(units, top_units(drop, 5)), "%s oracle units are the top 5 of the ablation scores" % kind)
            check(np.array_equal(f["eval/%s/oracle_drop_prob" % kind][()], np.take_along_axis(drop, units, 1)),
                  "%s task store holds the chosen units' scores" % kind)
            o, r_ = f["eval/" + kind].attrs, g["eval/" + kind].attrs
            print("removal of 5 %s units: oracle Delta-Acc %+.2f Delta-P %+.2f, random %+.2f %+.2f pp"
                  % (kind, o["delta_acc"], o["delta_prob"], r_["delta_acc"], r_["delta_prob"]))
            check(o["delta_acc"] <= r_["delta_acc"] and o["delta_prob"] <= r_["delta_prob"],
                  "%s: the oracle's removal costs at least random's (Delta-Acc %+.2f vs %+.2f pp)"
                  % (kind, o["delta_acc"], r_["delta_acc"]))
    # Localization precision (docs/intervene.md) against an independent numpy recomputation, for
    # the oracle's and random's units (the same stores at 1, 2 and 4 ranks: bitwise above).
    for kind, nu in (("neuron", 64), ("sae", 96)):
        if kind == "neuron":
            acts = state.mean(1)  # every token is edited (intervene.tokens all): [N, D]
        else:
            idx, val = sae_encode(state, W_enc, b_enc, b_pre, k)  # [N, T, k]
            acts = np.zeros((state.shape[0], nu))
            for t in range(state.shape[1]):
                np.add.at(acts, (np.arange(state.shape[0])[:, None], idx[:, t]), val[:, t] / state.shape[1])
        for store, who in ((st, "oracle"), (rs, "random")):
            with h5py.File(store, "r") as f:
                units, got = f["eval/%s/units" % kind][()], f["eval/%s/precision" % kind][()]
                got_mean = f["eval/" + kind].attrs["precision"]
            want = np.zeros(36)
            for c in range(36):
                n_c = first[c + 1] - first[c]
                for u in units[c]:
                    v = acts[:, u]
                    t = np.sort(v)[::-1][n_c - 1]  # the n_c-th largest value
                    p_in = np.where(v > t, 1.0, np.where(v == t, (n_c - (v > t).sum()) / (v == t).sum(), 0.0))
                    want[c] += p_in[first[c]:first[c + 1]].sum() / n_c / len(units[c])
            err = np.abs(got - want).max()
            print("precision %s %s: %.1f%% (numpy %.1f%%), worst class error %.2e"
                  % (who, kind, got_mean, 100 * want.mean(), err))
            check(err < 1e-9 and abs(got_mean - 100 * want.mean()) < 1e-7,
                  "%s %s units: localization precision per class equals numpy's (worst %.2e)" % (who, kind, err))
    t = os.path.join(out, "report", "tables", "table_precision.md")
    txt = open(t).read() if os.path.exists(t) else ""
    check("\n| oracle |" in txt and "\n| random |" in txt and "sae, eval" in txt and "neuron, eval" in txt,
          "report: the localization precision table with the oracle and random rows")


def store_data(path):
    """Every dataset of a store: {name: array}."""
    with h5py.File(path, "r") as f:
        return {n: f[n][()] for n in h5_datasets(f)}


def task_stores(out):
    """Each intervene task store and the oracle's scores by name without their key: {stem: path}."""
    got = {}
    for q in glob.glob(os.path.join(out, "intervene", "*.h5")):
        b = os.path.basename(q)
        if not b.startswith("prefix-"):
            got[b.rsplit("-", 1)[0]] = q
    return got


def test_recompute(tmp):
    """intervene.prefix: recompute stores no state and runs the layers before intervene.layer again
    for every edited batch, in the cache's own batches: every number of every task (the oracle's
    scores, the precision, the edited predictions, probabilities and logits) equals the cached
    run's bitwise, at 1 and 4 ranks."""
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    base = os.path.join(tmp, "cache")
    iv = ", methods: [miclip, oracle], units: [neuron, sae], modes: [scale], betas: [0.0], datasets: [eval], batch_size: 7"
    cfg = os.path.join(tmp, "cache.yaml")
    write_config(cfg, world, base, intervene=iv)
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "the chain with the prefix cache exits 0 (%s)" % r.stderr.strip()[-400:])
    cached = task_stores(base)
    n_tasks = sum(k.startswith("intervene-") for k in cached)
    check(n_tasks == 2 and len(cached) > n_tasks, "2 task stores and the oracle's scores: %s" % sorted(cached))
    pre = one(base, "prefix-eval-*")
    for n in (1, 4):
        out = os.path.join(tmp, "recompute%d" % n)
        shutil.copytree(base, out)
        shutil.rmtree(os.path.join(out, "intervene"))
        cfg = os.path.join(tmp, "recompute%d.yaml" % n)
        write_config(cfg, world, out, intervene=iv + ", prefix: recompute")
        r = run(n, ["intervene", cfg])
        check(r.returncode == 0, "prefix: recompute at %d rank(s) exits 0 (%s)" % (n, r.stderr.strip()[-400:]))
        rp = one(out, "prefix-eval-*")
        if not (rp and pre):
            check(False, "a prefix store at %d rank(s)" % n)
            continue
        with h5py.File(pre, "r") as a, h5py.File(rp, "r") as b:
            same = all(np.array_equal(a[k][()], b[k][()]) for k in
                       ("clean_pred", "clean_prob", "clean_logits", "labels", "image_index", "clean_class_acc"))
            check("state" not in b and same and os.path.getsize(rp) < os.path.getsize(pre) / 4,
                  "recompute's prefix store: no state (%d vs %d bytes), the same clean run" %
                  (os.path.getsize(rp), os.path.getsize(pre)))
        got = task_stores(out)
        check(sorted(got) == sorted(cached), "the same tasks at %d rank(s): %s" % (n, sorted(set(got) ^ set(cached))))
        diff = []
        for stem in sorted(set(got) & set(cached)):
            da, db = store_data(cached[stem]), store_data(got[stem])
            if sorted(da) != sorted(db):
                diff.append("%s: datasets %s" % (stem, sorted(set(da) ^ set(db))))
            diff += ["%s: %s" % (stem, k) for k in sorted(set(da) & set(db)) if not (
                np.asarray(da[k]).dtype == np.asarray(db[k]).dtype and np.shape(da[k]) == np.shape(db[k])
                and np.asarray(da[k]).tobytes() == np.asarray(db[k]).tobytes())]
        check(not diff, "prefix: recompute at %d rank(s): every dataset of the %d task stores equals the cached "
              "run's bitwise %s" % (n, len(got), diff[:5]))
    cfg = os.path.join(tmp, "f16.yaml")
    write_config(cfg, world, os.path.join(tmp, "f16"), intervene=iv + ", prefix: recompute, cache_dtype: f16")
    one_error(bad_run(2, ["run", cfg]), "intervene.prefix", "prefix: recompute with cache_dtype: f16")


def one_error(r, want, what):
    errs = [l for l in r.stderr.splitlines() if "error" in l]
    codes = [l for l in r.stderr.splitlines() if l.startswith("rank-exit=")]
    check(len(errs) == 1 and want in errs[0] and len(codes) == 2 and all(c != "rank-exit=0" for c in codes),
          "%s: one error line naming '%s', non-zero exit on both ranks (%s; %s)" % (what, want, errs, codes))


def test_bad(tmp):
    world = make_world(os.path.join(tmp, "world"), 20, 4)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "bad_layer.yaml")
    write_config(cfg, world, out, layers='["2"]', sae_layer="2")
    one_error(bad_run(2, ["run", cfg]), "intervene.layer", "intervene.layer not in extract.layers")
    cfg = os.path.join(tmp, "bad_sae.yaml")
    write_config(cfg, world, out, layers='["2", "3"]', sae_layer="2", intervene=", units: [neuron, sae]")
    one_error(bad_run(2, ["run", cfg]), "must be equal", "sae units with sae.layer != intervene.layer")
    cfg = os.path.join(tmp, "bad_method.yaml")
    write_config(cfg, world, out, intervene=", methods: [miclip, clip_dissect]")
    open(cfg, "a").write("baselines: {methods: [clip_dissect]}\n")
    one_error(bad_run(2, ["run", cfg]), "intervene.methods", "a baseline method without the baselines stage")
    cfg = os.path.join(tmp, "no_localize.yaml")
    write_config(cfg, world, out, intervene=", datasets: [eval]")
    for st in ("extract", "sae", "align"):
        r = run(2, [st, cfg])
        check(r.returncode == 0, "%s for the missing-localize case" % st)
    one_error(bad_run(2, ["intervene", cfg]), "localize output", "a missing localize output")


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("intervene_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if not (os.path.exists(os.path.join(VIT, "model.safetensors")) and os.path.exists(os.path.join(CLIP, "model.safetensors"))):
        check(False, "the trained tiny models exist under experiments/world")
        return fixture.summary()
    {"ranks": test_ranks, "ref": test_ref, "causal": test_causal, "resume": test_resume, "bad": test_bad,
     "oracle": test_oracle, "clip": test_clip, "resnet": test_resnet, "codes": test_codes,
     "recompute": test_recompute}[what](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
