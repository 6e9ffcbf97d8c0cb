#!/usr/bin/python3
"""`miclip world make`: same seed, same bytes (two runs; 1 rank vs 2 and 4 ranks), another seed other
images; attributes.jsonl consistent with the files written and with the pixels (checked with PIL);
class, texture and concept lists complete; usage errors.

Environment (set by ctest): MICLIP, MICLIP_MPIEXEC.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from PIL import Image

MICLIP = os.environ.get("MICLIP", "miclip")
MPIEXEC = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
COLOURS = ["blue", "green", "orange", "purple", "red", "yellow"]
SHAPES = ["circle", "cross", "ring", "square", "star", "triangle"]
REQUIRED_TEXTURES = ["striped", "dotted", "checkered", "plain", "noisy"]
ARGS = ["--per-class", "3", "--val-per-class", "2", "--unseen-per-class", "4"]

failures = 0


def check(ok, msg):
    global failures
    print(("ok   " if ok else "FAIL ") + msg, flush=True)
    failures += not ok


def make(out, seed, ranks=0, extra=ARGS):
    cmd = [MICLIP, "--quiet", "world", "make", "--out", out, "--seed", str(seed)] + extra
    if ranks:
        cmd = [MPIEXEC, "--oversubscribe", "-n", str(ranks)] + cmd
    return subprocess.run(cmd, capture_output=True, text=True)


def tree(root):
    """{relative path: sha256} of every file under root."""
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def lines(path):
    return [l.rstrip("\n") for l in open(path)]


def main():
    with tempfile.TemporaryDirectory() as tmp:
        a, b, c, d, f = (os.path.join(tmp, x) for x in "abcdf")
        for out, ranks, extra in ((a, 0, ARGS), (b, 0, ARGS), (c, 2, ARGS + ["--masks"]), (f, 4, ARGS)):
            r = make(out, 7, ranks, extra)
            check(r.returncode == 0, f"world make ({ranks or 1} rank) exits 0 {r.stderr.strip()[:300]}")
        ta, tb, tc, tf = tree(a), tree(b), tree(c), tree(f)
        check(ta == tf, "1 rank and 4 ranks: byte-identical")
        check(len(ta) > 0 and ta == tb, f"two runs, same seed: {len(ta)} files byte-identical")
        tc_masks = {p: h for p, h in tc.items() if p.startswith("masks/")}
        tc = {p: h for p, h in tc.items() if not p.startswith("masks/")}
        check(ta == tc, "1 rank and 2 ranks (with --masks): byte-identical")
        cover = {p for p in tc_masks if p.count("/") == 3}
        check(cover == {"masks/" + p for p in ta if p.endswith(".png")},
              f"--masks: one coverage mask per image ({len(cover)})")
        concept = {p for p in tc_masks if p.count("/") == 4}
        check(len(concept) == 5 * len(cover) and cover | concept == set(tc_masks),
              f"--masks: five concept masks per image in masks/<split>/<folder>/NNNNN/ ({len(concept)})")
        make(d, 8)
        td = tree(d)
        pngs = [p for p in ta if p.endswith(".png")]
        check(set(td) == set(ta), "another seed: same file names")
        check(sum(ta[p] != td[p] for p in pngs) == len(pngs), "another seed: every image differs")

        # Lists.
        classes = lines(os.path.join(a, "classes.txt"))
        textures = lines(os.path.join(a, "textures.txt"))
        concepts = lines(os.path.join(a, "concepts.txt"))
        want = sorted(f"{c} {s}" for c in COLOURS for s in SHAPES)
        check(classes == want, f"classes.txt: all {len(want)} colour x shape classes, in folder order")
        check(all(t in textures for t in REQUIRED_TEXTURES) and len(set(textures)) == len(textures),
              f"textures.txt has {REQUIRED_TEXTURES}: {textures}")
        check(lines(os.path.join(a, "colours.txt")) == COLOURS and lines(os.path.join(a, "shapes.txt")) == SHAPES,
              "colours.txt and shapes.txt")
        for group in (COLOURS, SHAPES, textures, classes):
            check(all(w in concepts for w in group), f"concepts.txt holds {group[:3]}...")
        distractors = [w for w in concepts if w not in COLOURS + SHAPES + textures + classes
                       and not w.endswith(" background")]
        check(len(distractors) >= 10 and len(set(concepts)) == len(concepts),
              f"concepts.txt: {len(distractors)} distractor words, no duplicates")
        src = os.environ.get("MICLIP_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
        for f in ("concepts.txt", "textures.txt"):
            committed = os.path.join(src, "experiments", "world", f)
            check(lines(committed) == lines(os.path.join(a, f)),
                  f"experiments/world/{f} (the configs' concept set) equals what the generator writes")
        world = json.load(open(os.path.join(a, "world.json")))
        check(world["seed"] == 7 and world["per_class"] == 3 and world["unseen_per_class"] == 4, "world.json")

        # Attributes against files and pixels.
        counts = {"train": 3 * 36, "val": 2 * 36, "unseen": 4 * len(textures)}
        listed = set()
        for split, n in counts.items():
            recs = [json.loads(l) for l in open(os.path.join(a, split, "attributes.jsonl"))]
            check(len(recs) == n, f"{split}: {len(recs)} attribute lines, expected {n}")
            check([r["index"] for r in recs] == list(range(n)), f"{split}: indices 0..{n - 1} in order")
            bad_label, bad_path, bad_px, bad_geom, bad_mask = 0, 0, 0, 0, 0
            for r in recs:
                listed.add(r["path"])
                folder = r["path"].split("/")[1]
                bad_label += not (r["class"] == f"{r['colour']} {r['shape']}" and classes[r["label"]] == r["class"]
                                  and r["texture"] in textures and r["split"] == split)
                bad_path += not (r["path"].startswith(split + "/") and os.path.exists(os.path.join(a, r["path"]))
                                 and folder == (r["texture"] if split == "unseen" else r["class"].replace(" ", "_")))
                if split == "unseen":
                    bad_label += r["path"].split("/")[2] != "%05d.png" % (r["index"] % 4)
                x0, y0, x1, y1 = r["bbox"]
                bad_geom += not (0 <= x0 < r["x"] < x1 <= 64 and 0 <= y0 < r["y"] < y1 <= 64)
                with Image.open(os.path.join(a, r["path"])) as im:
                    px = np.asarray(im)
                    bad_px += im.size != (64, 64) or im.mode != "RGB"
                # Ground truth in the pixels: the centre of every shape but the ring is covered,
                # so its pixel is the shape colour up to the noise (<= 0.03, 4 sigma) and rounding.
                if r["shape"] != "ring":
                    got = px[int(r["y"]), int(r["x"])].astype(float) / 255
                    bad_px += np.abs(got - np.array(r["fg"])).max() > 4 * r["noise"] + 1 / 255 + 1e-6
                # The mask: covered at the centre exactly when the shape is not a ring, empty
                # outside the bbox, and fully covered pixels have the shape's colour on average.
                with Image.open(os.path.join(c, "masks", r["path"])) as mi:
                    m = np.asarray(mi)
                    bad_mask += mi.size != (64, 64) or mi.mode != "L"
                bad_mask += (m[int(r["y"]), int(r["x"])] == 255) != (r["shape"] != "ring")
                # The concept masks (Network Dissection's layout): binary, the shape's pixels
                # (coverage >= 128) for its colour, shape and class, the rest for its texture.
                cdir = os.path.join(c, "masks", r["path"][:-4])
                for name, fg in ((r["colour"], True), (r["shape"], True), (r["class"], True),
                                 (r["texture"], False), (r["texture"] + " background", False)):
                    with Image.open(os.path.join(cdir, name + ".png")) as ci:
                        cm = np.asarray(ci)
                    bad_mask += not np.array_equal(cm, np.where((m >= 128) == fg, 255, 0))
                yy, xx = np.nonzero(m)
                bad_mask += not (xx.min() >= int(x0) and xx.max() <= x1 and yy.min() >= int(y0) and yy.max() <= y1)
                # Their median is the colour: the noise is symmetric and the clamp to [0, 1] and
                # the rounding are monotone, so they keep the median (a mean would be biased).
                full = px[m == 255].astype(float) / 255
                # Bound: rounding plus 4 standard errors of a sample median (1.2533 sigma / sqrt(n)).
                tol = 1 / 255 + 4 * 1.2533 * r["noise"] / np.sqrt(max(len(full), 1)) + 1e-6
                bad_mask += len(full) > 0 and np.abs(np.median(full, 0) - np.array(r["fg"])).max() > tol
            check(bad_label == 0, f"{split}: labels, classes and textures consistent ({bad_label} bad)")
            check(bad_path == 0, f"{split}: every path exists in its class/texture folder ({bad_path} bad)")
            check(bad_geom == 0, f"{split}: bbox inside the image around (x, y) ({bad_geom} bad)")
            check(bad_px == 0, f"{split}: 64x64 RGB, shape colour at the shape centre ({bad_px} bad)")
            check(bad_mask == 0, f"{split}: masks cover the centre (not rings), stay in the bbox, "
                  f"full pixels have the shape colour ({bad_mask} bad)")
        written = {p for p in ta if p.endswith(".png")}
        check(written == listed, f"files written == files listed ({len(written)} vs {len(listed)})")

        # Empty val and unseen splits: folders with empty attribute files.
        z = os.path.join(tmp, "z")
        r = make(z, 1, 0, ["--per-class", "1", "--val-per-class", "0", "--unseen-per-class", "0"])
        check(r.returncode == 0 and os.path.getsize(os.path.join(z, "val", "attributes.jsonl")) == 0
              and os.path.getsize(os.path.join(z, "unseen", "attributes.jsonl")) == 0,
              f"empty val/unseen splits: exit {r.returncode}, empty attributes.jsonl {r.stderr.strip()[:200]}")

        # Usage errors exit 2 without writing anything.
        e = os.path.join(tmp, "e")
        for extra in (["--per-class", "0"], ["--per-class", "x"], ["--bogus", "1"]):
            r = make(e, 1, 0, extra)
            check(r.returncode == 2 and not os.path.exists(e), f"usage error {extra}: exit {r.returncode}")
        r = subprocess.run([MICLIP, "world", "make", "--out", e], capture_output=True)
        check(r.returncode == 2, "missing --seed: exit 2")
        r = subprocess.run([MICLIP, "world", "frobnicate"], capture_output=True)
        check(r.returncode == 2, "unknown action: exit 2")
        r = make("/proc/miclip-world-cannot-exist", 1)
        check(r.returncode == 1 and "miclip" in r.stderr, f"unwritable --out: exit 1 with a message: {r.stderr.strip()[:200]}")
    print("FAILED" if failures else "passed", failures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
