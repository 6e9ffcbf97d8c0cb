#!/usr/bin/env python3
"""Loads the tiny world's exported folders with Hugging Face transformers (where it is installed:
the GPU machine that trained them, tools/world/gpu_train.sh) and checks that they give the
outputs of train_tiny.py's own PyTorch models: the proof that the folders follow the Hub layouts
(weight names, config keys and defaults, processor classes, tokenizer files).

usage: check_hf.py MODELS_DIR WORLD_DIR  -> prints one line per check, exit 1 if any failed.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_tiny as T  # noqa: E402


def main():
    models_dir, world = sys.argv[1], sys.argv[2]
    import transformers
    from transformers import (AutoImageProcessor, AutoTokenizer, CLIPModel,
                              ResNetForImageClassification, ViTForImageClassification)
    print("transformers", transformers.__version__, "torch", torch.__version__)
    xva, rva = T.load_split(world, "val")
    idx = list(range(0, len(rva), 7))[:256]
    imgs = xva[idx]
    failed = 0

    def report(what, err, tol):
        nonlocal failed
        ok = err <= tol
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {err:.3g} (tol {tol:g})", flush=True)

    from PIL import Image
    pil = [Image.fromarray(a) for a in imgs]
    classes = {"vit": ViTForImageClassification, "resnet": ResNetForImageClassification, "clip": CLIPModel}
    for name, cls in classes.items():
        d = os.path.join(models_dir, name)
        mine, cfg = T.load_model(models_dir, name)
        mean, std = T.NORM[name]
        px = T.pixel_values(imgs, mean, std)
        try:
            proc = AutoImageProcessor.from_pretrained(d)
            hf_px = proc(images=pil, return_tensors="pt")["pixel_values"]
            print(f"     {name}: processor {type(proc).__name__}, pixel_values {tuple(hf_px.shape)}")
            report(f"{name} pixel_values max abs diff", (hf_px - px).abs().max().item(), 1e-6)
        except Exception as e:  # report, keep checking the model
            failed += 1
            print(f"FAIL {name} processor: {e!r}")
        hf = cls.from_pretrained(d)
        hf.eval()
        with torch.no_grad():
            if name == "clip":
                ref = mine.image_embeds(px)
                out = hf.get_image_features(pixel_values=px)
                out = out if torch.is_tensor(out) else out.pooler_output
                report("clip image_embeds max abs diff / max", ((out - ref).abs().max() / ref.abs().max()).item(), 1e-5)
                tok = T.Tokenizer(T.read_merges(d))
                hft = AutoTokenizer.from_pretrained(d)
                print(f"     clip tokenizer {type(hft).__name__}")
                texts = [T.CLASS_PROMPT.format(c) for c in T.read_lines(os.path.join(world, "classes.txt"))]
                texts += [T.TEXTURE_PROMPT.format(t) for t in T.read_lines(os.path.join(world, "textures.txt"))]
                texts += ["A Photo of a RED   circle, on a striped background!", "don't stop 3.14 ok?"]
                ids_hf = hft(texts, padding=True, return_tensors="pt")
                ids_me = tok.batch(texts, ids_hf["input_ids"].shape[1])
                same = all((ids_hf["input_ids"][i][: len(tok.encode(t)) + 2] == ids_me[i][: len(tok.encode(t)) + 2]).all()
                           for i, t in enumerate(texts))
                report("clip tokenizer ids differ (0 = same)", 0.0 if same else 1.0, 0)
                if not same:
                    print("     hf:", ids_hf["input_ids"][:2].tolist(), "\n     me:", ids_me[:2].tolist())
                ref_t = mine.text_embeds(ids_me)
                out_t = hf.get_text_features(input_ids=ids_hf["input_ids"], attention_mask=ids_hf["attention_mask"])
                out_t = out_t if torch.is_tensor(out_t) else out_t.pooler_output
                report("clip text_embeds max abs diff / max", ((out_t - ref_t).abs().max() / ref_t.abs().max()).item(), 1e-5)
                o = hf(input_ids=ids_hf["input_ids"], attention_mask=ids_hf["attention_mask"], pixel_values=px)
                ref_l = mine.logit_scale.exp() * F.normalize(ref, dim=-1) @ F.normalize(ref_t, dim=-1).t()
                report("clip logits_per_image max abs diff", (o.logits_per_image - ref_l).abs().max().item(), 1e-3)
            else:
                ref = mine(px)
                out = hf(pixel_values=px).logits
                report(f"{name} logits max abs diff / max", ((out - ref).abs().max() / ref.abs().max()).item(), 1e-5)
                report(f"{name} argmax disagreements", (out.argmax(1) != ref.argmax(1)).sum().item(), 0)
    print("FAILED" if failed else "ALL OK", failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
