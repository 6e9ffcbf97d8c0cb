#!/usr/bin/python3
"""What `miclip run` prints under mpirun when stderr is a file (README.md, "Logs"): the run
estimate from a calibration file, one line per stage of several tasks with the run ETA, the
tasks' own info lines only with --verbose (as debug), progress lines with rate and ETA instead
of a bar, and an array task's (--stage/--task) own lines unchanged. MICLIP_PROGRESS_INTERVAL=0
prints a progress line at every update, so nothing here depends on timing.

Prints 'N passed, N failed'; exit 0 only when all pass."""
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402

from fixture import check  # noqa: E402

SRC = fixture.SRC


def write_config(path, world, vit, clip, out):
    with open(path, "w") as f:
        f.write(f"""name: t
output_dir: {out}
seeds: [0, 1]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train, n_samples: 24}}
extract: {{layers: ["2"], batch_size: 4}}
stages: [extract]
""")


def run(cfg, args=(), cal="/nonexistent", verbose=False):
    env = dict(os.environ, MICLIP_CALIBRATION=cal, MICLIP_PROGRESS="lines", MICLIP_PROGRESS_INTERVAL="0")
    env.pop("MICLIP_LOG", None)
    env.pop("MICLIP_LOG_TASKS", None)  # the suite's environment keeps the tasks' lines; not here
    p = fixture.mpirun(2, (["--verbose"] if verbose else []) + ["run", cfg] + list(args),
                       env=env, capture_output=True, text=True)
    return p.returncode, p.stderr


def main():
    tmp = os.path.abspath("run_log")
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    fx = fixture.make(os.path.abspath("fixture"))
    cal = os.path.join(SRC, "slurm", "paper", "calibration-dev.json")

    cfg = os.path.join(tmp, "a.yaml")
    write_config(cfg, *fx, os.path.join(tmp, "a"))
    rc, err = run(cfg, cal=cal)
    lines = err.splitlines()
    check(rc == 0, "run exits 0 (%d)" % rc)
    check(any(l.startswith("miclip[0]: run: 1 stage(s), estimated ") and "(calibration %s" % cal in l for l in lines),
          "run estimate from the calibration file")
    check(any("stage 1/1 extract: 2 task(s) (run ETA " in l for l in lines), "stage line with the run ETA")
    check(any("stage 1/1 extract: 2 task(s) done in " in l for l in lines), "one stage summary line")
    check(not any("stage extract: task " in l for l in lines), "per-task lines demoted in a stage of 2 tasks")
    prog = [l for l in lines if l.startswith("miclip[0]: extract: ") and "img (" in l and " ETA " in l]
    check(len(prog) >= 2, "progress lines with rate and ETA (%d)" % len(prog))
    check("\r" not in err, "no bar drawn into a file")
    check(all(l.startswith("miclip[0]: ") for l in lines), "only rank 0 prints")
    other = [l for l in lines if l not in prog]
    check(len(other) <= 5, "short log: %d lines besides progress: %s" % (len(other), other))

    rc, err = run(cfg, verbose=True)
    check(rc == 0 and "debug: stage extract: task 1/2" in err, "--verbose shows the tasks' lines as debug")
    check("no run estimate" in err, "no calibration: no estimate, and says how to get one")

    cfg_b = os.path.join(tmp, "b.yaml")
    write_config(cfg_b, *fx, os.path.join(tmp, "b"))
    rc, err = run(cfg_b, ["--stage", "extract", "--task", "1"], cal=cal)
    check(rc == 0 and "stage extract: task 2/2" in err and "debug:" not in err,
          "one array task keeps its own info lines")
    check("estimated" not in err, "no run estimate for one task")
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
