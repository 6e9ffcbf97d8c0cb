"""check_model_desc.py - the weightless model description (model_desc.h) of full-size configs
against PyTorch models built from the same configs.

usage: check_model_desc.py DESC_DUMP SOURCE_DIR

ViT-B/16 (slurm/paper/models/vit-base-patch16-224/config.json) and ResNet-50 (microsoft/resnet-50's
ResNetConfig, written here) are torchvision's vit_b_16 and resnet50; the CLIP-B/16 vision tower is
torchvision's VisionTransformer with CLIP's sizes plus what CLIP adds or drops (pre-LayerNorm, no
patch bias, a bias-free projection); the CLIP text tower and MPNet are torch.nn modules of their
sizes. Checked: the parameter count (a state dict's elements, BatchNorm statistics included,
num_batches_tracked not) and the multiply-adds of one forward, counted by hooks on every
convolution, linear layer and attention module of the PyTorch model (attention: in and out
projections from the module's weights, 2 T^2 D for scores and mixing), against the description's
total and its cumulative count at each block / bottleneck layer."""
import json
import os
import subprocess
import sys
import tempfile

import torch
import torchvision

torch.set_num_threads(1)
DUMP, SRC = sys.argv[1], sys.argv[2]
failures = 0


def check(ok, what):
    global failures
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures += 1


def describe(cfg_path, family):
    r = subprocess.run([DUMP, cfg_path, family], capture_output=True, text=True)
    if r.returncode != 0:
        print("FAILED: desc_dump", cfg_path, family, r.stderr)
        sys.exit(1)
    return json.loads(r.stdout)


def n_params(module):
    return sum(v.numel() for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked"))


class MacCounter:
    """Multiply-adds per sample of every Conv2d, Linear and MultiheadAttention forward, in call
    order; marks records the running total after chosen modules."""

    def __init__(self, model, marks=()):
        self.total, self.at = 0, {}
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.MultiheadAttention):
                m.register_forward_hook(self.attn)
            elif isinstance(m, torch.nn.Conv2d):
                m.register_forward_hook(self.conv)
            elif isinstance(m, torch.nn.Linear) and not name.endswith("out_proj"):
                m.register_forward_hook(self.linear)
        for name, m in model.named_modules():
            if name in marks:
                m.register_forward_hook(lambda mod, i, o, n=name: self.at.__setitem__(n, self.total))

    def conv(self, m, i, o):
        k = m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups
        self.total += o[0].numel() * k

    def linear(self, m, i, o):
        self.total += o[0].numel() * m.in_features

    def attn(self, m, i, o):
        x = o[0]  # the attention output: [B, T, D] (batch_first) or [T, B, D]
        T, D = (x.shape[1], x.shape[2]) if m.batch_first else (x.shape[0], x.shape[2])
        self.total += 4 * T * D * D + 2 * T * T * D


def vit_like(image, patch, L, H, D, I, classes):
    return torchvision.models.VisionTransformer(image_size=image, patch_size=patch, num_layers=L,
                                                num_heads=H, hidden_dim=D, mlp_dim=I,
                                                num_classes=classes).eval()


def check_vit(cfg_path, family, vc, classes, clip):
    d = describe(cfg_path, family)
    D, L = vc["hidden_size"], vc["num_hidden_layers"]
    model = vit_like(vc["image_size"], vc["patch_size"], L, vc["num_attention_heads"], D,
                     vc["intermediate_size"], classes)
    marks = ["encoder.layers.encoder_layer_%d" % k for k in range(L)]
    cnt = MacCounter(model, ["conv_proj"] + marks)
    with torch.no_grad():
        model(torch.zeros(1, 3, vc["image_size"], vc["image_size"]))
    params = n_params(model)
    if clip:  # CLIP: no patch-conv bias, a pre-LayerNorm, a bias-free projection
        params += -D + 2 * D - classes
    tag = "%s %s" % (family, os.path.basename(os.path.dirname(cfg_path)))
    check(d["params"] == params, "%s: %d parameters (PyTorch %d)" % (tag, d["params"], params))
    check(d["mac"] == cnt.total, "%s: %d MACs per image (PyTorch hooks %d)" % (tag, d["mac"], cnt.total))
    layers = {l[0]: l for l in d["layers"]}
    ok = layers["embeddings"][3] == cnt.at["conv_proj"]
    ok = ok and all(layers[str(k + 1)][3] == cnt.at[marks[k]] for k in range(L))
    check(ok, "%s: cumulative MACs at the embeddings and after each block" % tag)
    T = (vc["image_size"] // vc["patch_size"]) ** 2 + 1
    check(layers["1"][1] == [T, D] and layers[d["layers"][-1][0]][1] == [classes],
          "%s: block shape [%d, %d], output [%d]" % (tag, T, D, classes))


def check_resnet(tmp):
    cfg = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet",
           "num_channels": 3, "embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048],
           "depths": [3, 4, 6, 3], "layer_type": "bottleneck", "hidden_act": "relu",
           "downsample_in_first_stage": False, "num_labels": 1000}
    path = os.path.join(tmp, "resnet50.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    d = describe(path, "resnet")
    model = torchvision.models.resnet50().eval()
    marks = ["layer%d.%d" % (s + 1, k) for s in range(4) for k in range(cfg["depths"][s])]
    cnt = MacCounter(model, marks)
    with torch.no_grad():
        model(torch.zeros(1, 3, 224, 224))
    params = n_params(model)
    check(d["params"] == params, "resnet-50: %d parameters (PyTorch %d)" % (d["params"], params))
    check(d["mac"] == cnt.total, "resnet-50: %d MACs per image (PyTorch hooks %d)" % (d["mac"], cnt.total))
    layers = {l[0]: l for l in d["layers"]}
    ok = True
    for s in range(4):
        for k in range(cfg["depths"][s]):
            ok = ok and layers["stages.%d.layers.%d" % (s, k)][3] == cnt.at["layer%d.%d" % (s + 1, k)]
    check(ok, "resnet-50: cumulative MACs after each bottleneck layer")
    shapes = [layers["stages.%d" % s][1] for s in range(4)]
    check(shapes == [[256, 56, 56], [512, 28, 28], [1024, 14, 14], [2048, 7, 7]],
          "resnet-50: stage maps %s" % shapes)


class TextTower(torch.nn.Module):
    """A text tower of the given sizes: token and position embeddings, L encoder blocks, an
    optional final LayerNorm and a bias-free projection of one pooled row."""

    def __init__(self, vocab, ctx, D, H, I, L, proj, buckets=0, clip=True):
        super().__init__()
        self.tok = torch.nn.Embedding(vocab, D)
        self.pos = torch.nn.Embedding(ctx, D)
        self.emb_ln = None if clip else torch.nn.LayerNorm(D)
        self.rel = torch.nn.Embedding(buckets, H) if buckets else None
        self.blocks = torch.nn.ModuleList(
            [torch.nn.TransformerEncoderLayer(D, H, I, dropout=0.0, batch_first=True) for _ in range(L)])
        self.final = torch.nn.LayerNorm(D) if clip else None
        self.proj = torch.nn.Linear(D, proj, bias=False) if proj else None

    def forward(self, ids):
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.proj(self.final(x)[:, -1]) if self.proj is not None else x.mean(1)


def check_text(tmp):
    cfg_path = os.path.join(SRC, "slurm/paper/models/clip-vit-base-patch16/config.json")
    with open(cfg_path) as f:
        cfg = json.load(f)
    tc = cfg["text_config"]
    d = describe(cfg_path, "clip_text")
    T = tc["max_position_embeddings"]
    model = TextTower(tc["vocab_size"], T, tc["hidden_size"], tc["num_attention_heads"],
                      tc["intermediate_size"], tc["num_hidden_layers"], cfg["projection_dim"])
    model.train()  # the module path (eval may take PyTorch's fused fast path, which hooks miss)
    cnt = MacCounter(model)
    with torch.no_grad():
        model(torch.zeros(1, T, dtype=torch.long))
    params = n_params(model)
    check(d["params"] == params, "clip_text: %d parameters (PyTorch %d)" % (d["params"], params))
    check(d["mac"] == cnt.total, "clip_text: %d MACs per %d-token sequence (PyTorch hooks %d)"
          % (d["mac"], T, cnt.total))
    # all-mpnet-base-v2's sizes
    mc = {"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet", "vocab_size": 30527,
          "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
          "intermediate_size": 3072, "max_position_embeddings": 514,
          "relative_attention_num_buckets": 32, "pad_token_id": 1}
    path = os.path.join(tmp, "mpnet.json")
    with open(path, "w") as f:
        json.dump(mc, f)
    d = describe(path, "mpnet")
    T = mc["max_position_embeddings"]
    model = TextTower(mc["vocab_size"], T, 768, 12, 3072, 12, 0, buckets=32, clip=False).train()
    cnt = MacCounter(model)
    with torch.no_grad():
        model(torch.zeros(1, T, dtype=torch.long))
    params = n_params(model)
    check(d["params"] == params, "mpnet: %d parameters (PyTorch %d)" % (d["params"], params))
    check(d["mac"] == cnt.total, "mpnet: %d MACs per %d-token sequence (PyTorch hooks %d)"
          % (d["mac"], T, cnt.total))


with tempfile.TemporaryDirectory(prefix="miclip_desc_") as tmp:
    vit_path = os.path.join(SRC, "slurm/paper/models/vit-base-patch16-224/config.json")
    with open(vit_path) as f:
        vc = json.load(f)
    vc = {k: vc.get(k, v) for k, v in dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                           intermediate_size=3072, image_size=224, patch_size=16).items()}
    check_vit(vit_path, "vit", vc, 1000, clip=False)
    clip_path = os.path.join(SRC, "slurm/paper/models/clip-vit-base-patch16/config.json")
    with open(clip_path) as f:
        cc = json.load(f)
    check_vit(clip_path, "clip_vision", cc["vision_config"], cc["projection_dim"], clip=True)
    check_resnet(tmp)
    check_text(tmp)

print("%d failure(s)" % failures)
sys.exit(1 if failures else 0)
