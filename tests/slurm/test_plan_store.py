#!/usr/bin/python3
"""`miclip plan` memory and disk figures against what a small real run does (labels unit, mpi).

On a generated tiny world with the committed tiny models (random tiny ones when those are not
there), two small extractions run under `mpirun -n 2`: pooled f32 activations of three layers,
and every token of one layer in f16. For each:
  - disk: the plan's extraction-store size is within 10% + 32 KiB of the store written;
  - memory: the plan's peak per rank is at least the measured peak RSS of every rank
    (/usr/bin/time) and at most that plus 128 MiB (the plan's fixed runtime allowance is 64 MiB);
  - the activation arena estimated from config.json is within a factor 2 of the loaded model's
    own mc_model_arena_bytes, and the parameter count equals mc_model_param_count.
The SAE and E_n stores of a small run are within 25% + 32 KiB of the plan's sizes.
And `miclip plan --calibrate` writes the documented file, which plan then reads; a plan
without one says it uses the defaults; a malformed file is refused with its name.
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
MICLIP = os.environ.get("MICLIP", "miclip")
MPIEXEC = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
PASS = FAIL = 0


def check(cond, what):
    global PASS, FAIL
    PASS += bool(cond)
    FAIL += not cond
    print(("PASS: " if cond else "FAIL: ") + what)


def models(tmp):
    vit, clip = os.path.join(SRC, "experiments/world/vit"), os.path.join(SRC, "experiments/world/clip")
    if os.path.exists(os.path.join(vit, "model.safetensors")) and os.path.exists(os.path.join(clip, "vocab.json")):
        return vit, clip
    sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
    import fixture
    _, vit, clip = fixture.make(os.path.join(tmp, "fx"), 2)
    return vit, clip


def one(tmp, world, vit, clip, tag, extract):
    out = os.path.join(tmp, "out-" + tag)
    cfg = os.path.join(tmp, tag + ".yaml")
    with open(cfg, "w") as f:
        f.write("name: %s\noutput_dir: %s\nseeds: [0]\nmodels: {target: %s, clip: %s}\n"
                "datasets:\n  train: {kind: world, root: %s, split: train}\n"
                "extract: %s\nstages: [extract]\n" % (tag, out, vit, clip, world, extract))
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--ranks", "2", "--json"], capture_output=True, text=True)
    check(r.returncode == 0, "%s: plan runs" % tag)
    if r.returncode:
        print(r.stderr)
        return
    p = json.loads(r.stdout)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    rss_base = os.path.join(tmp, "rss-" + tag)  # one file per rank: rss-TAG.<rank>
    r = subprocess.run([MPIEXEC, "--oversubscribe", "-n", "2", "sh", "-c",
                        '/usr/bin/time -f "maxrss_kb %M" -o "$0.$OMPI_COMM_WORLD_RANK" "$@"', rss_base,
                        MICLIP, "--quiet", "run", cfg], capture_output=True, text=True, env=env)
    check(r.returncode == 0, "%s: the run finishes" % tag)
    if r.returncode:
        print(r.stdout[-2000:], r.stderr[-2000:])
        return
    rss = []
    for k in (0, 1):
        with open("%s.%d" % (rss_base, k)) as f:
            rss += [int(x) * 1024 for x in re.findall(r"maxrss_kb (\d+)", f.read())]
    stores = glob.glob(os.path.join(out, "extract", "*.h5"))
    real = sum(os.path.getsize(s) for s in stores)
    st = [s for s in p["stages"] if s["stage"] == "extract"][0]
    disk, mem = st["disk_bytes"], st["mem_bytes_per_rank"]
    check(len(stores) == 1 and abs(disk - real) <= 0.10 * real + 32768,
          "%s: planned store %.0f B vs written %d B (10%% + 32 KiB)" % (tag, disk, real))
    if os.environ.get("MICLIP_TEST_SANITIZED") == "1":
        # ASan's shadow memory and quarantine inflate the RSS of the instrumented build: the plan
        # models the plain build, whose test run checks this.
        print("%s: memory comparison skipped under the sanitizer (measured %s MiB)" % (
            tag, ["%.1f" % (x / 2**20) for x in rss]))
    else:
        check(len(rss) == 2 and all(mem >= x for x in rss) and all(mem <= x + (128 << 20) for x in rss),
              "%s: planned %.1f MiB per rank vs measured peak RSS %s MiB" % (
                  tag, mem / 2**20, ["%.1f" % (x / 2**20) for x in rss]))
    t = p["target"]
    check(t["sizes_from_weights"] and 0.5 <= t["arena_bytes_estimate"] / t["arena_bytes"] <= 2.0,
          "%s: arena estimate %.0f B vs the model's own %.0f B (factor 2)" % (tag, t["arena_bytes_estimate"], t["arena_bytes"]))
    check(t["params"] == t["loaded_params"],
          "%s: parameters from config.json %d == mc_model_param_count %d" % (tag, t["params"], t["loaded_params"]))


def training_stores(tmp, world, vit, clip):
    """The SAE and E_n stores of a small run against the plan's figures (25% + 32 KiB each)."""
    out = os.path.join(tmp, "out-train")
    cfg = os.path.join(tmp, "train.yaml")
    with open(cfg, "w") as f:
        f.write("name: train\noutput_dir: %s\nseeds: [0]\nmodels: {target: %s, clip: %s}\n"
                "datasets:\n  train: {kind: world, root: %s, split: train}\n"
                "extract: {layers: [\"2\", \"3\"], batch_size: 8}\n"
                "sae: {layer: \"3\", features: 256, k: 8, batch_size: 16, epochs: 3}\n"
                "align: {batch_size: 32, stop: epochs, epochs: 2}\nstages: [extract, sae, align]\n" % (out, vit, clip, world))
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        check(False, "train: plan runs (%s)" % r.stderr.strip())
        return
    p = json.loads(r.stdout)
    if not all(s["implemented"] for s in p["stages"]):
        print("note: sae/align not implemented in this build; their stores are not checked")
        return
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    r = subprocess.run([MPIEXEC, "--oversubscribe", "-n", "2", MICLIP, "--quiet", "run", cfg],
                       capture_output=True, text=True, env=env)
    check(r.returncode == 0, "train: extract + sae + align run")
    for st in p["stages"]:
        files = glob.glob(os.path.join(out, st["stage"], "*.h5"))
        real = sum(os.path.getsize(f) for f in files)
        n = max(len(files), 1)
        check(files and abs(st["disk_bytes"] - real) <= 0.25 * real + 32768 * n,
              "train: %s planned %.0f B vs written %d B in %d store(s) (25%% + 32 KiB each)" % (
                  st["stage"], st["disk_bytes"], real, len(files)))


def calibration(tmp, world, vit, clip):
    """--calibrate writes the documented JSON, plan reads it, a bad file is refused by name."""
    cfg = os.path.join(tmp, "cal.yaml")
    with open(cfg, "w") as f:
        f.write("name: cal\nmodels: {target: %s, clip: %s}\n"
                "datasets:\n  train: {kind: world, root: %s, split: train}\n"
                "extract: {layers: [\"1\"]}\nstages: [extract]\n" % (vit, clip, world))
    path = os.path.join(tmp, "calib", "c.json")
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--calibrate", "--out", path], capture_output=True, text=True)
    ok = r.returncode == 0 and os.path.exists(path)
    c = json.load(open(path)) if ok else {}
    check(ok and c.get("format") == "miclip-calibration/1" and c["sgemm_gflops"] > 0 and c["mem_gbps"] > 0
          and c["decode_images_per_s"] > 0 and c["forward"]["images_per_s"] > 0 and c["forward"]["model"] == vit,
          "--calibrate writes sgemm, memory, decode and a forward of the target (%s)" % r.stdout.strip())
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--calibration", path, "--json"], capture_output=True, text=True)
    check(r.returncode == 0 and json.loads(r.stdout)["calibration"] == path, "plan --calibration uses the file")
    left = [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".miclip-calibrate-")]
    check(ok and c.get("normal_draws_per_s", 0) > 0 and c.get("write_mb_per_s", 0) > 0 and not left,
          "--calibrate measures normal draws and fsync'd writes, leaving no temporary (%s)" % left)
    # The SAE stage's once-per-task work follows the two rates: with the write rate halved, a
    # task's wall grows by exactly (checkpoints x 3 + 1) x the SAE's parameters x 4 bytes / rate.
    sae_cfg = os.path.join(tmp, "cal_sae.yaml")
    with open(sae_cfg, "w") as f:
        f.write(open(cfg).read().replace("stages: [extract]", "stages: [extract, sae]")
                + "sae: {layer: \"1\", features: 512, k: 8, steps: 2500, checkpoint_every: 1000}\n")
    walls = []
    for rate in (100.0, 50.0):
        c2 = dict(c, write_mb_per_s=rate)
        p2 = os.path.join(tmp, "calib", "w%d.json" % rate)
        json.dump(c2, open(p2, "w"))
        r = subprocess.run([MICLIP, "--quiet", "plan", sae_cfg, "--calibration", p2, "--json"],
                           capture_output=True, text=True)
        st = {x["stage"]: x for x in json.loads(r.stdout)["stages"]} if r.returncode == 0 else {}
        walls.append(st.get("sae", {}).get("wall_seconds_per_task", 0.0))
    n = 64  # the world ViT's width at layer 1 (config.json hidden_size)
    params = 2 * 512 * n + 512 + n
    want = (3 * 3 + 1) * params * 4 / 1e6 * (1 / 50.0 - 1 / 100.0)  # 2 periodic checkpoints + the last
    check(walls[0] > 0 and abs((walls[1] - walls[0]) - want) < 1e-6 * max(want, 1),
          "the SAE task's wall grows by its checkpoint and store bytes / the write rate (%.6f s, want %.6f)"
          % (walls[1] - walls[0], want))
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg], capture_output=True, text=True,
                       env=dict(os.environ, MICLIP_CALIBRATION=os.path.join(tmp, "none.json")))
    check(r.returncode == 0 and "conservative defaults" in r.stdout, "without a file the plan says it uses defaults")
    with open(path, "w") as f:
        f.write('{"format": "miclip-calibration/1", "threads": 1, "sgemm_gflops": -1, "mem_gbps": 1, "decode_images_per_s": 1}')
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--calibration", path], capture_output=True, text=True)
    check(r.returncode != 0 and path in r.stderr, "a bad calibration file is refused, naming it (%s)" % r.stderr.strip())


def main():
    with tempfile.TemporaryDirectory() as tmp:
        vit, clip = models(tmp)
        world = os.path.join(tmp, "world")
        subprocess.run([MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "3", "--per-class", "2",
                        "--val-per-class", "1", "--unseen-per-class", "1"], check=True)
        one(tmp, world, vit, clip, "pooled", '{layers: ["1", "2", logits], batch_size: 8}')
        one(tmp, world, vit, clip, "tokens", '{layers: ["2"], pool: all, dtype: f16, batch_size: 8}')
        training_stores(tmp, world, vit, clip)
        calibration(tmp, world, vit, clip)


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (PASS, FAIL))
    sys.exit(1 if FAIL else 0)
