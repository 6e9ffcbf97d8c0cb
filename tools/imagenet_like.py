#!/usr/bin/env python3
"""imagenet_like.py OUT --classes C --train N --val N --dtd-classes C --dtd N [--seed S]

Writes random JPEG photographs-in-shape (500x375 or 375x500 smooth colour noise, quality 90, as
ImageNet's typical files) in the layouts miclip reads for the paper config (docs/config.md):
  OUT/imagenet/train/<wnid>/<wnid>_<i>.JPEG   (N per class)
  OUT/imagenet/val/<wnid>/ILSVRC2012_val_<k>.JPEG  (N per class, val in class folders)
  OUT/dtd/images/<texture>/<texture>_<i>.jpg  (N per class)
  OUT/imagenet/class_names.txt  (wnid<TAB>class_<j>: the classes spread over the 1000 labels of a
                                 `miclip model random --arch vit-b16` folder, datasets.*.class_names)
wnids look like ImageNet synsets (n + 8 digits) so the loader treats them as such. The pixels
only have to decode and cost what a photograph costs; the models that read them are random.
Used by bench/plan_check.sh.
"""
import argparse
import os

import numpy as np
from PIL import Image


def noise_image(rng, w, h):
    # a few octaves of upsampled noise: JPEG size and decode time like a photograph's
    img = np.zeros((h, w, 3), np.float32)
    for cells, amp in ((4, 90.0), (16, 50.0), (64, 25.0)):
        small = rng.standard_normal((cells * h // w + 1, cells + 1, 3)).astype(np.float32)
        for c in range(3):
            up = np.array(Image.fromarray(small[..., c]).resize((w, h), Image.BILINEAR))
            img[..., c] += amp * up
    img += rng.standard_normal(img.shape).astype(np.float32) * 8.0
    return Image.fromarray(np.clip(img + 128.0, 0, 255).astype(np.uint8))


def write(path, rng):
    w, h = (500, 375) if rng.random() < 0.75 else (375, 500)
    noise_image(rng, w, h).save(path, "JPEG", quality=90)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--train", type=int, default=10, help="training images per class")
    ap.add_argument("--val", type=int, default=5, help="val images per class")
    ap.add_argument("--dtd-classes", type=int, default=4)
    ap.add_argument("--dtd", type=int, default=5, help="DTD images per texture")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    wnids = sorted({"n%08d" % int(v) for v in rng.integers(1440000, 15100000, a.classes * 4)})
    wnids = wnids[: a.classes]
    os.makedirs(os.path.join(a.out, "imagenet"), exist_ok=True)
    with open(os.path.join(a.out, "imagenet", "class_names.txt"), "w") as f:
        for i, wnid in enumerate(wnids):
            f.write("%s\tclass_%d\n" % (wnid, i * 1000 // len(wnids)))
    k = 0
    for wnid in wnids:
        for split, n in (("train", a.train), ("val", a.val)):
            d = os.path.join(a.out, "imagenet", split, wnid)
            os.makedirs(d, exist_ok=True)
            for i in range(n):
                k += 1
                name = "%s_%d.JPEG" % (wnid, i) if split == "train" else "ILSVRC2012_val_%08d.JPEG" % k
                write(os.path.join(d, name), rng)
    for t in range(a.dtd_classes):
        tex = "texture%02d" % t
        d = os.path.join(a.out, "dtd", "images", tex)
        os.makedirs(d, exist_ok=True)
        for i in range(a.dtd):
            write(os.path.join(d, "%s_%04d.jpg" % (tex, i)), rng)
    print("wrote %d classes x (%d train + %d val), %d textures x %d under %s"
          % (len(wnids), a.train, a.val, a.dtd_classes, a.dtd, a.out))


if __name__ == "__main__":
    main()
