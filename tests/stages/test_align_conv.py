#!/usr/bin/python3
"""E_n trained "until theta_n converges" (align.stop: converged; issue 12 item 2), checked against
a PyTorch recomputation on the same rows, on the stage tests' fixture (random tiny models):

  - the held-out split: floor(heldout x usable images) rows (at least 2), ascending, disjoint
    from and together with the training rows exactly the usable images (valid, with a
    prediction); the same rows at 1, 2 and 4 ranks;
  - the held-out loss of the kept parameters: torch's symmetric InfoNCE (float64, the loss of
    tests/train/ref_train.py) over the held-out rows, batched as docs/stages.md states, equals
    the stored best held-out loss within 1e-5 relative;
  - the early-stopping rule replayed in Python on the stored held-out history: the best
    evaluation, the stop point (patience evaluations without a relative improvement of
    min_delta), the stop reason and the epoch of the kept parameters all agree;
  - the retrieval accuracies (held-out and training rows) recomputed from the stored W, the
    activations, the class texts and the predictions (images whose top two classes are within
    1e-5 of a tie may count either way);
  - 1, 2 and 4 ranks: every align store dataset and number bitwise equal;
  - the report's E_n convergence table (CSV) carries the stores' numbers.
Prints 'N passed, N failed'; exit 0 only when all pass."""
import csv
import glob
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from test_method import h5_datasets, write_config  # noqa: E402

VARIANTS = {"inout": "in+out", "in": "in", "out": "out"}
HELDOUT, PATIENCE, MIN_DELTA, BATCH, EVERY = 0.2, 3, 1e-3, 64, 2


def clip_loss(u, t):
    logits = u @ t.T
    lab = torch.arange(u.shape[0])
    return (F.cross_entropy(logits, lab) + F.cross_entropy(logits.T, lab)) / 2


def infonce(W, logs, acts, img, cls, labels, variant):
    """Algorithm 1's loss in float64 for one batch (the targets of L_out: the predicted class's
    text; of L_in: the CLIP image embedding), as tests/train/ref_train.py computes it."""
    u = F.normalize(torch.tensor(acts, dtype=torch.float64) @ torch.tensor(W, dtype=torch.float64).T, dim=1)
    s = torch.tensor(float(logs), dtype=torch.float64).exp()
    loss = torch.zeros((), dtype=torch.float64)
    if variant != "in":
        t = F.normalize(torch.tensor(cls, dtype=torch.float64)[torch.tensor(labels).long()], dim=1)
        loss = loss + clip_loss(s * u, t)
    if variant != "out":
        loss = loss + clip_loss(s * u, F.normalize(torch.tensor(img, dtype=torch.float64), dim=1))
    return loss.item()


def replay(losses, patience, min_delta):
    """The rule of docs/stages.md: (best index, index where patience ran out or None)."""
    best, bad = None, 0
    for i, l in enumerate(losses):
        if best is None or float(l) < float(losses[best]) * (1.0 - min_delta):
            best, bad = i, 0
        else:
            bad += 1
            if bad >= patience:
                return best, i
    return best, None


def retrieval(W, acts, cls, pred):
    z = acts.astype(np.float64) @ W.astype(np.float64).T
    c = cls.astype(np.float64) / np.linalg.norm(cls.astype(np.float64), axis=1, keepdims=True)
    s = z @ c.T
    hits = (np.argmax(s, axis=1) == pred)
    srt = np.sort(s, axis=1)
    scale = np.abs(srt[:, -1:]).clip(1e-12)
    near = ((srt[:, -1] - srt[:, -2]) / scale[:, 0]) < 1e-5
    return hits.mean(), near.sum()


def check_store(path, pt):
    name = os.path.basename(path)
    with h5py.File(path, "r") as f:
        variant = VARIANTS[name.split("-")[3]]
        W, logs = f["W"][()], float(f.attrs["log_logit_scale"])
        hist, acc_h, ep = (f["convergence/" + k][()] for k in ("heldout_loss", "heldout_retrieval", "epoch"))
        ho = f["convergence/heldout_images"][()]
        A = dict(f.attrs)
        ext = f.attrs["extract_store"]
        ext = ext.decode() if isinstance(ext, bytes) else ext
    with h5py.File(ext, "r") as e:
        valid, pred = e["images/valid"][()], e["target/predictions"][()]
        acts, img, cls = e["acts/2"][()], e["clip/image_embeds"][()], e["text/class_embeds"][()]
    usable = np.nonzero((valid != 0) & (pred >= 0))[0]
    nh = max(2, int(np.floor(HELDOUT * len(usable))))
    train = np.setdiff1d(usable, ho)
    check(len(ho) == nh == int(A["n_heldout_images"]) and np.all(np.diff(ho) > 0) and np.isin(ho, usable).all()
          and len(train) + len(ho) == len(usable) and int(A["n_samples"]) == len(train),
          "%s: %d held-out rows = floor(%.1f x %d usable), ascending, the rest (%d) trained on"
          % (name, len(ho), HELDOUT, len(usable), len(train)))
    # The stopping rule, replayed on the stored history.
    best, stop = replay(hist, PATIENCE, MIN_DELTA)
    reason = A["stop_reason"].decode() if isinstance(A["stop_reason"], bytes) else A["stop_reason"]
    want_reason = "converged" if stop is not None else "max_epochs"
    check(len(hist) == int(A["evaluations"]) and (stop is None or stop == len(hist) - 1) and reason == want_reason,
          "%s: the history stops where patience %d runs out (%d evaluations, %s)" % (name, PATIENCE, len(hist), reason))
    check(np.all(ep == EVERY * np.arange(1, len(ep) + 1)) and int(A["epochs_run"]) == ep[-1],
          "%s: one evaluation every %d epochs, %d epochs run" % (name, EVERY, ep[-1]))
    check(int(A["best_epoch"]) == ep[best] and float(A["heldout_loss"]) == float(hist[best])
          and float(A["heldout_retrieval"]) == float(acc_h[best]),
          "%s: the kept parameters are the best evaluation's (epoch %d of %d)" % (name, ep[best], ep[-1]))
    # The held-out loss of the kept parameters, batched as the stage does.
    B = min(BATCH, len(ho))
    nb = -(-len(ho) // B)
    tot = 0.0
    for k in range(nb):
        r = ho[k * len(ho) // nb:(k + 1) * len(ho) // nb]
        tot += infonce(W, logs, acts[r], img[r], cls, pred[r], variant) * len(r)
    ref = tot / len(ho)
    rel = abs(ref - float(A["heldout_loss"])) / max(abs(ref), 1e-3)
    check(rel < 1e-5, "%s: held-out loss %.6f equals torch's %.6f (rel %.1e)" % (name, A["heldout_loss"], ref, rel))
    for what, rows, got in (("held-out", ho, A["heldout_retrieval"]), ("training", train, A["train_retrieval"])):
        acc, near = retrieval(W, acts[rows], cls, pred[rows])
        check(abs(acc - float(got)) * len(rows) <= near + 1e-4,  # float32 attribute
              "%s: %s retrieval %.4f equals numpy's %.4f (%d near-ties)" % (name, what, got, acc, near))
    pt.append((name, reason, len(hist)))


def same_align(a, b):
    fa, fb = sorted(glob.glob(os.path.join(a, "align", "*.h5"))), sorted(glob.glob(os.path.join(b, "align", "*.h5")))
    if [os.path.basename(x) for x in fa] != [os.path.basename(x) for x in fb] or not fa:
        return False, "store lists differ"
    for x, y in zip(fa, fb):
        with h5py.File(x, "r") as f, h5py.File(y, "r") as g:
            if h5_datasets(f) != h5_datasets(g):
                return False, "dataset lists differ"
            for n in h5_datasets(f):
                if not np.array_equal(f[n][()], g[n][()]):
                    return False, "%s: %s differs" % (os.path.basename(x), n)
            for k, v in f.attrs.items():
                if k == "mpi_ranks":  # provenance: the rank count itself
                    continue
                if isinstance(v, (float, np.floating, int, np.integer)) and not (v == g.attrs[k] or (v != v and g.attrs[k] != g.attrs[k])):
                    return False, "%s: attribute %s differs" % (os.path.basename(x), k)
    return True, ""


def main():
    tmp = os.path.abspath("align_conv")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    fx = fixture.make(os.path.abspath("fixture"))
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        write_config(cfg, *fx, out, n=300, stages="[extract, align, report]")
        txt = open(cfg).read().replace('["2", "logits"]', '["2"]')
        a0 = txt.index("align: {")
        a1 = txt.index("\n", a0)
        txt = txt[:a0] + ("align: {batch_size: %d, lr: 0.01, stop: converged, heldout: %g, patience: %d, min_delta: %g, "
                          "eval_every: %d, max_epochs: 400, checkpoint_every: 5, variants: [in+out, in, out]}"
                          % (BATCH, HELDOUT, PATIENCE, MIN_DELTA, EVERY)) + txt[a1:]
        open(cfg, "w").write(txt)
        if n > 1:  # the same extraction (keys do not depend on the output folder)
            shutil.copytree(os.path.join(outs[1], "extract"), os.path.join(out, "extract"))
        r = fixture.mpirun(n, ["--quiet", "run", cfg], capture_output=True, text=True)
        check(r.returncode == 0, "extract + align (stop: converged) at %d rank(s) (%s)" % (n, r.stderr.strip()[-400:]))
        outs[n] = out
    stores = sorted(glob.glob(os.path.join(outs[1], "align", "*.h5")))
    check(len(stores) == 3, "three align stores (in+out, in, out)")
    done = []
    for p in stores:
        check_store(p, done)
    print("runs:", done)
    check(any(r == "converged" for _, r, _ in done), "at least one E_n stopped by the rule, not the cap")
    for n in (2, 4):
        ok, why = same_align(outs[1], outs[n])
        check(ok, "%d-rank align stores equal the 1-rank ones bitwise (split, history, W) %s" % (n, why))
    # The report's E_n convergence table: one CSV line per seed with the stores' numbers.
    rows = list(csv.DictReader(open(os.path.join(outs[1], "report", "tables", "en_convergence.csv"))))
    want = {}
    for p in stores:
        with h5py.File(p, "r") as f:
            want[VARIANTS[os.path.basename(p).split("-")[3]]] = (
                int(f.attrs["epochs_run"]), float(f.attrs["heldout_loss"]), float(f.attrs["train_retrieval"]))
    got = {r["variant"]: (int(r["epochs_run"]), float(r["heldout_loss"]), float(r["train_retrieval"])) for r in rows}
    check(got == want, "report/tables/en_convergence.csv holds the stores' numbers (%s)" % got)
    md = open(os.path.join(outs[1], "report", "README.md")).read()
    check("## E_n convergence" in md and "| 2 | in+out | 1 | 1 of 1 |" in md.replace("0 of 1", "1 of 1"),
          "the report's README has the E_n convergence table")
    left = glob.glob(os.path.join(outs[1], "align", "*.safetensors"))
    check(not left, "checkpoint, curve and held-out state removed once complete %s" % left)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
