#!/usr/bin/python3
"""`miclip plan` counts of full-size models against an independent count (label unit).

The plan reads only config.json. Here the config.json files of google/vit-base-patch16-224,
microsoft/resnet-50 and openai/clip-vit-base-patch16 are written with their published sizes,
and the plan's multiply-adds per image and parameter counts are compared with a count taken on
torchvision's own vit_b_16 and resnet50 (the same architectures; ResNet v1.5, stride in the
3x3 convolution, as in Hugging Face's ResNet): forward hooks on every Conv2d and Linear count
multiply-adds from the tensors' real shapes (out elements x in_channels/groups x kernel area,
out elements x in_features), and each MultiheadAttention adds its packed projections and the
two T x T products from its input shape. Agreement within 2% is required (LayerNorm, softmax
and activations are left out by both). The torchvision documentation's figures (17.56 and 4.09
"GFLOPS", which count multiply-adds) are checked too.

Prints 'N passed, N failed'; exit 0 only when all pass."""
import json
import os
import subprocess
import sys
import tempfile

import torch
import torchvision

MICLIP = os.environ.get("MICLIP", "miclip")
PASS = FAIL = 0


def check(cond, what):
    global PASS, FAIL
    PASS += bool(cond)
    FAIL += not cond
    print(("PASS: " if cond else "FAIL: ") + what)


VIT = {"architectures": ["ViTForImageClassification"], "model_type": "vit", "hidden_size": 768,
       "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
       "image_size": 224, "patch_size": 16, "num_channels": 3, "num_labels": 1000}
RESNET = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet",
          "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3],
          "layer_type": "bottleneck", "num_channels": 3, "downsample_in_first_stage": False,
          "num_labels": 1000}
CLIP = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 512,
        "vision_config": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                          "intermediate_size": 3072, "image_size": 224, "patch_size": 16},
        "text_config": {"hidden_size": 512, "num_hidden_layers": 12, "num_attention_heads": 8,
                        "intermediate_size": 2048, "max_position_embeddings": 77,
                        "vocab_size": 49408}}


def hook_count(model, size=224):
    """Multiply-adds of one image through model, counted by forward hooks."""
    total = [0]

    def conv(m, i, o):
        total[0] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear(m, i, o):
        total[0] += o.numel() * m.in_features

    def mha(m, i, o):
        q = o[0]  # the attention output, shaped like the query: [B, T, D] or [T, B, D]
        T = q.shape[1] if m.batch_first else q.shape[0]
        D = m.embed_dim
        total[0] += 4 * T * D * D + 2 * T * T * D  # in_proj (q, k, v), out_proj, QK^T, PV

    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(conv)
        elif isinstance(mod, torch.nn.MultiheadAttention):
            mod.register_forward_hook(mha)
        elif isinstance(mod, torch.nn.Linear) and not isinstance(
                mod, torch.nn.modules.linear.NonDynamicallyQuantizableLinear):
            mod.register_forward_hook(linear)  # MHA's out_proj is counted by the MHA hook
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return total[0] / 1e9


def plan(tmp, target, layers):
    cfg = os.path.join(tmp, "p-%s.yaml" % os.path.basename(target))
    with open(cfg, "w") as f:
        f.write("name: p\nmodels: {target: %s, clip: %s}\n"
                "datasets:\n  train: {kind: world, root: %s/absent, split: train, n_samples: 1000}\n"
                "extract: {layers: %s}\nstages: [extract]\n" % (target, os.path.join(tmp, "clip"), tmp, layers))
    r = subprocess.run([MICLIP, "--quiet", "plan", cfg, "--json"], capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        return None
    return json.loads(r.stdout)


def main():
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in (("vit", VIT), ("resnet", RESNET), ("clip", CLIP)):
            os.makedirs(os.path.join(tmp, name))
            with open(os.path.join(tmp, name, "config.json"), "w") as f:
                json.dump(cfg, f)
        pv = plan(tmp, os.path.join(tmp, "vit"), '["10", logits]')
        pr = plan(tmp, os.path.join(tmp, "resnet"), '["stages.3", logits]')
        check(pv is not None and pr is not None, "miclip plan --json runs on config.json-only folders")
        if pv is None or pr is None:
            return
        vit = torchvision.models.vit_b_16()
        rn = torchvision.models.resnet50()
        hv, hr = hook_count(vit), hook_count(rn)
        gv, gr = pv["target"]["gmac_per_image"], pr["target"]["gmac_per_image"]
        check(abs(gv - hv) / hv < 0.02, "ViT-B/16: plan %.3f GMAC/image vs torchvision hooks %.3f (2%%)" % (gv, hv))
        check(abs(gr - hr) / hr < 0.02, "ResNet-50: plan %.3f GMAC/image vs torchvision hooks %.3f (2%%)" % (gr, hr))
        check(abs(gv - 17.56) / 17.56 < 0.02, "ViT-B/16: plan %.3f vs torchvision docs 17.56 (2%%)" % gv)
        check(abs(gr - 4.09) / 4.09 < 0.02, "ResNet-50: plan %.3f vs torchvision docs 4.09 (2%%)" % gr)
        gc = pv["clip"]["gmac_per_image"]
        # CLIP-B/16's vision tower is ViT-B/16's encoder with a 512-d projection instead of the head
        hc = hv - 768 * 1000 / 1e9 + 768 * 512 / 1e9
        check(abs(gc - hc) / hc < 0.02, "CLIP-B/16 vision: plan %.3f vs hooks %.3f (2%%)" % (gc, hc))
        nv = sum(p.numel() for p in vit.parameters())
        nr = sum(p.numel() for p in rn.parameters()) + sum(
            b.numel() for n, b in rn.named_buffers() if "running" in n)  # plan counts BN statistics
        check(abs(pv["target"]["params"] - nv) / nv < 0.005,
              "ViT-B/16 parameters: plan %d vs torchvision %d" % (pv["target"]["params"], nv))
        check(abs(pr["target"]["params"] - nr) / nr < 0.005,
              "ResNet-50 parameters (+ BN statistics): plan %d vs torchvision %d" % (pr["target"]["params"], nr))
        check(not pv["target"]["sizes_from_weights"], "without weights the plan says its sizes are estimates")


if __name__ == "__main__":
    main()
    print("%d passed, %d failed" % (PASS, FAIL))
    sys.exit(1 if FAIL else 0)
