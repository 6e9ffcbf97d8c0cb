"""Shared fixture for the stage tests: a small tiny-world dataset and random tiny models,
made by miclip itself (`miclip world make`, `miclip model random`), plus a CLIP vocabulary
learned from the world's class names (the random clip-tiny folder has no tokenizer files)."""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE)))
sys.path.insert(0, os.path.join(SRC, "tests", "text"))
import ref_tokenizers as R  # noqa: E402

MICLIP = os.environ.get("MICLIP", "miclip")
MPIEXEC = os.environ.get("MICLIP_MPIEXEC", "mpiexec")


def sh(args, **kw):
    return subprocess.run(args, check=True, **kw)


def make(root, per_class=12):
    """Creates root/{world,vit,clip} once; returns their paths."""
    world, vit, clip = (os.path.join(root, d) for d in ("world", "vit", "clip"))
    if not os.path.exists(os.path.join(root, ".ready")):
        os.makedirs(root, exist_ok=True)
        sh([MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class",
            str(per_class), "--val-per-class", "1", "--unseen-per-class", "1"])
        sh([MICLIP, "--quiet", "model", "random", "--arch", "vit-tiny", "--seed", "1", "--out", vit])
        sh([MICLIP, "--quiet", "model", "random", "--arch", "clip-tiny", "--seed", "2", "--out", clip])
        names = [l.strip() for l in open(os.path.join(world, "classes.txt")) if l.strip()]
        texts = ["a photo of a %s." % n.replace("_", " ") for n in names]
        vocab, merges = R.train_bpe(texts, 40)
        R.write_clip_vocab(clip, vocab, merges)
        open(os.path.join(root, ".ready"), "w").close()
    return world, vit, clip


# The tests' verdicts: each check prints PASS/FAIL; summary() prints the closing line ctest
# reads and returns the exit code.
_counts = {"pass": 0, "fail": 0}


def check(cond, what):
    _counts["pass" if cond else "fail"] += 1
    print("PASS:" if cond else "FAIL:", what)


def summary():
    print("%d passed, %d failed" % (_counts["pass"], _counts["fail"]))
    return 1 if _counts["fail"] else 0


def mpirun(np, args, **kw):
    return subprocess.run([MPIEXEC, "--oversubscribe", "-n", str(np), MICLIP] + args, **kw)
