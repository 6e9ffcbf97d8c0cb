#!/usr/bin/python3
"""Pre-flight (issue 16): every mistake a config can carry is caught before any work.

  test_preflight.py kinds  one config per kind of mistake (model folders: no config.json, bad
                           config.json, no/garbled model.safetensors, no preprocessor config, no
                           tokenizer file, models.clip not CLIP; layer names for extract, sae and
                           intervene; dataset root, split, class folders, label file; concept
                           file; output folder; disk space): `miclip run` exits 1 on every rank
                           with one error line naming the config key, and no store (.h5) is
                           written; `miclip config` reports the same. A missing eval folder fails
                           before the train set is extracted. Only what the stages to run need is
                           checked. MICLIP_DISK_CHECK=warn and MICLIP_PREFLIGHT=off are honoured.
  test_preflight.py many   several mistakes at once: all listed (rank 0, once), the first in the
                           error line with the count, exit 1 on every rank, at 1 and 2 ranks.
  test_preflight.py good   the committed example configs and experiments/world.yaml (their data
                           made in a mirror of the repository's layout) pass `miclip config` with
                           "pre-flight: ok (N checks)"; imagenet-vit.yaml (absolute paths absent
                           here) lists every missing model, dataset and concept file.
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402

WORLD_MODELS = os.path.join(SRC, "experiments", "world")
VIT, CLIP = os.path.join(WORLD_MODELS, "vit"), os.path.join(WORLD_MODELS, "clip")


def make_world(path):
    if not os.path.exists(os.path.join(path, "classes.txt")):
        fixture.sh([fixture.MICLIP, "--quiet", "world", "make", "--out", path, "--seed", "3", "--per-class", "2",
                    "--val-per-class", "1", "--unseen-per-class", "1", "--hard-per-class", "1"])  # world.yaml's eval: hard
    return path


def write_config(path, out, world, target=VIT, clip=CLIP, layers='["2", logits]', stages="[extract, sae, align, localize, intervene]",
                 train=None, evalset=None, concepts=None, extra=""):
    train = train or "{kind: world, root: %s, split: train}" % world
    evalset = evalset or "{kind: world, root: %s, split: val}" % world
    concepts = concepts or os.path.join(WORLD_MODELS, "textures.txt")
    with open(path, "w") as f:
        f.write(f"""name: pf
output_dir: {out}
models: {{target: {target}, clip: {clip}}}
datasets:
  train: {train}
  eval: {evalset}
concepts:
  - {{name: classes, source: classes}}
  - {{name: textures, file: {concepts}}}
extract: {{layers: {layers}, batch_size: 16}}
sae: {{features: 32, k: 4, batch_size: 16}}
align: {{batch_size: 32}}
intervene: {{datasets: [eval]}}
stages: {stages}
{extra}""")
    return path


def bad_run(np_, args, env=None):
    """Every rank under sh, to see each rank's exit code: (stdout, stderr, [codes])."""
    cmd = "%s --quiet %s; echo rank-exit=$? >&2" % (fixture.MICLIP, " ".join(args))
    r = subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", str(np_), "sh", "-c", cmd], capture_output=True,
                       text=True, env=env, timeout=300)
    codes = [l for l in r.stderr.splitlines() if l.startswith("rank-exit=")]
    return r.stdout, r.stderr, codes


def error_lines(text):
    return [l for l in text.splitlines() if "error:" in l]


def no_store(out):
    return not glob.glob(os.path.join(out, "**", "*.h5"), recursive=True)


def expect_caught(np_, cfg, out, want, what, args=None, env=None):
    """`miclip run CFG` (or args) fails at once on every rank with one error line holding every
    string of want, and writes no store; `miclip config CFG` says the same."""
    shutil.rmtree(out, ignore_errors=True)
    _, err, codes = bad_run(np_, args or ["run", cfg], env)
    errs = error_lines(err)
    check(len(errs) == 1 and all(w in errs[0] for w in want) and len(codes) == np_ and
          all(c == "rank-exit=1" for c in codes),
          "%s at %d rank(s): one error line naming %s, exit 1 on every rank (%s; %s)" % (what, np_, want, errs, codes))
    check(no_store(out), "%s: no store written" % what)
    if args is None:
        r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True, env=env)
        check(r.returncode == 1 and all(w in r.stderr for w in want) and "pre-flight: ok" not in r.stdout,
              "%s: `miclip config` reports it (rc %d: %s)" % (what, r.returncode, error_lines(r.stderr)))


def model_copy(tmp, name, src, edit):
    d = os.path.join(tmp, "models", name)
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(src, d)
    edit(d)
    return d


def test_kinds(tmp):
    world = make_world(os.path.join(tmp, "world"))
    out = os.path.join(tmp, "out")
    cfg = os.path.join(tmp, "c.yaml")
    rm = lambda f: (lambda d: os.unlink(os.path.join(d, f)))  # noqa: E731
    put = lambda f, data: (lambda d: open(os.path.join(d, f), "wb").write(data))  # noqa: E731
    cases = [
        ("models.clip without config.json", dict(clip=model_copy(tmp, "noconf", CLIP, rm("config.json"))),
         ["models.clip: ", "noconf: no config.json"]),
        ("models.target with a malformed config.json", dict(target=model_copy(tmp, "badjson", VIT, put("config.json", b"{\"a\": "))),
         ["models.target: ", "badjson/config.json"]),
        ("models.target without weights", dict(target=model_copy(tmp, "noweights", VIT, rm("model.safetensors"))),
         ["models.target: ", "noweights: no model.safetensors"]),
        ("models.clip with a garbled safetensors header",
         dict(clip=model_copy(tmp, "badst", CLIP, put("model.safetensors", b"\xff" * 8 + b"{not json"))),
         ["models.clip: ", "badst/model.safetensors"]),
        ("models.target without preprocessor_config.json", dict(target=model_copy(tmp, "nopre", VIT, rm("preprocessor_config.json"))),
         ["models.target: ", "nopre: no preprocessor_config.json"]),
        ("models.clip without merges.txt", dict(clip=model_copy(tmp, "nomerges", CLIP, rm("merges.txt"))),
         ["models.clip: ", "nomerges: no merges.txt (CLIP tokenizer)"]),
        ("models.clip with a malformed vocab.json", dict(clip=model_copy(tmp, "badvocab", CLIP, put("vocab.json", b"[1, 2"))),
         ["models.clip: ", "badvocab/vocab.json"]),
        ("models.clip that is a ViT", dict(clip=VIT), ["models.clip: ", "is a vit model, not CLIP"]),
        ("an unknown extract layer", dict(layers='["2", "blocks.99"]'),
         ["extract.layers[1]: 'blocks.99': not a layer of %s (it has 0..4, layernorm, logits)" % VIT]),
        ("a missing train root", dict(train="{kind: world, root: /nonexistent/data, split: train}"),
         ["datasets.train.root: /nonexistent/data: no such folder"]),
        ("a train split without class folders", dict(train="{kind: world, root: %s, split: empty}" % world),
         ["datasets.train: ", "has no class folders"]),
        ("a filelist whose list is missing", dict(train="{kind: filelist, root: %s, labels: /nonexistent/list.tsv}" % world),
         ["datasets.train.labels: /nonexistent/list.tsv: no such file"]),
        ("a missing concept file", dict(concepts="/nonexistent/concepts.txt"),
         ["concepts[1].file: /nonexistent/concepts.txt: no such file"]),
    ]
    os.makedirs(os.path.join(world, "empty"), exist_ok=True)
    for i, (what, kw, want) in enumerate(cases):
        write_config(cfg, out, world, **kw)
        expect_caught(2 if i % 3 == 0 else 1, cfg, out, want, what)

    # A missing eval folder is reported before the train set is extracted (it used to be after).
    write_config(cfg, out, world, evalset="{kind: world, root: %s, split: nope}" % world, stages="[extract, intervene]")
    expect_caught(2, cfg, out, ["datasets.eval.split: %s/nope: no such folder" % world], "a missing eval split")
    # sae.layer and intervene.layer are checked when extract.layers is not (`miclip sae`, `miclip intervene`).
    write_config(cfg, out, world, layers='["blocks.7"]')  # sae.layer and intervene.layer default to it
    expect_caught(1, cfg, out, ["sae.layer: 'blocks.7': not a layer of"], "an unknown sae.layer", args=["sae", cfg])
    expect_caught(2, cfg, out, ["intervene.layer: 'blocks.7': not a layer of"], "an unknown intervene.layer",
                  args=["intervene", cfg])
    # The output folder: under a file, it can be neither created nor written.
    blocker = os.path.join(tmp, "afile")
    open(blocker, "w").close()
    write_config(cfg, os.path.join(blocker, "out"), world)
    expect_caught(2, cfg, os.path.join(blocker, "out"), ["output_dir: %s/out: %s is not a folder" % (blocker, blocker)],
                  "an output folder under a file")
    # Disk: less free than the plan's estimate is an error; MICLIP_DISK_CHECK=warn lets it go on.
    write_config(cfg, out, world)
    env = dict(os.environ, MICLIP_PREFLIGHT_FREE_BYTES="1000")
    expect_caught(2, cfg, out, ["output_dir: %s: 1000 B free, the run needs about" % out, "MICLIP_DISK_CHECK=warn"],
                  "too little disk space", env=env)
    env["MICLIP_DISK_CHECK"] = "warn"
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True, env=env)
    check(r.returncode == 0 and "pre-flight: ok" in r.stdout and "warning: pre-flight: output_dir" in r.stderr,
          "MICLIP_DISK_CHECK=warn: a warning, exit 0 (%d: %s)" % (r.returncode, r.stderr.strip()))
    env = dict(os.environ, MICLIP_PREFLIGHT_FREE_BYTES="1e15")
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True, env=env)
    check(r.returncode == 0 and "pre-flight: ok (" in r.stdout and "warning" not in r.stderr,
          "plenty of disk: ok, no warning (%s)" % r.stderr.strip())
    # Only what the stages to run need: extract does not read concept files; report reads no model.
    write_config(cfg, out, world, concepts="/nonexistent/concepts.txt", stages="[extract, localize]")
    shutil.rmtree(out, ignore_errors=True)
    _, err, codes = bad_run(1, ["run", cfg, "--stage", "extract"])
    check(codes == ["rank-exit=0"] and not no_store(out), "extract alone ignores a concept file only localize reads (%s)" %
          error_lines(err))
    write_config(cfg, out, world, target="/nonexistent/vit", stages="[extract, report]", extra="report: {figures: []}\n")
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True)
    check(r.returncode == 1 and "models.target: /nonexistent/vit: no such folder" in r.stderr, "the whole config: models.target")
    _, err, codes = bad_run(1, ["run", cfg, "--stage", "report"])
    check("models.target" not in err, "--stage report does not check the models (%s)" % error_lines(err))
    # MICLIP_PREFLIGHT=off skips it (a config checked on a machine without the data).
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True,
                       env=dict(os.environ, MICLIP_PREFLIGHT="off"))
    check(r.returncode == 0 and "pre-flight: skipped" in r.stdout, "MICLIP_PREFLIGHT=off: skipped, exit 0")


def test_many(tmp):
    world = make_world(os.path.join(tmp, "world"))
    out = os.path.join(tmp, "out")
    cfg = write_config(os.path.join(tmp, "many.yaml"), out, world, clip="/nonexistent/clip", layers='["2", "blocks.99"]',
                       evalset="{kind: world, root: %s, split: nope}" % world, concepts="/nonexistent/c.txt")
    want = ["models.clip: /nonexistent/clip: no such folder",
            "extract.layers[1]: 'blocks.99': not a layer of %s" % VIT,
            "datasets.eval.split: %s/nope: no such folder" % world,
            "concepts[1].file: /nonexistent/c.txt: no such file"]
    for np_ in (1, 2):
        shutil.rmtree(out, ignore_errors=True)
        _, err, codes = bad_run(np_, ["run", cfg])
        check(all(err.count(w) == 2 - (i > 0) for i, w in enumerate(want)),
              "%d rank(s): every problem listed once (the first also in the error line): %s" % (np_, err))
        check("found 4 problems" in err and err.count("found 4 problems") == 1, "%d rank(s): the count, once" % np_)
        errs = error_lines(err)
        check(len(errs) == 1 and "(and 3 more pre-flight problems, listed above)" in errs[0],
              "%d rank(s): one error line, with the count of the others (%s)" % (np_, errs))
        check(len(codes) == np_ and all(c == "rank-exit=1" for c in codes), "%d rank(s): exit 1 on every rank %s" % (np_, codes))
        check(no_store(out) and not os.path.exists(out), "%d rank(s): nothing written, not even the output folder" % np_)
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True)
    check(r.returncode == 1 and all(w in r.stderr for w in want), "`miclip config` lists the four")
    # More than 20: the first 20 lines and a count.
    layers = "[" + ", ".join('"b%d"' % i for i in range(25)) + "]"
    write_config(cfg, out, world, layers=layers, stages="[extract]")
    r = subprocess.run([fixture.MICLIP, "config", cfg], capture_output=True, text=True)
    listed = [l for l in r.stderr.splitlines() if l.startswith("  extract.layers[")]
    check(r.returncode == 1 and len(listed) == 20 and "  ... and 5 more" in r.stderr and "found 25 problems" in r.stderr,
          "25 problems: 20 listed and the count of the rest (%d listed)" % len(listed))


def test_good(tmp):
    # A mirror of the repository's layout, so the examples' relative paths resolve: experiments/
    # holds copies of the configs and a link to the committed tiny models, results/world-data a world.
    exp = os.path.join(tmp, "experiments")
    os.makedirs(os.path.join(exp, "examples"), exist_ok=True)
    if not os.path.exists(os.path.join(exp, "world")):
        os.symlink(WORLD_MODELS, os.path.join(exp, "world"))
    make_world(os.path.join(tmp, "results", "world-data"))
    cfgs = sorted(glob.glob(os.path.join(SRC, "experiments", "examples", "*.yaml"))) + \
        [os.path.join(SRC, "experiments", n) for n in ("world.yaml", "world-clip.yaml")]
    check(len(cfgs) >= 4, "example configs found (%d)" % len(cfgs))
    for src in cfgs:
        dst = os.path.join(exp, os.path.relpath(src, os.path.join(SRC, "experiments")))
        shutil.copy(src, dst)
        r = subprocess.run([fixture.MICLIP, "config", dst], capture_output=True, text=True)
        name = os.path.relpath(src, SRC)
        if os.path.basename(src) == "imagenet-vit.yaml" and not os.path.exists("/models/google/vit-base-patch16-224"):
            want = ["models.target: /models/google/vit-base-patch16-224: no such folder",
                    "models.clip: /models/openai/clip-vit-base-patch16: no such folder",
                    "models.mpnet: /models/sentence-transformers/all-mpnet-base-v2: no such folder",
                    "datasets.train.root: /data/imagenet: no such folder",
                    "datasets.eval.root: /data/imagenet: no such folder",
                    "datasets.unseen.root: /data/dtd: no such folder",
                    "concepts[1].file: /data/concepts/common3k.txt: no such file"]
            missing = [w for w in want if w not in r.stderr]
            check(r.returncode == 1 and not missing, "%s (its data absent here): every missing path listed; missing %s" %
                  (name, missing))
            r = subprocess.run([fixture.MICLIP, "config", dst], capture_output=True, text=True,
                               env=dict(os.environ, MICLIP_PREFLIGHT="off"))
            check(r.returncode == 0, "%s with MICLIP_PREFLIGHT=off validates" % name)
            continue
        ok = r.returncode == 0 and r.stdout.rstrip().splitlines()[-1].startswith("pre-flight: ok (")
        check(ok, "%s passes the pre-flight: %s" % (name, (r.stdout.rstrip().splitlines() or [""])[-1] if ok else r.stderr))
    # The tiny world job's config at 2 ranks: checked on rank 0, printed once.
    r = subprocess.run([fixture.MPIEXEC, "--oversubscribe", "-n", "2", fixture.MICLIP, "config",
                        os.path.join(exp, "world.yaml")], capture_output=True, text=True)
    check(r.returncode == 0 and r.stdout.count("pre-flight: ok (") == 1, "world.yaml at 2 ranks: ok, printed once")


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("preflight_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if not (os.path.exists(os.path.join(VIT, "model.safetensors")) and os.path.exists(os.path.join(CLIP, "model.safetensors"))):
        check(False, "the trained tiny models exist under experiments/world")
        return fixture.summary()
    {"kinds": test_kinds, "many": test_many, "good": test_good}[what](tmp)
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
