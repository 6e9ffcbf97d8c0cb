"""ref_vit.py - HF ViTForImageClassification in C against torchvision's vit_b_16 (built with
LayerNorm eps 1e-12, the HF value), full size, seeded random weights with non-trivial
LayerNorms, exported under HF names (hf-models.md §2.4). Checks logits, hooked hidden states,
the final layernorm, attention probabilities, unit scaling (beta 0 and 2) against a PyTorch
forward hook, and the prefix path (forward from a stored hidden state). Optional argument
'bf16' exports BF16 weights (the reference then uses the rounded weights)."""
import functools
import json
import os
import sys
import tempfile

import numpy as np
import torch
import torchvision

from refutil import Checker, make_tmp, bf16_round, read_mct, run_dump, write_mct, write_safetensors

torch.set_num_threads(1)
torch.manual_seed(1)
small = "small" in sys.argv
bf16 = "bf16" in sys.argv
kw = dict(norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-12))
if small:
    model = torchvision.models.VisionTransformer(image_size=64, patch_size=16, num_layers=3,
                                                 num_heads=4, hidden_dim=64, mlp_dim=96,
                                                 num_classes=10, **kw)
else:
    model = torchvision.models.vit_b_16(**kw)
model.eval()
with torch.no_grad():
    for name, p in model.named_parameters():
        if ".ln" in name or name.startswith("encoder.ln"):
            p.copy_((1.0 + 0.3 * torch.randn_like(p)) if name.endswith("weight") else 0.2 * torch.randn_like(p))
        elif p.dim() >= 2 and name != "class_token" and "pos_embedding" not in name:
            fan_in = p[0].numel()
            p.copy_(torch.randn_like(p) / fan_in ** 0.5)
        else:
            p.copy_(0.2 * torch.randn_like(p))
    if bf16:
        for p in model.parameters():
            p.copy_(torch.from_numpy(bf16_round(p.numpy())))

D = model.hidden_dim
L = len(model.encoder.layers)
sd = model.state_dict()
hf = {"vit.embeddings.cls_token": sd["class_token"],
      "vit.embeddings.position_embeddings": sd["encoder.pos_embedding"],
      "vit.embeddings.patch_embeddings.projection.weight": sd["conv_proj.weight"],
      "vit.embeddings.patch_embeddings.projection.bias": sd["conv_proj.bias"]}
for i in range(L):
    t, h = "encoder.layers.encoder_layer_%d." % i, "vit.encoder.layer.%d." % i
    W, b = sd[t + "self_attention.in_proj_weight"], sd[t + "self_attention.in_proj_bias"]
    for j, n in enumerate(["query", "key", "value"]):
        hf[h + "attention.attention.%s.weight" % n] = W[j * D:(j + 1) * D]
        hf[h + "attention.attention.%s.bias" % n] = b[j * D:(j + 1) * D]
    for a, c in [("ln_1", "layernorm_before"), ("ln_2", "layernorm_after"),
                 ("self_attention.out_proj", "attention.output.dense"),
                 ("mlp.0", "intermediate.dense"), ("mlp.3", "output.dense")]:
        hf[h + c + ".weight"] = sd[t + a + ".weight"]
        hf[h + c + ".bias"] = sd[t + a + ".bias"]
hf["vit.layernorm.weight"], hf["vit.layernorm.bias"] = sd["encoder.ln.weight"], sd["encoder.ln.bias"]
hf["classifier.weight"], hf["classifier.bias"] = sd["heads.head.weight"], sd["heads.head.bias"]
n_cls = hf["classifier.bias"].shape[0]

tmp = make_tmp("vit")
mdir = os.path.join(tmp, "model")
os.makedirs(mdir)
write_safetensors(os.path.join(mdir, "model.safetensors"), hf, dtype="bf16" if bf16 else None)
cfg = {"architectures": ["ViTForImageClassification"], "model_type": "vit",
       "hidden_size": D, "num_hidden_layers": L, "num_attention_heads": model.encoder.layers[0].num_heads,
       "intermediate_size": model.mlp_dim, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
       "image_size": model.image_size, "patch_size": model.patch_size, "num_channels": 3,
       "qkv_bias": True, "id2label": {str(i): "class %d" % i for i in range(n_cls)}}
json.dump(cfg, open(os.path.join(mdir, "config.json"), "w"))

S = model.image_size
x = torch.randn(2, 3, S, S)
write_mct(os.path.join(tmp, "px.mct"), x.numpy())

# Reference with hooks: hidden_states[0] is the encoder's input after the positions.
caps = {}
hooks = [model.encoder.layers.register_forward_pre_hook(lambda m, i: caps.__setitem__("embeddings", i[0].clone()))]
for k in range(1, L + 1):
    hooks.append(model.encoder.layers[k - 1].register_forward_hook(
        lambda m, i, o, k=k: caps.__setitem__(str(k), o.clone())))
hooks.append(model.encoder.ln.register_forward_hook(lambda m, i, o: caps.__setitem__("layernorm", o.clone())))
attn_k = min(3, L)
hooks.append(model.encoder.layers[attn_k - 1].ln_1.register_forward_hook(
    lambda m, i, o: caps.__setitem__("ln1", o.clone())))
with torch.no_grad():
    logits = model(x)
for h in hooks:
    h.remove()
# attention probabilities of block attn_k, from its LN1 output and in_proj weights
blk = model.encoder.layers[attn_k - 1].self_attention
torch.set_grad_enabled(False)
H, hd = blk.num_heads, D // blk.num_heads
q = caps["ln1"] @ blk.in_proj_weight[:D].T + blk.in_proj_bias[:D]
kk = caps["ln1"] @ blk.in_proj_weight[D:2 * D].T + blk.in_proj_bias[D:2 * D]
T = q.shape[1]
q = q.view(2, T, H, hd).transpose(1, 2)
kk = kk.view(2, T, H, hd).transpose(1, 2)
probs = torch.softmax(q @ kk.transpose(-1, -2) / hd ** 0.5, dim=-1)

mid = str(max(1, L // 2))
layers = ["embeddings", "1", mid, str(L), "layernorm", "logits"]
pre = os.path.join(tmp, "c")
run_dump(mdir, os.path.join(tmp, "px.mct"), pre, "--layers", ",".join(layers), "--attn", str(attn_k))
ck = Checker()
ck.compare("vit logits (output)", read_mct(pre + ".output.mct"), logits.numpy())
for n in layers[:-1]:
    ck.compare("vit layer %s" % n, read_mct(pre + ".%s.mct" % n), caps[n].numpy())
ck.compare("vit hook logits", read_mct(pre + ".logits.mct"), logits.numpy())
ck.compare("vit attention probs block %d" % attn_k, read_mct(pre + ".attn%d.mct" % attn_k), probs.numpy())

# Modify path: scale units at block `mid` by 0 and 2; PyTorch does the same in a forward hook.
units = [0, 5, D - 1]
for beta in (0.0, 2.0):
    def edit(m, i, o, beta=beta):
        o = o.clone()
        o[..., units] *= beta
        return o
    h = model.encoder.layers[int(mid) - 1].register_forward_hook(edit)
    last = {}
    h2 = model.encoder.layers[L - 1].register_forward_hook(lambda m, i, o: last.__setitem__("x", o.clone()))
    with torch.no_grad():
        ref = model(x)
    h.remove(), h2.remove()
    pe = os.path.join(tmp, "e%g" % beta)
    run_dump(mdir, os.path.join(tmp, "px.mct"), pe, "--edit", mid, "--units", ",".join(map(str, units)),
             "--beta", beta, "--layers", str(L))
    ck.compare("vit edit beta=%g logits" % beta, read_mct(pe + ".output.mct"), ref.numpy())
    ck.compare("vit edit beta=%g layer %d" % (beta, L), read_mct(pe + ".%d.mct" % L), last["x"].numpy())

# Prefix path: start from the stored hidden state at `mid` (C's own capture) == full forward.
pp = os.path.join(tmp, "p")
run_dump(mdir, os.path.join(tmp, "px.mct"), pp, "--start", mid, pre + ".%s.mct" % mid)
full = read_mct(pre + ".output.mct")
ck.compare("vit prefix from %s == full (C)" % mid, read_mct(pp + ".output.mct"), full, tol=1e-6)
ck.compare("vit prefix from %s vs torch" % mid, read_mct(pp + ".output.mct"), logits.numpy())
# Prefix + edit at the start layer == edit in the full forward (the intervention stage's use).
run_dump(mdir, os.path.join(tmp, "px.mct"), pp + "e", "--start", mid, pre + ".%s.mct" % mid,
         "--edit", mid, "--units", ",".join(map(str, units)), "--beta", 2)
ck.compare("vit prefix+edit == full edit", read_mct(pp + "e.output.mct"),
           read_mct(os.path.join(tmp, "e2.output.mct")), tol=1e-6)

ck.finish()
