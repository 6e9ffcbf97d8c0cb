#!/usr/bin/python3
"""`miclip plan` counts what the stages will do on a real folder layout (label unit; issue 17).

Config.json-only ViT-B/16 (id2label class_0..class_999) and CLIP-B/16 folders, and an ImageNet
layout of empty files (listing does not decode): 3 wnid class folders x 2 images in train and val,
a DTD folder of 2 textures x 2 images. From the files the test writes:
  - with datasets.*.class_names mapping the wnids onto the target's labels, extraction embeds
    every one of the target's 1000 labels as a class prompt (`classes` 1000), without it the 3
    folder names; a concept set `source: classes` counts as that many concepts;
  - intervene edits only the images of a class the target has: the 6 val images, not the 4 DTD
    ones (a ViT's labels are not textures; prefix_cache.c skips that split); with a CLIP target,
    which classifies any class zero-shot, all 10; with the class names not among the target's
    labels, none of the val images either;
  - baselines with clip_dissect costs, over act_values, CLIP-Dissect's cosines as
    clip_dissect_scores computes them: 2 e Cn ((U K + N) / P + N) flops for U = the layer's 768
    neurons + 64 SAE features, K = min(100, N) = 4 probe slots, N = 4 training images, e = 512,
    Cn = 1000 concepts, P = 2 ranks (docs/performance.md);
  - `run_seconds` (the stage inside one `miclip run`) is the tasks' sum without the per-task
    job start-up: for every stage core_hours x 3600 / cores - tasks x 10 s, where extract's tasks
    differ (a per-seed train sample, shared eval and unseen stores extracted once).
Prints 'N passed, N failed'; exit 0 only when all pass."""
import json
import os
import subprocess
import sys
import tempfile

MICLIP = os.environ.get("MICLIP", "miclip")
PASS = FAIL = 0
START_S = 10.0  # MC_PLAN_TASK_START_S (plan.h): one task's start-up as its own job


def check(cond, what):
    global PASS, FAIL
    PASS += bool(cond)
    FAIL += not cond
    print(("PASS: " if cond else "FAIL: ") + what)


VIT = {"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": 768,
       "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
       "image_size": 224, "patch_size": 16, "num_channels": 3,
       "id2label": {str(i): "class_%d" % i for i in range(1000)}}
CLIP = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 512,
        "vision_config": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072, "image_size": 224, "patch_size": 16},
        "text_config": {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
                        "intermediate_size": 2048, "max_position_embeddings": 77,
                        "vocab_size": 49408}}
WNIDS = ["n01440764", "n01443537", "n01484850"]


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").close()


def plan(tmp, name, target, names_file, methods="[act_values]"):
    cn = ", class_names: %s" % names_file if names_file else ""
    cfg = os.path.join(tmp, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: {name}
seeds: [0, 1, 2]
models: {{target: {target}, clip: {tmp}/clip}}
datasets:
  train: {{kind: imagenet, root: {tmp}/imagenet, split: train, n_samples: 4{cn}}}
  eval: {{kind: imagenet, root: {tmp}/imagenet, split: val{cn}}}
  unseen: {{kind: dtd, root: {tmp}/dtd}}
concepts:
  - {{name: classes, source: classes}}
extract: {{layers: ["10"], pool: cls}}
sae: {{layer: "10", features: 64, k: 4}}
align: {{stop: epochs}}
intervene: {{methods: [act_values], units: [neuron], layer: "10", datasets: [eval, unseen]}}
baselines: {{methods: {methods}}}
stages: [extract, sae, align, baselines, intervene]
""")
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--json", "--ranks", "2", "--threads", "2"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None
    return json.loads(r.stdout)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, c in (("vit", VIT), ("clip", CLIP)):
            os.makedirs(os.path.join(tmp, name))
            json.dump(c, open(os.path.join(tmp, name, "config.json"), "w"))
        for w in WNIDS:
            for split in ("train", "val"):
                for i in range(2):
                    touch(os.path.join(tmp, "imagenet", split, w, "%s_%d.JPEG" % (w, i)))
        for t in ("banded", "woven"):
            for i in range(2):
                touch(os.path.join(tmp, "dtd", "images", t, "%s_%d.jpg" % (t, i)))
        names = os.path.join(tmp, "class_names.txt")
        with open(names, "w") as f:
            f.writelines("%s\tclass_%d\n" % (w, 10 * i) for i, w in enumerate(WNIDS))
        other = os.path.join(tmp, "other_names.txt")
        with open(other, "w") as f:
            f.writelines("%s\tnot a label %d\n" % (w, i) for i, w in enumerate(WNIDS))
        n_val, n_dtd = 2 * len(WNIDS), 4

        p = plan(tmp, "mapped", os.path.join(tmp, "vit"), names)
        check(p is not None, "plan of the mapped ImageNet layout runs")
        if p is None:
            return
        check(p["classes"] == 1000 and p["concepts"] == 1000,
              "class_names onto id2label: 1000 class prompts and concepts (got %d, %d)"
              % (p["classes"], p["concepts"]))
        check(p["images"]["eval"] == n_val and p["images"]["unseen"] == n_dtd,
              "eval %d, unseen %d images listed" % (p["images"]["eval"], p["images"]["unseen"]))
        check(p["intervened_images"] == n_val,
              "intervene edits the %d val images, not the DTD ones (got %d)"
              % (n_val, p["intervened_images"]))
        cores = p["ranks"] * p["threads"]
        for s in p["stages"]:
            want = s["core_hours"] * 3600 / cores - s["tasks"] * START_S
            check(abs(s["run_seconds"] - want) <= 1e-6 * max(1.0, want),
                  "%s: run_seconds %.3f = core_hours x 3600 / cores - tasks x start %.3f"
                  % (s["stage"], s["run_seconds"], want))
        ex = [s for s in p["stages"] if s["stage"] == "extract"][0]
        check(ex["tasks"] == 3 and ex["run_seconds"] < ex["tasks"] * (ex["wall_seconds_per_task"] - START_S),
              "extract: the shared stores counted once, below 3 x the longest task (%.1f < %.1f)"
              % (ex["run_seconds"], 3 * (ex["wall_seconds_per_task"] - START_S)))

        bl_av = [s for s in p["stages"] if s["stage"] == "baselines"][0]
        q = plan(tmp, "mapped-cd", os.path.join(tmp, "vit"), names, "[act_values, clip_dissect]")
        bl_cd = q and [s for s in q["stages"] if s["stage"] == "baselines"][0]
        U, K, N, e, Cn, P = 768 + 64, 4, 4, 512, 1000, 2
        want = 2.0 * e * Cn * ((U * K + N) / P + N) / 1e12
        got = bl_cd and bl_cd["tflop_per_task"] - bl_av["tflop_per_task"]
        check(bl_cd is not None and abs(got - want) <= 1e-9 * want,
              "baselines: clip_dissect's cosines on top of act_values, %.6g TFLOP (got %s)" % (want, got))

        p = plan(tmp, "folders", os.path.join(tmp, "vit"), None)
        check(p is not None and p["classes"] == len(WNIDS),
              "no class_names and 3 of 1000 wnids: the 3 folders are the classes (got %s)"
              % (p and p["classes"]))
        check(p is not None and p["intervened_images"] == 0,
              "folder names that are not the target's labels: nothing to edit (got %s)"
              % (p and p["intervened_images"]))

        p = plan(tmp, "other", os.path.join(tmp, "vit"), other)
        check(p is not None and p["intervened_images"] == 0,
              "class names that are not the target's labels: nothing to edit (got %s)"
              % (p and p["intervened_images"]))

        p = plan(tmp, "clipt", os.path.join(tmp, "clip"), names)
        check(p is not None and p["intervened_images"] == n_val + n_dtd,
              "a CLIP target edits every image, DTD included: %d (got %s)"
              % (n_val + n_dtd, p and p["intervened_images"]))


main()
print("%d passed, %d failed" % (PASS, FAIL))
sys.exit(1 if FAIL else 0)
