#!/usr/bin/python3
"""`miclip world make --hard-per-class`: the hard split (docs/world.md, "The hard split").

- the other splits (images, masks, attributes, lists but world.json) are byte-identical with and
  without the hard split, and a hard world is the same bytes at 1 and 3 ranks;
- every knob at 0 gives val's recipe (the same attributes as val's, up to split and path), and
  the knobs stay in their stated ranges (fade, bar width, distractor count, other colour and shape);
- the ground truth stays exact: recomputed in numpy from attributes.jsonl, the bar's pixels are
  outside the object's mask and have the bar's grey, the object's unoccluded fully covered pixels
  have its (faded) colour, distractors never enter the object's mask, and the texture concept
  masks hold no bar pixel;
- bad knobs: one error line, exit 2.

Environment (set by ctest): MICLIP, MICLIP_MPIEXEC.
"""
import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

MICLIP = os.environ.get("MICLIP", "miclip")
MPIEXEC = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
BASE = ["--per-class", "2", "--val-per-class", "2", "--unseen-per-class", "2", "--masks"]
KNOBS = ["--hard-fade", "0.5", "--hard-occlusion", "0.4", "--hard-distractors", "3"]
failures = 0


def check(ok, msg):
    global failures
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    failures += not ok


def make(out, extra, ranks=0, seed=5):
    cmd = [MICLIP, "--quiet", "world", "make", "--out", out, "--seed", str(seed)] + BASE + extra
    if ranks:
        cmd = [MPIEXEC, "--oversubscribe", "-n", str(ranks)] + cmd
    return subprocess.run(cmd, capture_output=True, text=True)


def tree(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def main():
    with tempfile.TemporaryDirectory() as tmp:
        plain, hard, hard3, zero = (os.path.join(tmp, n) for n in ("plain", "hard", "hard3", "zero"))
        for out, extra, ranks in ((plain, [], 0), (hard, ["--hard-per-class", "3"] + KNOBS, 0),
                                  (hard3, ["--hard-per-class", "3"] + KNOBS, 3),
                                  (zero, ["--hard-per-class", "2"], 0)):
            r = make(out, extra, ranks)
            check(r.returncode == 0, "world make %s at %d rank(s) exits 0 (%s)" % (" ".join(extra), max(ranks, 1),
                                                                                 r.stderr.strip()[-300:]))
        a, b = tree(plain), tree(hard)
        other = {k: v for k, v in b.items() if not k.startswith(("hard/", "masks/hard/")) and k != "world.json"}
        check(set(a) - {"world.json"} == set(other) and all(a[k] == other[k] for k in other),
              "train, val, unseen (images, masks, attributes) and the lists byte-identical with the hard split")
        check(not os.path.exists(os.path.join(plain, "hard")), "no hard/ folder without --hard-per-class")
        check(tree(hard) == tree(hard3), "the hard world is the same bytes at 1 and 3 ranks")
        w = json.load(open(os.path.join(hard, "world.json")))
        check((w["hard_per_class"], w["hard_fade"], w["hard_occlusion"], w["hard_distractors"]) == (3, 0.5, 0.4, 3),
              "world.json records the hard split's count and knobs")

        # Knobs at 0: val's recipe (the hard split's own random stream, so other numbers).
        recs = [json.loads(l) for l in open(os.path.join(zero, "hard", "attributes.jsonl"))]
        check(len(recs) == 72 and all(r["fade"] == 0 and r["occluder"]["width"] == 0 and r["distractors"] == []
                                      for r in recs), "knobs at 0: no fade, no bar, no distractors (72 images)")

        recs = [json.loads(l) for l in open(os.path.join(hard, "hard", "attributes.jsonl"))]
        check(len(recs) == 108 and [r["index"] for r in recs] == list(range(108)), "108 hard attribute lines in order")
        bad_range = bad_bar = bad_obj = bad_tex = bad_dis = 0
        n_bar = n_obj = n_dis = 0
        counts = set()
        for r in recs:
            counts.add(len(r["distractors"]))
            o = r["occluder"]
            bad_range += not (0 <= r["fade"] <= 0.5 and 0 <= o["width"] <= 0.4 * 2 * r["scale"] + 1e-3
                              and len(r["distractors"]) <= 3 and r["split"] == "hard"
                              and all(d["colour"] != r["colour"] and d["shape"] != r["shape"] for d in r["distractors"]))
            img = np.asarray(Image.open(os.path.join(hard, r["path"])).convert("RGB")).astype(float) / 255
            mask = np.asarray(Image.open(os.path.join(hard, "masks", r["path"])))
            stem = os.path.join(hard, "masks", r["path"][:-4])
            tex = np.asarray(Image.open(os.path.join(stem, r["texture"] + ".png")))
            # Pixel centres fully inside the bar (by half a pixel diagonal): the bar's grey (up to
            # the noise, 4 sigma, and rounding), never the object's, never the texture's.
            yy, xx = np.mgrid[0:64, 0:64] + 0.5
            a = math.radians(o["angle"])
            d = (xx - r["x"]) * -math.sin(a) + (yy - r["y"]) * math.cos(a) - o["offset"]
            inbar = np.abs(d) < 0.5 * o["width"] - 0.75
            n_bar += inbar.sum()
            bad_bar += int((mask[inbar] != 0).any() or (tex[inbar] != 0).any()
                           or (np.abs(img[inbar] - o["rgb"]) > 4 * r["noise"] + 3 / 255).any())
            # The object's fully covered pixels well away from the bar: its recorded colour.
            full = (mask == 255) & (np.abs(d) > 0.5 * o["width"] + 0.75)
            n_obj += full.sum()
            bad_obj += int((np.abs(img[full] - r["fg"]) > 4 * r["noise"] + 3 / 255).any())
            bad_tex += int(((tex == 255) & (mask >= 128)).any())
            # A distractor's centre pixel outside the object's circle and the bar: its colour.
            for dd in r["distractors"]:
                px, py = int(dd["x"]), int(dd["y"])
                if (math.hypot(px + 0.5 - r["x"], py + 0.5 - r["y"]) > r["scale"] + 1 and abs(d[py, px]) > 0.5 * o["width"] + 1
                        and dd["shape"] != "ring" and all(e is dd or math.hypot(e["x"] - dd["x"], e["y"] - dd["y"]) >
                                                          e["scale"] + 1 for e in r["distractors"][r["distractors"].index(dd):])):
                    n_dis += 1
                    bad_dis += int(mask[py, px] != 0 or (np.abs(img[py, px] - dd["fg"]) > 4 * r["noise"] + 3 / 255).any())
        check(bad_range == 0, "knobs in range: fade, bar width, <= 3 distractors of another colour and shape (%d bad)"
              % bad_range)
        check(counts == {0, 1, 2, 3}, "distractor counts 0..3 all occur (%s)" % sorted(counts))
        check(n_bar > 500 and bad_bar == 0, "%d bar pixels: the bar's grey, outside the object's and texture's masks "
              "(%d images bad)" % (n_bar, bad_bar))
        check(n_obj > 5000 and bad_obj == 0, "%d unoccluded object pixels: its recorded (faded) colour (%d bad)"
              % (n_obj, bad_obj))
        check(bad_tex == 0, "texture masks never overlap the object (%d bad)" % bad_tex)
        check(n_dis > 20 and bad_dis == 0, "%d visible distractor centres: their colour, outside the object's mask "
              "(%d bad)" % (n_dis, bad_dis))

        for extra, want in ((["--hard-fade", "1.5"], "--hard-fade"), (["--hard-distractors", "9"], "--hard-distractors"),
                            (["--hard-occlusion", "x"], "--hard-occlusion")):
            r = make(os.path.join(tmp, "bad"), ["--hard-per-class", "1"] + extra)
            errs = [l for l in r.stderr.splitlines() if l.strip()]
            check(r.returncode == 2 and len(errs) >= 1 and want in errs[0],
                  "%s: exit 2, an error naming %s (%s)" % (" ".join(extra), want, errs[:1]))
    print("%d failed" % failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
