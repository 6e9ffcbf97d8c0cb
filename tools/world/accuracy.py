#!/usr/bin/env python3
"""accuracy.py: top-1 accuracy of a committed tiny-world classifier on one split of a world.

    /usr/bin/python3 tools/world/accuracy.py --world W --split hard [--model vit]

Used to calibrate the hard split's knobs (docs/world.md, "The hard split"): the knobs are chosen on
a world of another seed than the main job's, so the main job's images are not what was tuned.
Prints one JSON line: split, model, images, accuracy, and the accuracy per knob setting recorded
in world.json.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tiny  # noqa: E402  (the PyTorch models and preprocessing the tests use)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True)
    ap.add_argument("--split", default="hard")
    ap.add_argument("--model", default="vit", choices=["vit", "resnet"])
    ap.add_argument("--models", default=os.path.join(os.path.dirname(__file__), "../../experiments/world"))
    a = ap.parse_args()
    torch.set_num_threads(1)
    model, _ = train_tiny.load_model(a.models, a.model)
    pp = json.load(open(os.path.join(a.models, a.model, "preprocessor_config.json")))
    imgs, recs = train_tiny.load_split(a.world, a.split)
    x = train_tiny.pixel_values(imgs, pp["image_mean"], pp["image_std"])
    y = np.array([r["label"] for r in recs])
    with torch.no_grad():
        pred = train_tiny.predict(model, x).argmax(1).numpy()
    print(json.dumps({"split": a.split, "model": a.model, "images": len(y),
                      "accuracy": float((pred == y).mean()),
                      "world": json.load(open(os.path.join(a.world, "world.json")))}))


if __name__ == "__main__":
    main()
