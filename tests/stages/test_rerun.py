#!/usr/bin/python3
"""issue 16: a rerun of a complete job touches nothing and loads nothing.

A small job with every stage (extract, sae, align, localize, describe, baselines, intervene with
miclip, act_values, random and oracle units, scale and add, a dataset the target skips, and the
report with its figures) runs at 2 ranks on a generated tiny world with the trained tiny models.
Then:
  - a rerun exits 0, leaves every file under the output folder as it was (the same set of files,
    each with the same mtime, size and SHA-256) and prints no MICLIP_TEST_TRACE_LOADS line: no
    model weights or text encoder loaded, no model folder hashed (the first run printed such
    lines, so the trace works);
  - with report/README.md deleted, the next run writes it again with the same bytes (the report's
    inputs record saw the change and the report loaded its text encoder again), and changes no
    other file but the record.
Nothing here is timed (the rerun's speed is measured on the main job: docs/performance.md).

Prints 'N passed, N failed'; exit 0 only when all pass."""
import hashlib
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fixture  # noqa: E402
from fixture import check  # noqa: E402

SRC = fixture.SRC
VIT = os.path.join(SRC, "experiments", "world", "vit")
CLIP = os.path.join(SRC, "experiments", "world", "clip")


def write_config(path, world, out):
    with open(path, "w") as f:
        f.write(f"""name: rerun
output_dir: {out}
seeds: [0]
models: {{target: {VIT}, clip: {CLIP}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
  unseen: {{kind: world, root: {world}, split: unseen}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: textures, file: {world}/textures.txt}}
extract: {{layers: ["3", logits], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 64, epochs: 2}}
align: {{batch_size: 256, epochs: 2, lr: 0.15, variants: [in+out]}}
localize: {{tau: 3}}
describe: {{tau: 3}}
baselines: {{methods: [act_values, clip_dissect]}}
intervene: {{layer: "3", tau: 3, methods: [miclip, act_values, random, oracle], units: [neuron, sae],
             modes: [scale, add], betas: [0.0], add_beta: mu, add_betas: [1.0], datasets: [eval, unseen],
             batch_size: 8}}
report: {{figures: [loss_curves, sae_curves]}}
stages: [extract, sae, align, localize, describe, baselines, intervene, report]
""")


def snapshot(root):
    """{relative path: (mtime_ns, size, sha256)} of every file under root."""
    snap = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            with open(p, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            snap[os.path.relpath(p, root)] = (st.st_mtime_ns, st.st_size, digest)
    return snap


def changed(a, b):
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def traces(stderr):
    return [l for l in stderr.splitlines() if ": trace: " in l]


def main():
    tmp = os.path.abspath("stage_rerun")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if not (os.path.exists(os.path.join(VIT, "model.safetensors")) and os.path.exists(os.path.join(CLIP, "model.safetensors"))):
        check(False, "the trained tiny models exist under experiments/world")
        return fixture.summary()
    world = os.path.join(tmp, "world")
    subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "6",
                    "--val-per-class", "2", "--unseen-per-class", "2"], check=True)
    out, cfg = os.path.join(tmp, "out"), os.path.join(tmp, "rerun.yaml")
    write_config(cfg, world, out)
    # the file-hash cache of this test alone: the first run fills it, the rerun finds every model in it
    env = dict(os.environ, MICLIP_TEST_TRACE_LOADS="1", MICLIP_CACHE_DIR=os.path.join(tmp, "cache"))

    def run():
        return fixture.mpirun(2, ["run", cfg], env=env, capture_output=True, text=True)

    r = run()
    check(r.returncode == 0, "the first run exits 0 (%s)" % r.stderr.strip()[-600:])
    first = traces(r.stderr)
    check(any("trace: load model " in l for l in first) and any("trace: load text encoder " in l for l in first)
          and any("trace: hash " in l for l in first),
          "the first run traces its model loads and model-folder hashing (%d trace lines)" % len(first))
    check(os.path.exists(os.path.join(out, "report", "README.md")), "the first run wrote the report")
    before = snapshot(out)

    r = run()
    check(r.returncode == 0, "the rerun exits 0 (%s)" % r.stderr.strip()[-600:])
    after = snapshot(out)
    diff = changed(before, after)
    check(not diff, "the rerun changes no file under the output folder (%d files; changed or new: %s)" % (
        len(after), diff[:10]))
    t = traces(r.stderr)
    check(not t, "the rerun loads no model or text encoder and hashes no model folder (%s)" % t[:5])
    check("report: inputs unchanged" in r.stderr, "the report says it skipped")

    readme = os.path.join(out, "report", "README.md")
    os.remove(readme)
    r = run()
    check(r.returncode == 0, "the run after deleting report/README.md exits 0 (%s)" % r.stderr.strip()[-600:])
    again = snapshot(out)
    check(again.get("report/README.md", (0, 0, ""))[1:] == before["report/README.md"][1:],
          "report/README.md is written again with the same bytes")
    diff = changed(before, again)
    check(set(diff) <= {"report/README.md", "report/.inputs.json"},
          "no other file changes but the report's inputs record (%s)" % diff)
    t = traces(r.stderr)
    check(any("trace: load text encoder " in l for l in t) and not any("trace: load model " in l for l in t),
          "the report alone ran again: it loaded its text encoder, no stage loaded the target (%s)" % t[:5])
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
