#!/usr/bin/python3
"""How a unit is embedded (localize.sae_unit, localize.neuron_unit, localize.sae_inputs) and the
intervention protocol of Eq. 5 (add mode with beta * mu_i, the oracle row), on a generated tiny
world with the trained tiny ViT and CLIP (experiments/world/{vit,clip}).

  test_readings.py readings  extract -> sae -> align once; then localize with each reading
                             (algorithm2 over all inputs + basis, atom + activation, algorithm2 and
                             activation over the class's own images) at 1, 2 and 4 ranks: stores
                             bitwise equal across ranks; every stored top score within 1e-5 of a
                             numpy float64 recomputation from the stored E_n, SAE, activations and
                             labels (the SAE codes recomputed in numpy), rankings equal up to ties
                             within 1e-5
  test_readings.py addmu     intervene in the add mode with intervene.add_beta: mu, betas -1 and +1,
                             neurons and SAE features, at 1, 2 and 4 ranks: task stores bitwise
                             equal; each class's units_mu within 1e-5 (relative) of numpy's mean of
                             the unit's positive values over the valid training images (SAE codes
                             re-encoded in numpy); +mu and -mu move the class's probability in
                             opposite directions on average; with intervene.readings
                             [algorithm2, section3.2]: each reading's localize store against numpy,
                             each task's units its reading's top 3, both stages bitwise across
                             ranks, the default reading's ids and keys as without the key
  test_readings.py tokens    a token-level SAE (extract.pool: all, sae.input: all, tokens_per_image
                             5): the SAE store's training rows are 5 tokens per training image;
                             localize (algorithm2 over all inputs and over the class's own),
                             baselines (Act-Values, CLIP-Dissect) and intervene (add with mu;
                             miclip, act_values) at 1, 2 and 4 ranks: stores bitwise equal; against
                             numpy, with a feature's per-image value the mean over the image's 65
                             tokens of their codes: algorithm2's top scores and rankings, Act-Values'
                             class means,
                             CLIP-Dissect's soft-WPMI (the authors' function, reimplemented), and
                             mu_i as the mean code over the training tokens where it is > 0.
                             Features a near-tie in some token's top-k could select differently in
                             float32 are left out (the count is printed)
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import os
import shutil
import sys

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from test_intervene import VIT, CLIP, make_world, run  # noqa: E402
from test_method import h5_datasets, ranking_ok, same_outputs_sub, strings  # noqa: E402

TOL = 1e-5


def write_config(path, world, out, localize="", intervene="", stages="[extract, sae, align, localize]",
                 extract="", sae="", baselines="[]", variants="[in+out]"):
    with open(path, "w") as f:
        f.write(f"""name: rd
output_dir: {out}
seeds: [0]
models: {{target: {VIT}, clip: {CLIP}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: textures, file: {world}/textures.txt}}
extract: {{layers: ["3"], batch_size: 64{extract}}}
sae: {{layer: "3", features: 96, k: 6, batch_size: 64, epochs: 2{sae}}}
baselines: {{methods: {baselines}}}
align: {{batch_size: 256, stop: epochs, epochs: 3, lr: 0.15, variants: {variants}}}
localize: {{tau: 5{localize}}}
intervene: {{layer: "3", tau: 3, datasets: [eval], batch_size: 8{intervene}}}
report: {{figures: []}}
stages: {stages}
""")


def sae_codes(x, f):
    """numpy top-k SAE codes [N, m] of x (float32 arithmetic as the C encoder, then ReLU)."""
    W_enc, b_enc, b_pre = f["W_enc"][()], f["b_enc"][()], f["b_pre"][()]
    k = int(f.attrs["k"])
    pre = ((x - b_pre).astype(np.float64) @ W_enc.T.astype(np.float64) + b_enc).astype(np.float64)
    idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
    codes = np.zeros_like(pre)
    rows = np.arange(pre.shape[0])[:, None]
    codes[rows, idx] = np.maximum(pre[rows, idx], 0)
    return codes


def reference_scores(store, kind, cset, names, E):
    """float64 numpy scores [units, concepts] of the reading recorded in the store's group."""
    with h5py.File(store, "r") as f:
        reading = f["%s/%s" % (cset, kind)].attrs["reading"]
        reading = reading.decode() if isinstance(reading, bytes) else str(reading)
        with h5py.File(f.attrs["align_store"], "r") as a:
            W = a["W"][()].astype(np.float64)
            train = a.attrs["extract_store"]
            train = train.decode() if isinstance(train, bytes) else str(train)
        sae_path = f["%s/%s" % (cset, kind)].attrs.get("sae_store", b"")
        sae_path = sae_path.decode() if isinstance(sae_path, bytes) else str(sae_path)
    C = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    with h5py.File(train, "r") as t:
        valid = t["images/valid"][()].astype(bool)
        x = t["acts/3"][()][valid].astype(np.float32)
        labels = t["images/labels"][()][valid]
        classes = strings(t, "classes/names")
    q = np.zeros(W.shape[0])
    if kind == "sae":
        with h5py.File(sae_path, "r") as s:
            P = s["W_dec_T"][()].astype(np.float64) @ W.T
            vals = sae_codes(x, s)
            q = W @ s["b_pre"][()].astype(np.float64)
    else:
        P = W.T.copy()
        vals = x.astype(np.float64)
    if reading in ("basis", "atom"):
        U = P / np.maximum(np.linalg.norm(P, axis=1, keepdims=True), 1e-12)
        return reading, U @ C.T
    g_all = vals.mean(axis=0)
    S = np.zeros((P.shape[0], len(names)))
    for j, name in enumerate(names):
        g = g_all
        if reading.endswith("(class)"):
            hit = [i for i, cn in enumerate(classes) if cn.lower() == name.lower()]
            if hit and np.any(labels == hit[0]):
                g = vals[labels == hit[0]].mean(axis=0)
        emb = g[:, None] * P + q[None, :]
        S[:, j] = emb @ C[j] / np.maximum(np.linalg.norm(emb, axis=1), 1e-12)
    return reading, S


READINGS = [
    ("", {"sae": "algorithm2 (all)", "neuron": "basis"}),
    (", sae_unit: atom, neuron_unit: activation", {"sae": "atom", "neuron": "activation (all)"}),
    (", sae_inputs: class, neuron_unit: activation", {"sae": "algorithm2 (class)", "neuron": "activation (class)"}),
]


def test_readings(tmp):
    world = make_world(os.path.join(tmp, "world"), 10, 2)
    base = os.path.join(tmp, "base")
    cfg = os.path.join(tmp, "base.yaml")
    write_config(cfg, world, base, stages="[extract, sae, align]")
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "extract -> sae -> align exits 0 (%s)" % r.stderr.strip()[-400:])
    concepts = {}
    for i, (extra, want) in enumerate(READINGS):
        outs = {}
        for n in (1, 2, 4):
            out = os.path.join(tmp, "r%d-%d" % (i, n))
            shutil.copytree(base, out)
            # The stores record absolute paths to their inputs: the copies still point at base's.
            c = os.path.join(tmp, "r%d-%d.yaml" % (i, n))
            write_config(c, world, out, localize=extra)
            r = fixture.mpirun(n, ["--quiet", "localize", c], capture_output=True, text=True)
            check(r.returncode == 0, "reading %s: localize at %d rank(s) exits 0 (%s)" % (want, n, r.stderr.strip()[-400:]))
            outs[n] = out
        for n in (2, 4):
            ok, why = same_outputs_sub(outs[1], outs[n], "localize")
            check(ok, "reading %s: %d-rank localize store equals the 1-rank one bitwise %s" % (want, n, why))
        if not concepts:
            for p in glob.glob(os.path.join(outs[1], "concepts", "*.h5")):
                with h5py.File(p, "r") as f:
                    concepts[f.attrs["set"]] = (strings(f, "names"), f["embeds"][()].astype(np.float64))
        store = sorted(glob.glob(os.path.join(outs[1], "localize", "*.h5")))[0]
        for kind in ("neuron", "sae"):
            for cset in ("classes", "textures"):
                names, E = concepts[cset]
                reading, S = reference_scores(store, kind, cset, names, E)
                check(reading == want[kind], "%s units: the group records the reading '%s' (%s)" % (kind, want[kind], reading))
                with h5py.File(store, "r") as f:
                    idx = f["%s/%s/top_units" % (cset, kind)][()]
                    sc = f["%s/%s/top_scores" % (cset, kind)][()]
                err = max(np.abs(sc[c] - S[idx[c], c]).max() for c in range(len(names)))
                bad = sum(not ranking_ok(idx[c], sc[c], S[:, c], TOL) for c in range(len(names)))
                check(err < TOL and bad == 0, "reading %s, %s, set %s: top scores within %.0e of numpy (%.2e), "
                      "%d of %d rankings differ" % (reading, kind, cset, TOL, err, bad, len(names)))


def test_addmu(tmp):
    world = make_world(os.path.join(tmp, "world"), 10, 2)
    # Both of the paper's readings (intervene.readings): each its own localize store and tasks.
    iv = (", methods: [miclip], units: [neuron, sae], modes: [add], add_beta: mu, add_betas: [-1.0, 1.0]"
          ", readings: [algorithm2, section3.2]")
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "mu%d" % n)
        cfg = os.path.join(tmp, "mu%d.yaml" % n)
        write_config(cfg, world, out, intervene=iv, stages="[extract, sae, align, localize, intervene]")
        r = fixture.mpirun(n, ["--quiet", "run", cfg], capture_output=True, text=True)
        check(r.returncode == 0, "add mu: the chain at %d rank(s) exits 0 (%s)" % (n, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        for stage in ("localize", "intervene"):
            ok, why = same_outputs_sub(outs[1], outs[n], stage)
            check(ok, "add mu: %d-rank %s stores equal the 1-rank ones bitwise %s" % (n, stage, why))
    # Each reading's localize store against numpy; its tasks edit that store's top units.
    locs = sorted(glob.glob(os.path.join(outs[1], "localize", "*.h5")))
    check(len(locs) == 2, "two localize stores (one per reading): %d" % len(locs))
    concepts = {}
    for p in glob.glob(os.path.join(outs[1], "concepts", "*.h5")):
        with h5py.File(p, "r") as f:
            concepts[f.attrs["set"]] = (strings(f, "names"), f["embeds"][()].astype(np.float64))
    top = {}
    want = {"": {"neuron": "basis", "sae": "algorithm2 (all)"},
            "-section3.2": {"neuron": "activation (all)", "sae": "atom"}}
    for p in locs:
        tag = "-section3.2" if "-section3.2-" in os.path.basename(p) else ""
        names, E = concepts["classes"]
        for kind in ("neuron", "sae"):
            reading, S = reference_scores(p, kind, "classes", names, E)
            check(reading == want[tag][kind], "localize%s %s: reading '%s' recorded (%s)" % (
                tag, kind, want[tag][kind], reading))
            with h5py.File(p, "r") as f:
                idx = f["classes/%s/top_units" % kind][()]
                sc = f["classes/%s/top_scores" % kind][()]
            err = max(np.abs(sc[c] - S[idx[c], c]).max() for c in range(len(names)))
            bad = sum(not ranking_ok(idx[c], sc[c], S[:, c], TOL) for c in range(len(names)))
            check(err < TOL and bad == 0, "localize%s %s: top scores within %.0e of numpy (%.2e), "
                  "%d rankings differ" % (tag, kind, TOL, err, bad))
            top[(tag, kind)] = {n.lower(): idx[c] for c, n in enumerate(names)}
    stores = sorted(glob.glob(os.path.join(outs[1], "intervene", "intervene-*.h5")))
    ids = sorted(os.path.basename(p).rsplit("-", 1)[0] for p in stores)
    check(ids == ["intervene-s0-l3-miclip-add-b-1", "intervene-s0-l3-miclip-add-b1",
                  "intervene-s0-l3-section3.2-miclip-add-b-1", "intervene-s0-l3-section3.2-miclip-add-b1"],
          "four tasks (2 readings x beta -1, +1), the default reading's ids without a reading: %s" % ids)
    dp = {}
    for p in stores:
        with h5py.File(p, "r") as f:
            check(f.attrs["add_beta"] in (b"mu", "mu"), "%s: add_beta = mu recorded" % os.path.basename(p))
            beta = float(f.attrs["beta"])
            tag = "-section3.2" if "-section3.2-" in os.path.basename(p) else ""
            rd = f.attrs.get("reading", b"")
            rd = rd.decode() if isinstance(rd, bytes) else str(rd)
            check(rd == tag[1:], "%s: reading attribute '%s' (%s)" % (os.path.basename(p), tag[1:], rd))
            with h5py.File(f["eval/sae"].attrs["sae_store"], "r") as s:
                loc = sorted(glob.glob(os.path.join(outs[1], "localize", "*.h5")))[0]
                with h5py.File(loc, "r") as lf, h5py.File(lf.attrs["align_store"], "r") as a:
                    train = a.attrs["extract_store"]
                    train = train.decode() if isinstance(train, bytes) else str(train)
                with h5py.File(train, "r") as t:
                    valid = t["images/valid"][()].astype(bool)
                    x = t["acts/3"][()][valid].astype(np.float32)
                    cls = strings(t, "classes/names")
                vals = {"neuron": x.astype(np.float64), "sae": sae_codes(x, s)}
            for kind in ("neuron", "sae"):
                v = vals[kind]
                pos = np.where(v > 0, v, 0).sum(axis=0)
                cnt = (v > 0).sum(axis=0)
                mu = np.where(cnt > 0, pos / np.maximum(cnt, 1), 0)
                units = f["eval/%s/units" % kind][()]
                got = f["eval/%s/units_mu" % kind][()]
                err = np.abs(got - mu[units]).max() / max(np.abs(mu[units]).max(), 1e-12)
                check(err < 1e-5, "beta %+g, %s: units_mu within 1e-5 of numpy (relative %.2e)" % (beta, kind, err))
                # the class's tau = 3 top units of this reading's localize store
                exp = np.stack([top[(tag, kind)][c.lower()][:3] for c in cls])
                check(units.size == exp.size and np.array_equal(units.reshape(exp.shape), exp),
                      "reading%s %s: the units are the reading's localize top 3" % (tag, kind))
                dp[(tag, beta, kind)] = float(f["eval/%s" % kind].attrs["delta_prob"])
    for tag in ("", "-section3.2"):
        for kind in ("neuron", "sae"):
            print("reading%s %s: Delta-P -mu %+.2f pp, +mu %+.2f pp" % (
                tag, kind, dp[(tag, -1.0, kind)], dp[(tag, 1.0, kind)]))
    # The unit statistics behind mu and the algorithm2/activation readings: one shared store per
    # unit kind (unit-stats/), equal to numpy's sums, bitwise the same at 1, 2 and 4 ranks, and
    # read, not recomputed, by a later task (docs/store.md, "Shared stores").
    us = sorted(glob.glob(os.path.join(outs[1], "unit-stats", "*.h5")))
    check([os.path.basename(p).split("-l")[0] for p in us] == ["neuron", "sae"],
          "one unit-stats store per unit kind: %s" % [os.path.basename(p) for p in us])
    for n in (2, 4):
        ok, why = same_outputs_sub(outs[1], outs[n], "unit-stats")
        check(ok, "unit-stats at %d ranks equal the 1-rank stores bitwise %s" % (n, why))
    for p in us:
        kind = os.path.basename(p).split("-l")[0]
        v = vals[kind]
        with h5py.File(p, "r") as f:
            check(np.array_equal(f["fire_n"][()], (v > 0).sum(axis=0)) and int(f.attrs["n_img"]) == len(v),
                  "unit-stats %s: firing counts and n_img are numpy's" % kind)
            for name, ref in (("sum", v.sum(axis=0)), ("fire_sum", np.where(v > 0, v, 0).sum(axis=0))):
                err = np.abs(f[name][()] - ref).max() / max(np.abs(ref).max(), 1e-12)
                check(err < 1e-5, "unit-stats %s: %s within 1e-5 of numpy (relative %.2e)" % (kind, name, err))
    stamp = [os.stat(p).st_mtime_ns for p in us]
    again = os.path.join(outs[1], "intervene", "intervene-s0-l3-miclip-add-b1-*.h5")
    kept = {}
    for p in glob.glob(again):
        with h5py.File(p, "r") as f:
            kept = {n: f[n][()] for n in h5_datasets(f)}
        os.remove(p)
    r = fixture.mpirun(1, ["run", os.path.join(tmp, "mu1.yaml"), "--stage", "intervene"],
                       capture_output=True, text=True)
    redo = glob.glob(again)
    same = len(redo) == 1 and bool(kept)
    if same:
        with h5py.File(redo[0], "r") as f:
            same = h5_datasets(f) == sorted(kept) and all(np.array_equal(kept[n], f[n][()]) for n in kept)
    check(r.returncode == 0 and same, "a deleted add task is rewritten bitwise the same (%s)" % r.stderr.strip()[-300:])
    reused = [l for l in r.stderr.splitlines() if "unit statistics" in l and "complete, reusing" in l]
    check(len(reused) == 2 and [os.stat(p).st_mtime_ns for p in us] == stamp,
          "the rerun task reads both unit-stats stores and rewrites neither (%d reuse lines)" % len(reused))
    # Without intervene.readings the same config finds the default reading's stores complete
    # (same ids and keys): no new store appears.
    before = sorted(os.listdir(os.path.join(outs[1], "localize")) + os.listdir(os.path.join(outs[1], "intervene")))
    cfg = os.path.join(tmp, "mu1-plain.yaml")
    write_config(cfg, world, outs[1], intervene=iv.replace(", readings: [algorithm2, section3.2]", ""),
                 stages="[extract, sae, align, localize, intervene]")
    r = fixture.mpirun(1, ["--quiet", "run", cfg], capture_output=True, text=True)
    after = sorted(os.listdir(os.path.join(outs[1], "localize")) + os.listdir(os.path.join(outs[1], "intervene")))
    check(r.returncode == 0 and before == after,
          "without intervene.readings the default reading's stores are found complete (no new store)")
    # The report names the reading in every miclip row; the configured one is the reference.
    cfg = os.path.join(tmp, "mu1-report.yaml")
    write_config(cfg, world, outs[1], intervene=iv, stages="[extract, sae, align, localize, intervene, report]")
    r = fixture.mpirun(1, ["--quiet", "run", cfg], capture_output=True, text=True)
    t2 = os.path.join(outs[1], "report", "tables", "table2_interventions.md")
    md = open(t2).read() if os.path.exists(t2) else ""
    rows = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| miclip")]
    check(r.returncode == 0 and "miclip (algorithm2)" in rows and "miclip (section3.2)" in rows
          and "miclip" not in rows and "| method vs miclip (algorithm2) |" in md,
          "report: Table 2 rows per reading, reference miclip (algorithm2): %s" % sorted(set(rows)))
    # With readings and a second E_n variant, Table 4 takes each variant's row at the configured
    # reading, and Table 2 keeps the variants out (they once landed in Table 2 and left Table 4
    # empty, because with readings a variant's row is named "miclip (out, algorithm2)").
    out = os.path.join(tmp, "t4")
    cfg = os.path.join(tmp, "t4.yaml")
    write_config(cfg, world, out, variants="[in+out, out]",
                 intervene=", methods: [miclip], units: [neuron], modes: [scale], betas: [0.0], "
                           "variants: [in+out, out], readings: [algorithm2, section3.2]",
                 stages="[extract, sae, align, localize, intervene, report]")
    r = fixture.mpirun(1, ["--quiet", "run", cfg], capture_output=True, text=True)
    tabs = {}
    for t in ("table2_interventions", "table4_ablation"):
        p = os.path.join(out, "report", "tables", t + ".md")
        md = open(p).read() if os.path.exists(p) else ""
        first = md[md.find("| method |"):].split("\n\n")[0] if "| method |" in md else ""  # means
        tabs[t] = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]]
                   for ln in first.splitlines() if ln.startswith("| miclip")}
    t4 = tabs["table4_ablation"]
    check(r.returncode == 0 and sorted(t4) == ["miclip (in+out)", "miclip (out)"]
          and all(v[1] not in ("", "--") for v in t4.values()),
          "readings + variants: Table 4's rows hold the seen removal of each variant: %s" % t4)
    check(sorted(tabs["table2_interventions"]) == ["miclip (algorithm2)", "miclip (section3.2)"],
          "readings + variants: Table 2's miclip rows are the readings only: %s" % sorted(tabs["table2_interventions"]))
    for kind in ("neuron", "sae"):
        check(dp[("", -1.0, kind)] < dp[("", 1.0, kind)],
              "%s: Delta-P with -mu (%+.2f pp) below +mu (%+.2f pp)" % (
                  kind, dp[("", -1.0, kind)], dp[("", 1.0, kind)]))


def token_codes(x, f, tol=2e-5):
    """x [N, T, D] -> per-image values [N, m] (the mean over the T tokens of their numpy codes),
    per-token codes [N*T, m], and the features a near-tie could swap: a token whose k-th and
    (k+1)-th pre-activations are within tol (float32 error of a 64-term dot product is ~1e-6) and
    whose k-th is > 0 may select either in the stage."""
    N, T, D = x.shape
    W_enc, b_enc, b_pre = f["W_enc"][()], f["b_enc"][()], f["b_pre"][()]
    k = int(f.attrs["k"])
    pre = (x.reshape(N * T, D).astype(np.float64) - b_pre) @ W_enc.T.astype(np.float64) + b_enc
    order = np.argsort(-pre, axis=1, kind="stable")
    rows = np.arange(N * T)[:, None]
    codes = np.zeros_like(pre)
    codes[rows, order[:, :k]] = np.maximum(pre[rows, order[:, :k]], 0)
    kth, nxt = pre[rows[:, 0], order[:, k - 1]], pre[rows[:, 0], order[:, k]]
    amb = (kth - nxt < tol) & (kth > 0)
    feats = set(order[amb, k - 1].tolist()) | set(order[amb, k].tolist())
    return codes.reshape(N, T, -1).mean(axis=1), codes, feats


def test_tokens(tmp):
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "baselines"))
    from test_baselines import act_values_ref, concept_embeds, soft_wpmi_ref  # noqa: E402
    world = make_world(os.path.join(tmp, "world"), 5, 1)
    ex, sae = ", pool: all", ", input: all, tokens_per_image: 5"
    iv = ", methods: [miclip, act_values], units: [sae], modes: [add], add_beta: mu, add_betas: [1.0]"
    base = os.path.join(tmp, "base")
    cfg = os.path.join(tmp, "base.yaml")
    write_config(cfg, world, base, stages="[extract, sae, align]", extract=ex, sae=sae)
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "token SAE: extract -> sae -> align exits 0 (%s)" % r.stderr.strip()[-400:])
    sae_path = sorted(glob.glob(os.path.join(base, "sae", "*.h5")))[0]
    with h5py.File(sae_path, "r") as f:
        inp = f.attrs["input"]
        check(inp in (b"all", "all"), "the SAE store records input all (%s)" % inp)
        ni, ns = int(f.attrs["n_train_images"]), int(f.attrs["n_train_samples"])
        check(ns == 5 * ni and ni > 0, "training rows are 5 tokens per training image (%d rows, %d images)" % (ns, ni))
    for extra, want in (("", "algorithm2 (all)"), (", sae_inputs: class", "algorithm2 (class)")):
        outs = {}
        for n in (1, 2, 4):
            out = os.path.join(tmp, "t%s-%d" % (want[12:-1], n))
            shutil.copytree(base, out)
            c = os.path.join(tmp, "t%s-%d.yaml" % (want[12:-1], n))
            # the class reading changes localize alone: baselines and intervene run once
            full = want.endswith("(all)")
            write_config(c, world, out, localize=extra, intervene=iv, extract=ex, sae=sae,
                         baselines="[act_values, clip_dissect]",
                         stages="[extract, sae, align, localize%s]" % (", baselines, intervene" if full else ""))
            r = fixture.mpirun(n, ["--quiet", "run", c], capture_output=True, text=True)
            check(r.returncode == 0, "token SAE, %s: localize, baselines, intervene at %d rank(s) exit 0 (%s)"
                  % (want, n, "\n".join(l for l in r.stderr.splitlines() if "error" in l)[-600:] or r.stderr.strip()[-400:]))
            outs[n] = out
        for n in (2, 4):
            for sub in ("localize", "baselines", "intervene") if want.endswith("(all)") else ("localize",):
                ok, why = same_outputs_sub(outs[1], outs[n], sub)
                check(ok, "token SAE, %s: %d-rank %s stores equal the 1-rank ones bitwise %s" % (want, n, sub, why))
        out = outs[1]
        loc = sorted(glob.glob(os.path.join(out, "localize", "*.h5")))[0]
        with h5py.File(loc, "r") as lf, h5py.File(lf.attrs["align_store"], "r") as a:
            W = a["W"][()].astype(np.float64)
            train = a.attrs["extract_store"]
            train = train.decode() if isinstance(train, bytes) else str(train)
        with h5py.File(train, "r") as t:
            valid = t["images/valid"][()].astype(bool)
            xa = t["acts/3"][()].astype(np.float32)
            labels, pred = t["images/labels"][()], t["target/predictions"][()]
            img_emb = t["clip/image_embeds"][()].astype(np.float64)
            classes = strings(t, "classes/names")
            C = len(classes)
        check(xa.ndim == 3 and xa.shape[1] == 65, "acts/3 holds every token [N, 65, 64]: %s" % (xa.shape,))
        with h5py.File(sae_path, "r") as s:
            vals_all, tok_codes, amb = token_codes(xa, s)
            P = s["W_dec_T"][()].astype(np.float64) @ W.T
            q = W @ s["b_pre"][()].astype(np.float64)
        print("features a near-tie could swap (left out): %d of %d" % (len(amb), P.shape[0]))
        keep = np.array([u not in amb for u in range(P.shape[0])])
        vals = vals_all[valid]
        lab = labels[valid]
        # localize, algorithm2: g_i = the mean per-image value over the input set
        cstores = {}
        for p in glob.glob(os.path.join(out, "concepts", "*.h5")):
            with h5py.File(p, "r") as f:
                pr = f.attrs["prompt"]
                pr = pr.decode() if isinstance(pr, bytes) else str(pr)
                cstores[(f.attrs["set"].decode() if isinstance(f.attrs["set"], bytes) else str(f.attrs["set"]), pr)] = (
                    strings(f, "names"), f["embeds"][()].astype(np.float64))
        with h5py.File(loc, "r") as f:
            for (cset, pr), (names, E) in cstores.items():
                if "%s/sae/top_units" % cset not in f or pr == "{}":
                    continue
                Cn = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
                S = np.full((P.shape[0], len(names)), -np.inf)
                for j, name in enumerate(names):
                    g = vals.mean(axis=0)
                    hit = [i for i, cn in enumerate(classes) if cn.lower() == name.lower()]
                    if want.endswith("(class)") and hit and np.any(lab == hit[0]):
                        g = vals[lab == hit[0]].mean(axis=0)
                    emb = g[:, None] * P + q[None, :]
                    S[:, j] = emb @ Cn[j] / np.maximum(np.linalg.norm(emb, axis=1), 1e-12)
                idx, sc = f["%s/sae/top_units" % cset][()], f["%s/sae/top_scores" % cset][()]
                rd = f["%s/sae" % cset].attrs["reading"]
                check((rd.decode() if isinstance(rd, bytes) else str(rd)) == want, "%s: reading %s recorded" % (cset, want))
                bad = checked = 0
                for c in range(len(names)):
                    top = np.lexsort((np.arange(P.shape[0]), -S[:, c]))[:idx.shape[1] + 1]
                    if not keep[top].all() or not keep[idx[c]].all():
                        continue
                    checked += 1
                    bad += not ranking_ok(idx[c], sc[c], S[:, c], TOL)
                check(bad == 0 and checked > 0, "token SAE %s, %s: top units and scores equal numpy's (%d of %d concepts "
                      "checked, %d differ)" % (want, cset, checked, len(names), bad))
        if not want.endswith("(all)"):
            continue
        # baselines: Act-Values and CLIP-Dissect on the per-image values
        A = act_values_ref(vals_all, pred, valid, C)
        bl = sorted(glob.glob(os.path.join(out, "baselines", "baselines-s0-l3-act_values-*.h5")))[0]
        with h5py.File(bl, "r") as f:
            got = f["describe/classes/sae/sim"][()].astype(np.float64)
        fin = np.isfinite(A) & keep[:, None]
        scale = np.abs(A[np.isfinite(A)]).max()
        err = np.abs(got[fin] - A[fin]).max()
        check(np.array_equal(np.isinf(got), np.isinf(A)) and err <= 1e-5 * scale,
              "token SAE: Act-Values scores equal numpy's class means of the token-mean codes (max error %.2e, "
              "scale %.2e)" % (err, scale))
        bl = sorted(glob.glob(os.path.join(out, "baselines", "baselines-s0-l3-clip_dissect-*.h5")))[0]
        with h5py.File(bl, "r") as f:
            for cset in ("classes", "textures"):
                T = concept_embeds(out, cset)
                S = soft_wpmi_ref(vals_all, img_emb, T, valid)
                got = f["describe/%s/sae/sim" % cset][()].astype(np.float64)
                err = np.abs(got - S)[keep]
                check(np.all(err <= 2e-5 * np.abs(S[keep]) + 1e-4),
                      "token SAE: CLIP-Dissect %s equals the authors' soft-WPMI on the token-mean codes (max "
                      "error %.2e)" % (cset, err.max()))
        # intervene add mu: the mean code over the training tokens where it is > 0
        vt = tok_codes.reshape(xa.shape[0], xa.shape[1], -1)[valid].reshape(-1, P.shape[0])
        cnt = (vt > 0).sum(axis=0)
        mu = np.where(cnt > 0, np.where(vt > 0, vt, 0).sum(axis=0) / np.maximum(cnt, 1), 0)
        n_mu = 0
        for p in sorted(glob.glob(os.path.join(out, "intervene", "intervene-*.h5"))):
            with h5py.File(p, "r") as f:
                if "eval/sae/units_mu" not in f:
                    continue
                units = f["eval/sae/units"][()]
                got = f["eval/sae/units_mu"][()]
                ok = keep[units]
                e = np.abs(got - mu[units])[ok].max() / max(np.abs(mu[units]).max(), 1e-12)
                check(e < 1e-5, "token SAE %s: units_mu within 1e-5 of numpy's token mean (relative %.2e)"
                      % (os.path.basename(p)[:40], e))
                n_mu += 1
        check(n_mu == 2, "two add-mu tasks (miclip, act_values) recorded mu: %d" % n_mu)


def main():
    part = sys.argv[1] if len(sys.argv) > 1 else "readings"
    tmp = os.path.abspath("readings_" + part)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    {"readings": test_readings, "addmu": test_addmu, "tokens": test_tokens}[part](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
