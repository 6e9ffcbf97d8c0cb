#!/usr/bin/python3
"""The method stages end to end (issue 7: sae, align, localize, describe inside `miclip run`).

  test_method.py chain    extract -> sae -> align -> localize -> describe at 1, 2 and 4 ranks:
                          every store dataset, CSV table and the report bitwise identical; a rerun
                          of the complete pipeline is a no-op; the documented layout (h5py)
  test_method.py resume   SIGKILL of mpirun and every rank during align: the rerun resumes from the
                          checkpoint and E_n and its curves equal an uninterrupted run's bitwise;
                          SIGUSR1 during sae: exit 75, rerun resumes, SAE equals uninterrupted
  test_method.py math     localize/describe against numpy (float64) on the stored E_n, SAE decoder
                          and concept embeddings: similarities within 1e-5, top-tau lists equal
                          numpy's ranking (where numpy's scores are not tied within 1e-5); the
                          interactive queries print the same units/concepts
  test_method.py planted  a store with planted activations (one neuron per class, image embedding
                          = class text + noise): align + describe name every neuron by its class
  test_method.py world    the trained tiny models on a generated world: E_n (batch 256, lr 0.15,
                          3 epochs) trained on `logits`, seeds 0-8: averaged over the seeds (as
                          the paper reports every figure) at least 95% of the logit neurons are
                          described by their own class, for `in+out` (MiCLIP) and `out` (the
                          issue's target); every single seed at least 88%
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import hashlib
import re
import os
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402
from test_extract import descendants, kill_all  # noqa: E402,F401

from fixture import check  # noqa: E402


def write_config(path, world, vit, clip, out, n=300, stages="[extract, sae, align, localize, describe, report]",
                 align="", sae=""):
    with open(path, "w") as f:
        f.write(f"""name: t
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train, n_samples: {n}}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
extract: {{layers: ["2", "logits"], batch_size: 16}}
sae: {{layer: "2", features: 300, k: 8, batch_size: 64, epochs: 3, checkpoint_every: 5, aux_k: 32,
       dead_after: 500, init_samples: 256{sae}}}
align: {{batch_size: 256, stop: epochs, epochs: 5, checkpoint_every: 2, variants: [in+out, out]{align}}}
localize: {{tau: 3, sae_unit: atom}}   # the atom reading (numpy check below); test_readings.py checks algorithm2
describe: {{tau: 4}}
report: {{figures: []}}
stages: {stages}
""")


def run(np_, args, **kw):
    return fixture.mpirun(np_, ["--quiet"] + args, capture_output=True, text=True, **kw)


def h5_datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def outputs(out, ext):
    return sorted(os.path.relpath(p, out) for p in glob.glob(os.path.join(out, "**", "*." + ext), recursive=True))


def same_outputs(a, b):
    """Every store under a and b (same names: keys do not depend on the output folder or ranks)
    with bitwise equal datasets and keys; CSV tables and Markdown byte-equal."""
    ha, hb = outputs(a, "h5"), outputs(b, "h5")
    if ha != hb:
        return False, "store lists differ: %s vs %s" % (ha, hb)
    for rel in ha:
        with h5py.File(os.path.join(a, rel), "r") as x, h5py.File(os.path.join(b, rel), "r") as y:
            if h5_datasets(x) != h5_datasets(y):
                return False, "%s: dataset lists differ" % rel
            for n in h5_datasets(x):
                if not np.array_equal(x[n][()], y[n][()]):
                    return False, "%s: dataset %s differs" % (rel, n)
            for k in x.attrs:
                if k.endswith("_key") or k.startswith(("train_", "heldout_", "final_", "logit")):
                    if not (x.attrs[k] == y.attrs.get(k) or (np.isnan(x.attrs[k]) and np.isnan(y.attrs.get(k)))):
                        return False, "%s: attribute %s differs" % (rel, k)
    for ext in ("csv", "md"):
        fa, fb = outputs(a, ext), outputs(b, ext)
        if fa != fb:
            return False, "%s lists differ" % ext
        for rel in fa:
            if open(os.path.join(a, rel), "rb").read() != open(os.path.join(b, rel), "rb").read():
                return False, "%s differs" % rel
    return True, ""


def file_states(out):
    return {p: (os.stat(p).st_mtime_ns, os.stat(p).st_size)
            for p in glob.glob(os.path.join(out, "**", "*"), recursive=True) if os.path.isfile(p)}


def test_chain(tmp, fx):
    outs = {}
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        write_config(cfg, *fx, out)
        t0 = time.time()
        # At 2 ranks the activations are streamed from the store instead of preloaded.
        env = dict(os.environ, MICLIP_PRELOAD_MB="0") if n == 2 else None
        r = run(n, ["run", cfg], env=env)
        check(r.returncode == 0, "the chain at %d rank(s)%s exits 0 in %.1f s (%s)" % (
            n, " (streaming)" if env else "", time.time() - t0, r.stderr.strip()[-400:]))
        outs[n] = out
    for n in (2, 4):
        ok, why = same_outputs(outs[1], outs[n])
        check(ok, "%d-rank outputs equal the 1-rank outputs bitwise %s" % (n, why))
    # A rerun of the complete pipeline changes no file and says so; it reads no model file (their
    # digests come from the file-hash cache, which the first run filled) and loads no model.
    cfg = os.path.join(tmp, "ranks2.yaml")
    before = file_states(outs[2])
    env = dict(os.environ, MICLIP_LOG="debug")
    r = fixture.mpirun(2, ["run", cfg], capture_output=True, text=True, env=env)
    after = file_states(outs[2])
    check(r.returncode == 0 and before == after, "rerun of the complete chain exits 0 and touches no file")
    hashed = [l for l in r.stderr.splitlines() if "hashed " in l]
    check(not hashed, "the rerun hashes no model file (%s)" % (hashed[:1],))
    loaded = [l for l in r.stderr.splitlines() if "loading model" in l]
    check(not loaded, "the rerun loads no model (%s)" % (loaded[:1],))
    check(sorted(os.listdir(os.path.join(outs[2], "extract"))).count("train-s0.json") == 1,
          "extract writes the run manifest extract/train-s0.json")
    for st in ("sae", "align", "localize", "describe"):
        check(any(re.match(r"miclip(\[\d+\])?: %s" % st, l) and "complete, skipping" in l for l in r.stderr.splitlines()),
              "the rerun skips the %s stage" % st)
    test_layout(outs[1], fx)
    # Every token (extract.pool: all, sae.input: all): E_n on the CLS token, the SAE on all tokens;
    # preloaded at 1 rank, streamed at 2 ranks, bitwise equal.
    tok = {}
    for n in (1, 2):
        out = os.path.join(tmp, "tokens%d" % n)
        cfg = os.path.join(tmp, "tokens%d.yaml" % n)
        write_config(cfg, *fx, out, n=120, stages="[extract, sae, align]")
        txt = (open(cfg).read().replace('["2", "logits"], batch_size: 16', '["2"], batch_size: 16, pool: all')
               .replace('layer: "2",', 'layer: "2", input: all,').replace("variants: [in+out, out]", "variants: [in+out]"))
        open(cfg, "w").write(txt)
        env = dict(os.environ, MICLIP_PRELOAD_MB="0") if n == 2 else None
        r = run(n, ["run", cfg], env=env)
        check(r.returncode == 0, "token-level chain at %d rank(s) (%s)" % (n, r.stderr.strip()[-300:]))
        tok[n] = out
    ok, why = same_outputs(tok[1], tok[2])
    check(ok, "token-level SAE and CLS E_n: preloaded 1-rank equals streamed 2-rank bitwise %s" % why)
    s = one(tok[1], "sae")
    if s:
        with h5py.File(s, "r") as f, h5py.File(one(tok[1], "extract"), "r") as e:
            T = e["acts/2"].shape[1]
            check(int(f.attrs["n_train_samples"]) == int(f.attrs["n_train_images"]) * T and T > 1,
                  "sae.input: all trains on every token (%d per image)" % T)
    return outs[1]


def one(out, sub, pat="*"):
    f = sorted(glob.glob(os.path.join(out, sub, pat + ".h5")))
    return f[0] if len(f) == 1 else None


def test_layout(out, fx):
    sae = one(out, "sae")
    check(sae is not None, "one SAE store")
    with h5py.File(sae, "r") as f:
        m, n = f["W_enc"].shape
        check((m, n) == (300, 64) and f["W_dec_T"].shape == (m, n) and f["b_pre"].shape == (n,),
              "SAE weights W_enc/W_dec_T [300, 64], b_pre [64]")
        norms = np.linalg.norm(f["W_dec_T"][()], axis=1)
        check(np.allclose(norms, 1, atol=1e-5), "decoder atoms are unit norm")
        steps = int(f.attrs["steps"])
        check(f["curves/fvu"].shape == (steps,) and steps > 0, "one SAE curve entry per step (%d)" % steps)
        for k in ("train_fvu", "heldout_fvu", "train_l0", "heldout_l0", "dead_frac", "final_auxk", "sae_key", "extract_key"):
            check(k in f.attrs, "SAE attribute %s" % k)
        check(0 < f.attrs["heldout_l0"] <= 8, "held-out L0 within (0, k]")
        check(f["heldout/images"].shape[0] == int(f.attrs["n_heldout_images"]) > 0, "held-out images recorded")
        check(f.attrs["complete"] == 1, "SAE store complete")
    ckpts = glob.glob(os.path.join(out, "*", "*.safetensors"))
    check(not ckpts, "checkpoints removed once the stores are complete %s" % ckpts)
    al = sorted(glob.glob(os.path.join(out, "align", "*.h5")))
    check(len(al) == 4, "4 align stores (2 layers x 2 variants)")
    with h5py.File(one(out, "align", "align-s0-l2-inout-*"), "r") as f:
        check(f["W"].shape[1] == 64 and f["curves/loss"].shape[0] == int(f.attrs["steps"]) == 5,
              "E_n W [d, 64], 5 steps (300 images, batch 256, 5 epochs)")
        check(int(f.attrs["n_samples"]) == 300, "every valid image used")
    with h5py.File(one(out, "describe", "describe-s0-l2-inout-*"), "r") as f:
        check(f["classes/neuron/top_concepts"].shape == (64, 4), "describe: top_concepts [64 units, tau 4]")
        check(f["world/sae/top_concepts"].shape == (300, 4), "describe: SAE features on sae.layer")
    with h5py.File(one(out, "localize", "localize-s0-llogits-inout-*"), "r") as f:
        check("classes/sae" not in f and f["classes/neuron/top_units"].shape == (36, 3),
              "localize on logits: neurons only, [36 concepts, tau 3]")
    csv = os.path.join(out, "tables", "describe-s0-l2-inout-world-sae.csv")
    check(os.path.exists(csv) and len(open(csv).read().splitlines()) == 1 + 300 * 4, "describe CSV: one line per unit and rank")
    rep = os.path.join(out, "report", "descriptions.md")
    txt = open(rep).read() if os.path.exists(rep) else ""
    check("layer `logits`" in txt and "layer `2`" in txt and "Description accuracy" not in txt,
          "report lists every layer/variant (no accuracy: the random target's labels are not the classes)")


def test_resume(tmp, fx):
    # Extraction first, then align alone, long enough to be killed mid-way.
    base = os.path.join(tmp, "resume")
    cfg = os.path.join(tmp, "resume.yaml")
    write_config(cfg, *fx, base, stages="[extract, align]")
    txt = (open(cfg).read().replace("variants: [in+out, out]", "variants: [in+out]").replace('["2", "logits"]', '["2"]')
           .replace("stop: epochs, epochs: 5, checkpoint_every: 2",
                    "stop: converged, max_epochs: 1500, patience: 1000000, eval_every: 3, checkpoint_every: 7"))
    open(cfg, "w").write(txt)
    r = run(2, ["extract", cfg])
    check(r.returncode == 0, "extract for the resume test")
    ref = os.path.join(tmp, "resume_ref")
    cfg_ref = os.path.join(tmp, "resume_ref.yaml")
    open(cfg_ref, "w").write(txt.replace(base, ref))
    shutil.copytree(os.path.join(base, "extract"), os.path.join(ref, "extract"))
    r = run(1, ["align", cfg_ref])
    check(r.returncode == 0, "uninterrupted align")
    # The moment comes from the program's progress: SIGKILL as soon as align has written its
    # first checkpoint (every 7 steps of 1500 epochs), never after a wall-clock delay. E_n runs
    # under the convergence rule (never met: patience 1e6), so the held-out history and the best
    # parameters saved beside each checkpoint are resumed too.
    mid = False
    for attempt in range(3):
        shutil.rmtree(os.path.join(base, "align"), ignore_errors=True)
        p = subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "align", cfg],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_file(os.path.join(base, "align", "*.ckpt.safetensors"), p)
        kill_all(p)
        r = fixture.mpirun(4, ["align", cfg], capture_output=True, text=True)
        if r.returncode != 0:
            check(False, "align after SIGKILL exits 0: %s" % r.stderr[-400:])
            return
        if "resuming from the checkpoint at step" in r.stderr:
            mid = True
            print("resumed:", [l for l in r.stderr.splitlines() if "resuming" in l])
            break
    check(mid, "a SIGKILL landed mid-align and the rerun (at 4 ranks) resumed from the checkpoint")
    ok, why = same_outputs_sub(base, ref, "align")
    check(ok, "resumed E_n and curves equal the uninterrupted run's bitwise %s" % why)

    # SIGUSR1 during sae: exit 75, the rerun resumes and ends equal.
    cfg2 = os.path.join(tmp, "resume_sae.yaml")
    txt2 = txt.replace("stages: [extract, align]", "stages: [extract, sae]").replace("epochs: 3,", "epochs: 120,")
    open(cfg2, "w").write(txt2)
    refs = os.path.join(tmp, "sae_ref")
    open(cfg2 + ".ref", "w").write(txt2.replace(base, refs))
    shutil.copytree(os.path.join(base, "extract"), os.path.join(refs, "extract"))
    r = run(2, ["sae", cfg2 + ".ref"])
    check(r.returncode == 0, "uninterrupted sae")
    # SIGUSR1 once sae has written its first checkpoint (its own progress, not the clock).
    p = subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "sae", cfg2],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_file(os.path.join(base, "sae", "*.ckpt.safetensors"), p)
    p.send_signal(signal.SIGUSR1)
    try:
        _, err = p.communicate(timeout=30)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        kill_all(p)
        rc, err = None, "timeout"
    if rc == 0:
        print("note: sae finished before the signal; signal path not exercised")
    check(rc == 75 and "rerun to resume" in err, "SIGUSR1 during sae -> exit 75 with a resume hint (rc %s)" % rc)
    r = run(1, ["sae", cfg2])
    check(r.returncode == 0, "sae rerun after SIGUSR1 finishes")
    ok, why = same_outputs_sub(base, refs, "sae")
    check(ok, "SAE after SIGUSR1 + resume equals an uninterrupted run bitwise %s" % why)


def wait_for_file(pattern, proc, limit=300):
    """Polls until a file matching pattern exists (the program's own progress) or proc ends; the
    limit only guards against a hang."""
    t0 = time.time()
    while not glob.glob(pattern) and proc.poll() is None and time.time() - t0 < limit:
        time.sleep(0.02)


def same_outputs_sub(a, b, sub):
    fa = sorted(glob.glob(os.path.join(a, sub, "*.h5")))
    fb = sorted(glob.glob(os.path.join(b, sub, "*.h5")))
    if [os.path.basename(x) for x in fa] != [os.path.basename(x) for x in fb] or not fa:
        return False, "stores differ: %s vs %s" % (fa, fb)
    for x, y in zip(fa, fb):
        with h5py.File(x, "r") as f, h5py.File(y, "r") as g:
            if h5_datasets(f) != h5_datasets(g):
                return False, "dataset lists differ"
            for n in h5_datasets(f):
                if not np.array_equal(f[n][()], g[n][()]):
                    return False, "%s differs" % n
    return True, ""


def strings(f, base):
    return [s.decode() for s in bytes(f[base + "_bytes"][()]).split(b"\0")[:-1]]


def ranking_ok(stored_idx, stored_sc, ref_scores, tol=1e-5):
    """stored top list (indices, scores) against float64 reference scores of every candidate."""
    tau = len(stored_idx)
    if not np.allclose(stored_sc, ref_scores[stored_idx], atol=tol):
        return False
    if np.any(np.diff(stored_sc) > 0):
        return False
    order = sorted(range(len(ref_scores)), key=lambda j: (-ref_scores[j], j))[:tau]
    if list(order) == list(stored_idx):
        return True
    # Differences only among reference scores tied within tol.
    kth = ref_scores[order[-1]]
    return all(ref_scores[j] >= kth - tol for j in stored_idx)


def test_math(tmp, fx):
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "math.yaml")
    write_config(cfg, *fx, out)
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "chain for the numpy check (%s)" % r.stderr[-300:])
    concepts = {}
    for p in glob.glob(os.path.join(out, "concepts", "*.h5")):
        with h5py.File(p, "r") as f:
            concepts[f.attrs["set"]] = (strings(f, "names"), f["embeds"][()].astype(np.float64))
    with h5py.File(one(out, "sae"), "r") as f:
        wdec = f["W_dec_T"][()].astype(np.float64)

    def unit_emb(W, kind):
        U = W.T if kind == "neuron" else wdec @ W.T
        return U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)

    n_rows = n_bad = 0
    for st in ("describe", "localize"):
        for p in sorted(glob.glob(os.path.join(out, st, "*.h5"))):
            with h5py.File(p, "r") as f:
                with h5py.File(f.attrs["align_store"], "r") as a:
                    W = a["W"][()].astype(np.float64)
                for cset in ("classes", "world"):
                    names, E = concepts[cset]
                    check(strings(f, cset + "/concepts") == names, "%s %s: concept list stored" % (os.path.basename(p), cset))
                    C = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
                    for kind in ("neuron", "sae"):
                        g = "%s/%s" % (cset, kind)
                        if g not in f:
                            continue
                        S = unit_emb(W, kind) @ C.T  # [units, concepts]
                        if st == "describe":
                            idx, sc = f[g + "/top_concepts"][()], f[g + "/top_scores"][()]
                            if g + "/sim" in f:
                                err = np.abs(f[g + "/sim"][()] - S).max()
                                check(err < 1e-5, "%s %s: similarity matrix within 1e-5 of numpy (%.2e)" % (os.path.basename(p), g, err))
                            for u in range(S.shape[0]):
                                n_rows += 1
                                n_bad += not ranking_ok(idx[u], sc[u], S[u])
                        else:
                            idx, sc = f[g + "/top_units"][()], f[g + "/top_scores"][()]
                            for c in range(S.shape[1]):
                                n_rows += 1
                                n_bad += not ranking_ok(idx[c], sc[c], S[:, c])
    check(n_rows > 1000 and n_bad == 0, "top-tau lists equal numpy's ranking: %d of %d lists differ" % (n_bad, n_rows))

    # Interactive queries: the same answers as the stored tables.
    with h5py.File(one(out, "localize", "localize-s0-l2-inout-*"), "r") as f:
        names = strings(f, "classes/concepts")
        top = f["classes/sae/top_units"][()]
    r = run(2, ["localize", cfg, "--concept", names[5], "--layer", "2", "--units", "sae", "--tau", "3"])
    got = [int(l.split()[1]) for l in r.stdout.splitlines() if l.strip() and l.split()[0].isdigit()]
    check(r.returncode == 0 and got == list(top[5]), "miclip localize --concept '%s' prints the stored top units %s (%s)"
          % (names[5], list(top[5]), got))
    with h5py.File(one(out, "describe", "describe-s0-llogits-out-*"), "r") as f:
        names = strings(f, "world/concepts")
        top = [names[i] for i in f["world/neuron/top_concepts"][()][3]]
    r = run(1, ["describe", cfg, "--unit", "3", "--layer", "logits", "--variant", "out"])
    lines = r.stdout.splitlines()
    try:
        k = lines.index([l for l in lines if "of set 'world'" in l][0])
        got = [l.split(None, 2)[2] for l in lines[k + 2:k + 2 + 4]]
    except (IndexError, ValueError):
        got = []
    check(r.returncode == 0 and got == top, "miclip describe --unit 3 prints the stored top concepts %s (%s)" % (top, got))
    r = run(2, ["describe", cfg, "--unit", "99999", "--layer", "logits"])
    check(r.returncode != 0 and "out of range" in r.stderr and r.stderr.count("error") == 1,
          "an out-of-range unit is one error on every rank")
    r = run(1, ["localize", cfg, "--concept", "x", "--layer", "nope"])
    check(r.returncode != 0 and "nope" in r.stderr, "an unknown layer is an error naming it")


WORLD_SEEDS = list(range(9))


def test_world(tmp):
    src = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    models = os.path.join(src, "experiments", "world")
    vit, clip = os.path.join(models, "vit"), os.path.join(models, "clip")
    if not (os.path.exists(os.path.join(vit, "model.safetensors")) and os.path.exists(os.path.join(clip, "model.safetensors"))):
        check(False, "the trained tiny models exist under %s" % models)
        return
    world = os.path.join(tmp, "world")
    subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "40",
                    "--val-per-class", "1", "--unseen-per-class", "1"], check=True)
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "world.yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: world-logits
output_dir: {out}
seeds: [{", ".join(map(str, WORLD_SEEDS))}]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: [logits], batch_size: 64}}
align: {{batch_size: 256, stop: epochs, epochs: 3, lr: 0.15, variants: [out, in+out]}}
describe: {{tau: 3}}
report: {{figures: []}}
stages: [extract, align, describe, report]
""")
    t0 = time.time()
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "world chain runs (%.1f s) %s" % (time.time() - t0, r.stderr[-300:]))
    # Why this schedule and why a mean over seeds (docs/stages.md, "Measured on the tiny world"):
    # E_n(e_i) is read off unit vectors the trained ViT never emits. Early in training the update
    # is Hebbian (sum_i t_{pred_i} a_i^T; its columns name all 36 classes), so a few large Adam
    # steps that swamp the random init describe the neurons best; trained to convergence the
    # contrastive optimum leans on the logits' low-variance directions and the description drops
    # to 60-80%. What is left is one or two same-colour shape pairs per seed whose cosines differ
    # by 0.00-0.05: single seeds range over 33-36 of 36 (measured over seeds 0-8 on two generated
    # worlds), their mean over seeds 96-98%. E_n is deterministic for a seed and rank count.
    for v in ("out", "inout"):
        accs = []
        for seed in WORLD_SEEDS:
            d = one(out, "describe", "describe-s%d-llogits-%s-*" % (seed, v))
            if not d:
                check(False, "describe store for seed %d, %s" % (seed, v))
                continue
            with h5py.File(d, "r") as f:
                acc = float(f["classes/neuron"].attrs.get("description_accuracy", -1))
                top = f["classes/neuron/top_concepts"][()][:, 0]
            hits = int((top == np.arange(top.shape[0])).sum())
            print("description accuracy on logits, seed %d, %s: %.3f (%d/%d)" % (seed, v, acc, hits, top.shape[0]))
            check(abs(acc - hits / top.shape[0]) < 1e-9, "the stored accuracy is the fraction of neurons whose top "
                  "concept is their own class (seed %d, %s)" % (seed, v))
            check(acc >= 0.88, "E_n (%s, seed %d) on logits describes logit neurons by their own class: %.1f%% "
                  "(per-seed floor 88%%; chance 2.8%%)" % (v, seed, 100 * acc))
            accs.append(acc)
        mean = float(np.mean(accs)) if accs else 0.0
        print("description accuracy on logits, %s, mean over %d seeds: %.1f%% (std %.1f)"
              % (v, len(accs), 100 * mean, 100 * float(np.std(accs)) if accs else 0.0))
        check(len(accs) == len(WORLD_SEEDS) and mean >= 0.95, "E_n (%s) describes at least 95%% of the logit "
              "neurons by their own class, averaged over seeds %s: %.1f%%" % (v, WORLD_SEEDS, 100 * mean))
    rep = open(os.path.join(out, "report", "descriptions.md")).read()
    check("Description accuracy" in rep, "the report states the description accuracy")


def test_planted(tmp, fx):
    """A store whose activations are planted: image i of class c has a = 3 e_c + noise (36
    neurons, one per class), its CLIP image embedding is class c's text embedding plus noise, and
    the target predicts c. Then E_n(e_c) should point at class c's text: after align, describe
    must name every neuron by its own class (the problem has an exact solution)."""
    world, vit, clip = fx
    # The random CLIP of the fixture embeds all class prompts almost alike (mean cosine 0.96), so
    # the trained tiny CLIP gives the text geometry when it is there.
    src = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    trained = os.path.join(src, "experiments", "world", "clip")
    if os.path.exists(os.path.join(trained, "model.safetensors")):
        clip = trained
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "planted.yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: planted
output_dir: {out}
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
extract: {{layers: ["2"], batch_size: 32}}
align: {{batch_size: 64, stop: epochs, epochs: 30, lr: 0.001, variants: [in+out, out, in]}}
describe: {{tau: 3, units: [neuron]}}
stages: [extract, align, describe]
""")
    r = run(2, ["extract", cfg])
    check(r.returncode == 0, "extract for the planted store")
    st = one(out, "extract")
    rng = np.random.default_rng(0)
    with h5py.File(st, "r+") as f:
        labels = f["images/labels"][()]
        N, C = labels.shape[0], f["text/class_embeds"].shape[0]
        text = f["text/class_embeds"][()]
        a = np.zeros((N, C), np.float32)
        a[np.arange(N), labels] = 3.0
        a += rng.normal(0, 0.3, a.shape).astype(np.float32)
        del f["acts/2"]
        f.create_dataset("acts/2", data=a)
        scale = np.linalg.norm(text, axis=1).mean()
        f["clip/image_embeds"][...] = (text[labels] + rng.normal(0, 0.2 * scale / np.sqrt(text.shape[1]),
                                                                   (N, text.shape[1]))).astype(np.float32)
        f["target/predictions"][...] = labels
        # The store seals each dataset with its SHA-256 (docs/store.md): the planted ones get theirs.
        for name in ("acts/2", "clip/image_embeds", "target/predictions"):
            d = f[name]
            d.attrs["sha256"] = hashlib.sha256(d[()].astype(d.dtype.newbyteorder("<")).tobytes()).hexdigest()
    r = run(2, ["run", cfg])
    check(r.returncode == 0, "align and describe on the planted store (%s)" % r.stderr[-300:])
    for v in ("inout", "out", "in"):
        d = one(out, "describe", "describe-s0-l2-%s-*" % v)
        if not d:
            check(False, "describe store for %s" % v)
            continue
        with h5py.File(d, "r") as f:
            top = f["classes/neuron/top_concepts"][()][:, 0]
        hits = int((top == np.arange(C)).sum())
        check(hits == C, "planted %s: every neuron described by its own class (%d/%d)" % (v, hits, C))


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("method_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if what == "world":
        test_world(tmp)
    else:
        fx = fixture.make(os.path.abspath("fixture"))
        if what == "chain":
            test_chain(tmp, fx)
        elif what == "resume":
            test_resume(tmp, fx)
        elif what == "math":
            test_math(tmp, fx)
        elif what == "planted":
            test_planted(tmp, fx)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
