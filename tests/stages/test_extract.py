#!/usr/bin/python3
"""The extraction stage end to end (issue: distributed extraction into one parallel HDF5 store).

  test_extract.py ranks      1, 2 and 4 ranks give identical stores (every dataset bitwise)
  test_extract.py resume     SIGKILL after each store call of a small run (the store's test hook,
                             1 and 2 ranks): every rerun ends identical to an uninterrupted run;
                             a rerun of a complete store changes nothing
  test_extract.py signal     SIGUSR1 to mpirun: exit 75 within 20 s, store consistent, rerun
                             finishes identical
  test_extract.py bad        on_bad_image skip (counted, row flagged) and fail (path named, exit 1);
                             an unknown layer fails before any store is written
  test_extract.py layout     the documented layout, read with h5py (docs/extract.md)
  test_extract.py clip       a CLIP target classifies zero-shot with the prompted class texts
  test_extract.py damaged    a complete store missing a dataset: downstream exits 1 naming store,
                             dataset and rebuild command; extract rebuilds it identical
  test_extract.py shared     work done once (issue 17): 2 seeds extract eval/unseen once (the
                             two seeds' tasks run at once, one store each, both manifests name it),
                             per-seed training samples by default, one shared training store with
                             datasets.train.sample_seed: 0 (the same store as seed 0's own sample);
                             the sae stage of both seeds finds it; 1/2/4 ranks give identical stores

Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import hashlib
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

from fixture import check  # noqa: E402


def write_config(path, world, vit, clip, out, extra="", batch=4, n=60):
    with open(path, "w") as f:
        f.write(f"""name: t
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train, n_samples: {n}}}
extract: {{layers: ["1", "2", "logits"], batch_size: {batch}{extra}}}
stages: [extract]
""")


def store_of(out):
    files = glob.glob(os.path.join(out, "extract", "*.h5"))
    return files[0] if len(files) == 1 else None


def datasets(f):
    names = []
    f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
    return sorted(names)


def same_store(a, b):
    """Every dataset bitwise equal, and the content-defining attributes equal."""
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        if datasets(x) != datasets(y):
            return False, "dataset lists differ"
        for n in datasets(x):
            if not np.array_equal(x[n][()], y[n][()]):
                return False, "dataset %s differs" % n
        # (config_hash differs with output_dir; the extraction key must not)
        for k in ("extract_key", "complete", "n_bad_images"):
            if x.attrs.get(k) != y.attrs.get(k):
                return False, "attribute %s differs" % k
    return True, ""


def run(np_, cfg, **kw):
    return fixture.mpirun(np_, ["--quiet", "run", cfg], capture_output=True, text=True, **kw)


def test_ranks(tmp, fx):
    ref = None
    for n in (1, 2, 4):
        out = os.path.join(tmp, "ranks%d" % n)
        cfg = os.path.join(tmp, "ranks%d.yaml" % n)
        write_config(cfg, *fx, out)
        r = run(n, cfg)
        check(r.returncode == 0, "extract at %d rank(s) exits 0 (%s)" % (n, r.stderr.strip()[-300:]))
        st = store_of(out)
        check(st is not None, "one store at %d rank(s)" % n)
        if n == 1:
            ref = st
        elif st and ref:
            ok, why = same_store(ref, st)
            check(ok, "%d-rank store equals the 1-rank store %s" % (n, why))
    return ref


def descendants(pid):
    """pid and every process below it (from /proc), so a test can SIGKILL mpirun and all of
    its ranks at once: Open MPI puts the ranks in process groups of their own."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                ppid = int(open("/proc/%s/stat" % d).read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def kill_all(p):
    procs = descendants(p.pid)
    for q in procs:
        try:
            os.kill(q, signal.SIGKILL)
        except ProcessLookupError:
            pass
    p.wait()
    for q in procs:  # wait until every rank is really gone (its store lock with it)
        for _ in range(100):
            if not os.path.exists("/proc/%d" % q) or open("/proc/%d/stat" % q).read().rsplit(")", 1)[1].split()[0] == "Z":
                break
            time.sleep(0.05)


def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


# Attributes that say when, where and by how many ranks a store was written: the only ones a
# resumed store may differ in from an uninterrupted run's.
RUN_ATTRS = {"created_utc", "completed_utc", "host", "mpi_ranks", "slurm_job_id", "slurm_array_job_id",
             "slurm_array_task_id", "slurm_restart_count", "completed_slurm_job_id",
             "completed_slurm_restart_count"}


def identical_store(a, b):
    """Every dataset bitwise equal (dtype, shape, bytes) and every attribute of every object equal,
    except the run-specific ones (RUN_ATTRS)."""
    with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
        objs = {}
        for f, k in ((x, 0), (y, 1)):
            f.visititems(lambda n, o, k=k: objs.setdefault(n, [None, None]).__setitem__(k, o))
        if any(v[0] is None or v[1] is None for v in objs.values()):
            return False, "object lists differ: %s" % sorted(n for n, v in objs.items() if None in v)
        for n, (u, v) in sorted(objs.items()) + [("/", (x, y))]:
            if isinstance(u, h5py.Dataset):
                du, dv = u[()], v[()]
                if du.dtype != dv.dtype or du.shape != dv.shape or du.tobytes() != dv.tobytes():
                    return False, "dataset %s differs" % n
            ku, kv = set(u.attrs) - RUN_ATTRS, set(v.attrs) - RUN_ATTRS
            if ku != kv:
                return False, "attributes of %s differ: %s" % (n, sorted(ku ^ kv))
            for k in ku:
                if not np.array_equal(u.attrs[k], v.attrs[k]):
                    return False, "attribute %s of %s differs" % (k, n)
    return True, ""


def store_calls(stderr, rank=0):
    """The store calls a run made, from its MICLIP_TEST_STORE_TRACE lines (src/store/store_hook.c)."""
    tag = "miclip[%d] store call " % rank
    return [l[len(tag):] for l in stderr.splitlines() if l.startswith(tag)]


def test_resume(tmp, fx, ref):
    """Kill points chosen by progress, not by the clock: MICLIP_TEST_KILL_AT_STORE_CALL=N makes
    every rank SIGKILL itself right after its Nth store call (docs/store.md). For each chosen N
    of a small extraction at 1 and 2 ranks the killed run is rerun and the store
    must end identical to an uninterrupted run's, whether the kill landed inside the store's
    creation, between its creation and its layout mark (rebuilt), or between units (resumed).
    Kill points: a spread subset by default, every call with MICLIP_TEST_EXHAUSTIVE=1."""
    out = os.path.join(tmp, "resume")
    cfg = os.path.join(tmp, "resume.yaml")
    write_config(cfg, *fx, out, batch=4, n=8)
    txt = open(cfg).read().replace('["1", "2", "logits"]', '["1", "logits"]')
    open(cfg, "w").write(txt)
    env = dict(os.environ)
    env.pop("MICLIP_TEST_KILL_AT_STORE_CALL", None)
    for nranks in (1, 2):
        # The uninterrupted reference, traced: how many store calls, and which.
        shutil.rmtree(out, ignore_errors=True)
        r = fixture.mpirun(nranks, ["run", cfg], capture_output=True, text=True,
                           env=dict(env, MICLIP_TEST_STORE_TRACE="1"))
        check(r.returncode == 0, "uninterrupted run at %d rank(s) (%s)" % (nranks, r.stderr[-300:]))
        calls = store_calls(r.stderr)
        total = len(calls)
        layout = [i + 1 for i, c in enumerate(calls) if c.split(":", 1)[1].startswith(" mark_layout")]
        check(total > 20 and len(layout) == 1,
              "%d rank(s): the trace shows %d store calls, the layout marked at call %s" % (nranks, total, layout))
        if r.returncode != 0 or total < 1:
            return
        ref_store = os.path.join(tmp, "ref-np%d.h5" % nranks)
        shutil.copyfile(store_of(out), ref_store)
        # Every call with MICLIP_TEST_EXHAUSTIVE=1; by default a spread subset: the creation
        # (calls 1-3), the end of the layout window around the mark, every 3rd call (1 rank) or
        # every 5th (2 ranks), and the last call.
        m = layout[0] if layout else total // 2
        if os.environ.get("MICLIP_TEST_EXHAUSTIVE") == "1":
            points = list(range(1, total + 1))
        else:
            step = 3 if nranks == 1 else 5
            if os.environ.get("MICLIP_TEST_SPARSE") == "1":  # the sanitizer build (scripts/test.sh)
                step *= 3
            points = sorted(({1, 2, 3, m - 3, m - 1, m, m + 1, total} | set(range(2, total + 1, step))) &
                            set(range(1, total + 1)))
        bad, rebuilt, resumed, created_fresh = [], 0, 0, 0
        for n in points:
            shutil.rmtree(out, ignore_errors=True)
            k = fixture.mpirun(nranks, ["--quiet", "run", cfg], capture_output=True, text=True,
                               env=dict(env, MICLIP_TEST_KILL_AT_STORE_CALL=str(n)))
            if k.returncode == 0:
                bad.append("N=%d: the run was not killed" % n)
                continue
            r = fixture.mpirun(nranks, ["run", cfg], capture_output=True, text=True, env=env)
            if r.returncode != 0:
                lines = [l for l in r.stderr.splitlines() if "error" in l] or r.stderr.splitlines()[-3:]
                bad.append("N=%d (%s): rerun exit %d: %s" % (n, calls[n - 1], r.returncode, " | ".join(lines)[:300]))
                continue
            st = store_of(out)
            ok, why = identical_store(ref_store, st) if st else (False, "no store")
            if not ok:
                bad.append("N=%d (%s): %s" % (n, calls[n - 1], why))
            rebuilt += "rebuilding it from scratch" in r.stderr
            resumed += "resuming" in r.stderr
            created_fresh += n <= 2
        for b in bad[:8]:
            print("  " + b)
        check(not bad, "%d rank(s): killed after each of %d chosen store calls (of %d), every rerun exits 0 with a "
              "store identical to the uninterrupted run's (%d failed)" % (nranks, len(points), total, len(bad)))
        check(rebuilt > 0 and resumed > 0,
              "%d rank(s): some reruns rebuilt a store killed before its layout mark (%d), some resumed from "
              "marked units (%d)" % (nranks, rebuilt, resumed))
        # Past the last call: the hook never fires and the run completes. (The sanitizer build once
        # counted one call fewer on rank 0 in the traced run than the other rank made; every rank
        # is killed at its own Nth call, so the point is taken well past any rank's last call.)
        shutil.rmtree(out, ignore_errors=True)
        r = fixture.mpirun(nranks, ["--quiet", "run", cfg], capture_output=True, text=True,
                           env=dict(env, MICLIP_TEST_KILL_AT_STORE_CALL=str(2 * total)))
        check(r.returncode == 0, "%d rank(s): N = %d (past the last call) is not killed" % (nranks, 2 * total))
    # A complete store is left untouched by a rerun, which exits 0 at once.
    st = store_of(out)
    before = sha(st)
    r = run(2, cfg)
    check(r.returncode == 0 and sha(st) == before, "rerun of a complete store exits 0 and changes nothing")
    r = fixture.mpirun(1, ["run", cfg], capture_output=True, text=True)
    check("complete, skipping" in r.stderr, "the rerun says the store is complete")


def test_damaged(tmp, fx):
    """A complete store missing a dataset contradicts its own completion record. A downstream stage
    that reads it exits 1 with one line naming the store, the missing dataset and the command that
    rebuilds it; a rerun of extraction itself rebuilds it (it is no longer trusted as complete) and
    ends with a store identical to the original; the downstream stage then runs."""
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "c.yaml")
    write_config(cfg, *fx, out, batch=4, n=8)
    txt = open(cfg).read().replace('["1", "2", "logits"]', '["1"]')
    txt = txt.replace("stages: [extract]", "stages: [extract, sae]\nsae: {layer: \"1\", features: 32, k: 4, batch_size: 8, epochs: 1, init_samples: 8}")
    open(cfg, "w").write(txt)
    r = run(1, cfg)
    check(r.returncode == 0, "extract + sae run (%s)" % r.stderr[-300:])
    st = store_of(out)
    ref = os.path.join(tmp, "ref.h5")
    shutil.copyfile(st, ref)
    for name in ("target/predictions", "acts/1", "images/labels"):  # (sae never reads images/labels)
        shutil.copyfile(ref, st)
        shutil.rmtree(os.path.join(out, "sae"), ignore_errors=True)
        with h5py.File(st, "r+") as f:
            del f[name]
        for np_ in (1, 2):
            r = fixture.mpirun(np_, ["--quiet", "sae", cfg], capture_output=True, text=True)
            errs = [l for l in r.stderr.splitlines() if "error" in l]
            msg = errs[0] if errs else r.stderr[-300:]
            check(r.returncode == 1, "sae on a complete extraction store without /%s exits 1 at %d rank(s) (rc %d: %s)"
                  % (name, np_, r.returncode, msg))
            check(len(errs) == 1 and st in msg and "'/%s'" % name in msg and "damaged" in msg and
                  "miclip extract CONFIG" in msg, "one line names the store, the dataset and the rebuild command: %s" % msg)
    # Extraction itself rebuilds the damaged store (no longer complete) and ends identical.
    r = fixture.mpirun(2, ["extract", cfg], capture_output=True, text=True)
    check(r.returncode == 0 and "rebuilding it from scratch" in r.stderr and "'/%s'" % name in r.stderr,
          "extract rebuilds the damaged store, saying why (rc %d: %s)" % (r.returncode, r.stderr[-300:]))
    ok, why = identical_store(ref, st)
    check(ok, "the rebuilt store is identical to the original %s" % why)
    r = fixture.mpirun(1, ["--quiet", "sae", cfg], capture_output=True, text=True)
    check(r.returncode == 0, "sae then runs (%s)" % r.stderr[-300:])
    # A store written before the layout record existed (no layout_datasets) is read as before.
    with h5py.File(st, "r+") as f:
        del f.attrs["layout_datasets"]
        del f["target/predictions"]
    r = fixture.mpirun(1, ["--quiet", "sae", cfg], capture_output=True, text=True)
    check(r.returncode == 1 and "target/predictions" in r.stderr,
          "without a layout record a missing dataset is still an error naming it, exit 1 (rc %d)" % r.returncode)


def test_signal(tmp, fx):
    out = os.path.join(tmp, "signal")
    cfg = os.path.join(tmp, "signal.yaml")
    write_config(cfg, *fx, out, batch=1, n=200)
    p = subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "run", cfg],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # Signal as soon as the store exists (its datasets are made before the first unit), so the
    # signal lands mid-run even on an idle machine.
    for _ in range(600):
        if glob.glob(os.path.join(out, "extract", "*.h5")) or p.poll() is not None:
            break
        time.sleep(0.02)
    t0 = time.time()
    p.send_signal(signal.SIGUSR1)  # mpirun forwards SIGUSR1 to the ranks
    try:
        _, err = p.communicate(timeout=20)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        rc, err = None, "timeout"
    took = time.time() - t0
    if rc == 0:
        print("note: the run finished before the signal arrived; signal path not exercised")
    check(rc == 75, "SIGUSR1 -> exit 75 (got %s) within 20 s (%.1f s)" % (rc, took))
    if rc == 75:
        check("rerun to resume" in err, "the interruption message says how to resume")
    r = run(2, cfg)
    check(r.returncode == 0, "rerun after SIGUSR1 finishes")
    out2 = os.path.join(tmp, "signal_ref")
    cfg2 = os.path.join(tmp, "signal_ref.yaml")
    write_config(cfg2, *fx, out2, batch=1, n=200)
    run(1, cfg2)
    ok, why = same_store(store_of(out), store_of(out2))
    check(ok, "store after SIGUSR1 + rerun equals an uninterrupted run's %s" % why)


def test_bad(tmp, fx):
    world, vit, clip = fx
    bad_world = os.path.join(tmp, "badworld")
    shutil.rmtree(bad_world, ignore_errors=True)
    shutil.copytree(world, bad_world)
    cls = sorted(os.listdir(os.path.join(bad_world, "train")))
    cls = [c for c in cls if os.path.isdir(os.path.join(bad_world, "train", c))][0]
    bad_path = os.path.join(bad_world, "train", cls, "00000_corrupt.png")
    with open(bad_path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG signature and garbage
    for mode in ("skip", "fail"):
        out = os.path.join(tmp, "bad_" + mode)
        cfg = os.path.join(tmp, "bad_%s.yaml" % mode)
        with open(cfg, "w") as f:
            f.write(f"""name: t
output_dir: {out}
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {bad_world}, split: train}}
extract: {{layers: ["1"], batch_size: 4, on_bad_image: {mode}}}
stages: [extract]
""")
        r = run(2, cfg)
        if mode == "skip":
            check(r.returncode == 0, "on_bad_image: skip exits 0")
            st = store_of(out)
            with h5py.File(st, "r") as f:
                check(int(f.attrs["n_bad_images"]) == 1, "the skipped image is counted in the provenance")
                paths = bytes(f["images/paths_bytes"][()]).split(b"\0")[:-1]
                i = [k for k, p in enumerate(paths) if p.decode().endswith("00000_corrupt.png")][0]
                check(f["images/valid"][i] == 0 and not f["acts/1"][i].any(), "its row is flagged invalid and zero")
                check(int(f["images/valid"][()].sum()) == len(paths) - 1, "every other row is valid")
            check(bad_path in r.stderr, "the skip warning names the file")
        else:
            check(r.returncode == 1, "on_bad_image: fail exits 1 on every rank (rc %d)" % r.returncode)
            check(bad_path in r.stderr, "the error names the file")
            check(r.stderr.count("error:") == 1, "the error is printed once")
    out = os.path.join(tmp, "badlayer")
    cfg = os.path.join(tmp, "badlayer.yaml")
    write_config(cfg, *fx, out)
    txt = open(cfg).read().replace('["1", "2", "logits"]', '["1", "nonexistent.layer"]')
    open(cfg, "w").write(txt)
    t0 = time.time()
    r = run(2, cfg)
    check(r.returncode == 1 and "nonexistent.layer" in r.stderr, "an unknown layer is an error naming it")
    check(not os.path.exists(os.path.join(out, "extract")) or not glob.glob(os.path.join(out, "extract", "*.h5")),
          "an unknown layer fails before any store is written (%.1f s)" % (time.time() - t0))


def test_layout(tmp, fx, ref):
    world = fx[0]
    with h5py.File(ref, "r") as f:
        check(f.attrs["miclip_store"] == "miclip-store/1", "store id attribute")
        N = f["images/labels"].shape[0]
        check(N == 60, "60 sampled images")
        check(f["acts/1"].shape == (N, 64) and f["acts/1"].dtype == np.float32, "acts/1 is [N, D] float32 (CLS)")
        check(f["acts/logits"].shape[0] == N and f["target/output"].shape == f["acts/logits"].shape,
              "acts/logits equals the target output's shape")
        check(np.array_equal(f["acts/logits"][()], f["target/output"][()]), "logits hook equals the output")
        check(np.array_equal(f["target/predictions"][()], np.argmax(f["target/output"][()], axis=1)),
              "predictions are the argmax of the output")
        names = bytes(f["classes/names_bytes"][()]).split(b"\0")[:-1]
        classes = [l.strip().replace("_", " ") for l in open(os.path.join(world, "classes.txt")) if l.strip()]
        check([n.decode() for n in names] == classes, "class names in ImageFolder order")
        check(f["text/class_embeds"].shape == (len(classes), f["clip/image_embeds"].shape[1]),
              "class text embeddings [C, proj]")
        paths = [p.decode() for p in bytes(f["images/paths_bytes"][()]).split(b"\0")[:-1]]
        labels = f["images/labels"][()]
        ok = all(classes[labels[i]].replace(" ", "_") == os.path.basename(os.path.dirname(p)) for i, p in enumerate(paths))
        check(ok, "labels match the class folders")
        check(paths == sorted(paths), "images in sorted path order")
        check(int(f["_done"][()].sum()) == f["_done"].shape[0] and f.attrs["complete"] == 1, "every unit marked, store complete")
        for k in ("config_hash", "code_version", "seed", "extract_key", "target_model", "clip_model", "config"):
            check(k in f.attrs, "provenance attribute %s" % k)


def test_clip_target(tmp, fx):
    """A CLIP folder as the target: it classifies zero-shot, the prediction being the class whose
    prompted text embedding has the highest cosine with the image embedding (first on ties)."""
    world, _vit, clip = fx
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "c.yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: t
output_dir: {out}
models: {{target: {clip}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train, n_samples: 40}}
extract: {{layers: ["1", "image_embeds"], batch_size: 8}}
stages: [extract]
""")
    r = run(2, cfg)
    check(r.returncode == 0, "extract with a CLIP target exits 0 (%s)" % r.stderr.strip()[-300:])
    with h5py.File(store_of(out), "r") as f:
        img = f["clip/image_embeds"][()].astype(np.float64)
        check(np.array_equal(f["target/output"][()], f["clip/image_embeds"][()]),
              "a CLIP target's output is its image embedding")
        txt = f["text/class_embeds"][()].astype(np.float64)
        sims = (img / np.linalg.norm(img, axis=1, keepdims=True)) @ (txt / np.linalg.norm(txt, axis=1, keepdims=True)).T
        want = np.argmax(sims, axis=1)
        got = f["target/predictions"][()]
        # float32 cosines in C vs float64 here: only near-ties may differ
        top2 = np.sort(sims, axis=1)[:, -2:]
        clear = (top2[:, 1] - top2[:, 0]) > 1e-5
        check(np.array_equal(got[clear], want[clear]) and clear.sum() > 0,
              "zero-shot predictions equal numpy's argmax of cosines (%d clear cases)" % clear.sum())
        check(np.array_equal(f["acts/image_embeds"][()], f["target/output"][()]), "the image_embeds hook equals the output")


def write_shared_config(path, world, vit, clip, out, sample=""):
    with open(path, "w") as f:
        f.write(f"""name: t
output_dir: {out}
seeds: [0, 1]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train, n_samples: 40{sample}}}
  eval: {{kind: world, root: {world}, split: val}}
  unseen: {{kind: world, root: {world}, split: unseen}}
extract: {{layers: ["2", "logits"], batch_size: 4}}
sae: {{layer: "2", features: 48, k: 4, batch_size: 32, epochs: 1}}
intervene: {{layer: "2", tau: 2, datasets: [eval, unseen]}}
stages: [extract, sae, intervene]
""")


def manifest_store(out, split, seed):
    import json
    with open(os.path.join(out, "extract", "%s-s%d.json" % (split, seed))) as f:
        return json.load(f)["store"]


def complete(path):
    with h5py.File(path, "r") as f:
        return bool(f.attrs.get("complete"))


def plan_counts(cfg):
    import json
    r = subprocess.run([fixture.MICLIP, "--quiet", "plan", cfg, "--json"], capture_output=True, text=True)
    if r.returncode:
        return None
    p = json.loads(r.stdout)
    return sum(s["count"] for s in p["stores"] if s["stage"] == "extract")


def test_shared(tmp, fx):
    # Default (per-seed training samples): the two seeds' tasks at once, as a Slurm array would.
    out = os.path.join(tmp, "perseed")
    cfg = os.path.join(tmp, "perseed.yaml")
    write_shared_config(cfg, *fx, out)
    ps = [subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", str(n), fixture.MICLIP, "--quiet", "extract",
                            cfg, "--task", str(t)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
          for t, n in ((0, 1), (1, 2))]
    res = [p.communicate() + (p.returncode,) for p in ps]
    # miclip's own lines, not mpiexec's trailer, say why a task failed
    why = [[ln for ln in r[1].splitlines() if ln.startswith("miclip")][-3:] for r in res]
    check(all(r[2] == 0 for r in res), "two seeds' extract tasks at once exit 0 (%s)" % why)
    names = sorted(os.path.basename(x).rsplit("-", 1)[0] for x in glob.glob(os.path.join(out, "extract", "*.h5")))
    check(names == ["eval", "train-s0", "train-s1", "unseen"],
          "per-seed samples: 4 stores (one eval, one unseen, a train store per seed): %s" % names)
    for split in ("eval", "unseen"):
        a, b = manifest_store(out, split, 0), manifest_store(out, split, 1)
        check(a == b and os.path.exists(a) and complete(a), "both seeds' %s manifests name one complete store" % split)
    check(manifest_store(out, "train", 0) != manifest_store(out, "train", 1), "each seed its own training sample")
    with h5py.File(manifest_store(out, "eval", 0), "r") as f:
        check("seed" not in f.attrs, "a whole-split store records no seed")
    perseed_train0 = manifest_store(out, "train", 0)
    check(plan_counts(cfg) == 4, "miclip plan counts the 4 extraction stores (%s)" % plan_counts(cfg))

    # The opt-in: one training sample for every seed, at 1, 2 and 4 ranks.
    ref = None
    for n in (1, 2, 4):
        out = os.path.join(tmp, "shared%d" % n)
        cfg = os.path.join(tmp, "shared%d.yaml" % n)
        write_shared_config(cfg, *fx, out, ", sample_seed: 0")
        r = fixture.mpirun(n, ["--quiet", "extract", cfg], capture_output=True, text=True)
        check(r.returncode == 0, "shared sample: extract of both seeds at %d rank(s) exits 0 (%s)" % (n, r.stderr[-300:]))
        stores = sorted(glob.glob(os.path.join(out, "extract", "*.h5")))
        names = [os.path.basename(x).rsplit("-", 1)[0] for x in stores]
        check(names == ["eval", "train-s0", "unseen"], "shared sample at %d rank(s): 3 stores %s" % (n, names))
        if n == 1:
            check(plan_counts(cfg) == 3, "miclip plan counts the 3 extraction stores (%s)" % plan_counts(cfg))
        for split in ("train", "eval", "unseen"):
            check(manifest_store(out, split, 0) == manifest_store(out, split, 1),
                  "%d rank(s): both seeds' %s manifests name one store" % (n, split))
        if n == 1:
            ref = out
            a, b = manifest_store(out, "train", 0), perseed_train0
            with h5py.File(a, "r") as x, h5py.File(b, "r") as y:
                check(x.attrs["extract_key"] == y.attrs["extract_key"] and os.path.basename(a) == os.path.basename(b),
                      "the shared sample of sample_seed 0 is seed 0's own sample: same key and name")
            # downstream: the sae stage of both seeds finds the shared store
            r = fixture.mpirun(1, ["--quiet", "sae", cfg], capture_output=True, text=True)
            check(r.returncode == 0, "the sae stage of both seeds runs on the shared store (%s)" % r.stderr[-400:])
            saes = glob.glob(os.path.join(out, "sae", "*.h5"))
            check(len(saes) == 2, "two SAE stores, one per seed (%d)" % len(saes))
        else:
            for split in ("train", "eval", "unseen"):
                a, b = manifest_store(ref, split, 0), manifest_store(out, split, 0)
                ok, why = same_store(a, b)
                check(ok and os.path.basename(a) == os.path.basename(b),
                      "%s store at %d ranks equals the 1-rank one %s" % (split, n, why))


def stopped_child(root_pid):
    """The pid of a stopped (state T) process under root_pid, or None."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    st = f.read().rsplit(")", 1)[1].split()
                kids.setdefault(int(st[1]), []).append((int(d), st[0]))
            except (OSError, IndexError):
                pass
    todo = [root_pid]
    while todo:
        for pid, state in kids.get(todo.pop(), []):
            if state == "T":
                return pid
            todo.append(pid)
    return None


def test_shared_race(tmp, fx):
    # Seed 1's task probes the shared eval store (absent), then stops right there (a hook at that
    # point of its progress). Seed 0's task starts meanwhile; once it has either finished or said
    # it waits for the store, seed 1's goes on. The writer locks before it probes, so seed 0's
    # finds the store locked and waits for it: neither may fail ("already exists") or make the
    # store twice. (Before the lock came first, seed 0's wrote it, and seed 1's then failed.)
    out = os.path.join(tmp, "race")
    cfg = os.path.join(tmp, "race.yaml")
    write_shared_config(cfg, *fx, out)
    env = dict(os.environ, MICLIP_TEST_STOP_AFTER_RESUME_PROBE="/eval-")
    b = subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", "1", fixture.MICLIP, "--quiet", "extract", cfg,
                          "--task", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    pid = None
    while b.poll() is None and pid is None:  # it stops once its own extract reaches the eval store
        pid = stopped_child(b.pid)
        time.sleep(0.1)
    check(pid is not None, "seed 1's task stops after probing the eval store (the test hook)")
    if pid is None:
        b.communicate()
        return
    a_log = os.path.join(tmp, "race-a.log")
    with open(a_log, "w") as log:
        a = subprocess.Popen([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "extract", cfg, "--task",
                              "0"], stdout=subprocess.DEVNULL, stderr=log, text=True)
        waiting = False
        while a.poll() is None and not waiting:
            with open(a_log) as f:
                waiting = "being written by another run; waiting" in f.read()
            time.sleep(0.1)
        os.kill(pid, signal.SIGCONT)
        a.wait()
    bo, be = b.communicate()
    with open(a_log) as f:
        ae = f.read()
    why = lambda e: [ln for ln in e.splitlines() if ln.startswith("miclip") and "error" in ln][-3:]
    check(waiting, "seed 0's task waits for the eval store seed 1's holds (locked before it was probed)")
    check(a.returncode == 0, "seed 0's task exits 0 %s" % why(ae))
    check(b.returncode == 0, "seed 1's task, continued, exits 0 %s" % why(be))
    for split in ("eval", "unseen"):
        x, y = manifest_store(out, split, 0), manifest_store(out, split, 1)
        check(x == y and complete(x), "both seeds' %s manifests name one complete store" % split)
    stores = sorted(os.path.basename(x).rsplit("-", 1)[0] for x in glob.glob(os.path.join(out, "extract", "*.h5")))
    check(stores == ["eval", "train-s0", "train-s1", "unseen"], "no store left half-made or twice: %s" % stores)
    ref = os.path.join(tmp, "perseed")
    for split in ("eval", "unseen"):
        ok, why_ = same_store(manifest_store(ref, split, 0), manifest_store(out, split, 0))
        check(ok, "the raced %s store equals the one made without a race %s" % (split, why_))


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("extract_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    fx = fixture.make(os.path.abspath("fixture"))
    if what == "ranks":
        test_ranks(tmp, fx)
    elif what == "layout":
        out = os.path.join(tmp, "out")
        cfg = os.path.join(tmp, "c.yaml")
        write_config(cfg, *fx, out)
        check(run(1, cfg).returncode == 0, "extract runs")
        test_layout(tmp, fx, store_of(out))
    elif what == "resume":
        test_resume(tmp, fx, None)
    elif what == "signal":
        test_signal(tmp, fx)
    elif what == "bad":
        test_bad(tmp, fx)
    elif what == "clip":
        test_clip_target(tmp, fx)
    elif what == "damaged":
        test_damaged(tmp, fx)
    elif what == "shared":
        test_shared(tmp, fx)
        test_shared_race(tmp, fx)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
