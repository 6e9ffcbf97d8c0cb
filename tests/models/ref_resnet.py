"""ref_resnet.py - HF ResNetForImageClassification in C against torchvision's resnet50 (the
same v1.5 architecture), full size, seeded random weights with every BatchNorm parameter and
running statistic non-trivial, exported under HF names (hf-models.md §1.4). Checks logits and
hooked module outputs (stem, embedder, layer internals, shortcuts, layer/stage outputs,
pooler), unit scaling (beta 0 and 2) against a PyTorch forward hook, and the prefix path.
'small' builds a two-stage bottleneck ResNet on 64x64 inputs (seconds)."""
import json
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torchvision
from torchvision.models.resnet import Bottleneck, ResNet

from refutil import Checker, make_tmp, read_mct, run_dump, write_mct, write_safetensors

torch.set_num_threads(1)
torch.manual_seed(2)
torch.set_grad_enabled(False)
small = "small" in sys.argv
if small:
    model = ResNet(Bottleneck, [2, 1, 1, 2], num_classes=7)
    depths, S = [2, 1, 1, 2], 64
else:
    model = torchvision.models.resnet50()
    depths, S = [3, 4, 6, 3], 224
model.eval()
for name, mod in model.named_modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        C = mod.num_features
        mod.weight.copy_(1.0 + 0.3 * torch.randn(C))
        mod.bias.copy_(0.2 * torch.randn(C))
        mod.running_mean.copy_(0.2 * torch.randn(C))
        mod.running_var.copy_(0.5 + torch.rand(C))
        mod.num_batches_tracked.fill_(7)
model.fc.bias.copy_(0.1 * torch.randn(model.fc.bias.shape))

sd = model.state_dict()
hf = {}


def put(tv, h):
    for k, v in sd.items():
        if k.startswith(tv + "."):
            hf[h + k[len(tv):]] = v


put("conv1", "resnet.embedder.embedder.convolution")
put("bn1", "resnet.embedder.embedder.normalization")
for s in range(4):
    for l in range(depths[s]):
        t, h = "layer%d.%d" % (s + 1, l), "resnet.encoder.stages.%d.layers.%d" % (s, l)
        for j in range(3):
            put(t + ".conv%d" % (j + 1), h + ".layer.%d.convolution" % j)
            put(t + ".bn%d" % (j + 1), h + ".layer.%d.normalization" % j)
        if l == 0:
            put(t + ".downsample.0", h + ".shortcut.convolution")
            put(t + ".downsample.1", h + ".shortcut.normalization")
hf["classifier.1.weight"], hf["classifier.1.bias"] = sd["fc.weight"], sd["fc.bias"]
assert len(hf) == len(sd), (len(hf), len(sd))
n_cls = sd["fc.bias"].shape[0]
hidden = [model.layer1[0].conv3.out_channels, model.layer2[0].conv3.out_channels,
          model.layer3[0].conv3.out_channels, model.layer4[0].conv3.out_channels]

tmp = make_tmp("resnet")
mdir = os.path.join(tmp, "model")
os.makedirs(mdir)
write_safetensors(os.path.join(mdir, "model.safetensors"), hf)
cfg = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet",
       "num_channels": 3, "embedding_size": model.conv1.out_channels, "hidden_sizes": hidden,
       "depths": depths, "layer_type": "bottleneck", "hidden_act": "relu",
       "downsample_in_first_stage": False,
       "id2label": {str(i): "class %d" % i for i in range(n_cls)}}
json.dump(cfg, open(os.path.join(mdir, "config.json"), "w"))

x = torch.randn(2, 3, S, S)
write_mct(os.path.join(tmp, "px.mct"), x.numpy())

caps = {}


def cap(name):
    return lambda m, i, o: caps.__setitem__(name, o.clone())


def pool_hook(m, i, o):
    caps["embedder.embedder"] = i[0].clone()
    caps["embedder"] = o.clone()


hooks = [model.maxpool.register_forward_hook(pool_hook)]
ls = depths[3] - 1
for s in range(4):
    stage = getattr(model, "layer%d" % (s + 1))
    hooks.append(stage.register_forward_hook(cap("stages.%d" % s)))
    for l in range(depths[s]):
        blk = stage[l]
        n = "stages.%d.layers.%d" % (s, l)
        hooks.append(blk.register_forward_hook(cap(n)))
        hooks.append(blk.bn3.register_forward_hook(cap(n + ".layer.2")))
        calls = []
        def relu_hook(m, i, o, n=n, calls=calls):
            k = len(calls) % 3
            calls.append(1)
            if k < 2:
                caps["%s.layer.%d" % (n, k)] = o.clone()
        hooks.append(blk.relu.register_forward_hook(relu_hook))
        if blk.downsample is not None:
            hooks.append(blk.downsample.register_forward_hook(cap(n + ".shortcut")))
        else:
            def pre(m, i, n=n):
                caps[n + ".shortcut"] = i[0].clone()
            hooks.append(blk.register_forward_pre_hook(pre))
hooks.append(model.avgpool.register_forward_hook(cap("pooler")))
logits = model(x)
for h in hooks:
    h.remove()

layers = ["embedder.embedder", "embedder", "stages.0.layers.0.shortcut", "stages.0.layers.1.shortcut",
          "stages.1.layers.0.layer.0", "stages.1.layers.0.layer.1", "stages.1.layers.0.layer.2",
          "stages.1.layers.0", "stages.1", "stages.2.layers.0", "stages.3.layers.%d" % ls,
          "stages.3", "pooler"]
pre = os.path.join(tmp, "c")
run_dump(mdir, os.path.join(tmp, "px.mct"), pre, "--layers", ",".join(layers + ["logits"]))
ck = Checker()
ck.compare("resnet logits (output)", read_mct(pre + ".output.mct"), logits.numpy())
for n in layers:
    ck.compare("resnet %s" % n, read_mct(pre + ".%s.mct" % n), caps[n].numpy())

# Modify path at stages.2.layers.0 (channels), beta 0 and 2, also a shortcut edit.
units = [0, 3, 17]
for target, tv_mod in [("stages.2.layers.0", model.layer3[0]), ("stages.1.layers.0.shortcut", model.layer2[0].downsample)]:
    for beta in (0.0, 2.0):
        def edit(m, i, o, beta=beta):
            o = o.clone()
            o[:, units] *= beta
            return o
        h = tv_mod.register_forward_hook(edit)
        ref = model(x)
        h.remove()
        pe = os.path.join(tmp, "e")
        run_dump(mdir, os.path.join(tmp, "px.mct"), pe, "--edit", target, "--units",
                 ",".join(map(str, units)), "--beta", beta)
        ck.compare("resnet edit %s beta=%g" % (target, beta), read_mct(pe + ".output.mct"), ref.numpy())

# Prefix path from a stage output and from a layer output.
full = read_mct(pre + ".output.mct")
for start in ["stages.1", "stages.2.layers.0", "embedder"]:
    pp = os.path.join(tmp, "p")
    run_dump(mdir, os.path.join(tmp, "px.mct"), pp, "--start", start, pre + ".%s.mct" % start)
    # not bit-equal: with a hook on a layer.2 the full run adds the residual after the conv
    # instead of inside the sgemm, which rounds differently
    ck.compare("resnet prefix from %s == full (C)" % start, read_mct(pp + ".output.mct"), full, tol=1e-5)

ck.finish()
