"""ref_clip.py - the CLIP vision tower + visual_projection in C against a PyTorch reference
written from hf-models.md §3.3 (no transformers package on this machine): conv patches without
bias, class_embedding, positions, pre_layrnorm, pre-norm blocks with quick_gelu, post_layernorm
on the CLS token, bias-free projection. Full size is the openai/clip-vit-base-patch16 vision
side; 'small' is a 2-block variant. The exported folder is a CLIPModel with text-tower tensors
too (the vision loader must ignore them) and uses the legacy vision_config_dict override."""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

from refutil import Checker, make_tmp, read_mct, run_dump, write_mct, write_safetensors

torch.set_num_threads(1)
torch.manual_seed(3)
torch.set_grad_enabled(False)
small = "small" in sys.argv
if small:
    D, L, H, I, P, S, proj = 64, 2, 4, 128, 16, 64, 32
else:
    D, L, H, I, P, S, proj = 768, 12, 12, 3072, 16, 224, 512
T = (S // P) ** 2 + 1
eps = 1e-5
g = torch.Generator().manual_seed(3)


def rn(*shape, s=1.0):
    return torch.randn(*shape, generator=g) * s


def lin(o, i):
    return rn(o, i, s=i ** -0.5)


W = {"vision_model.embeddings.class_embedding": rn(D, s=0.2),
     "vision_model.embeddings.patch_embedding.weight": rn(D, 3, P, P, s=(3 * P * P) ** -0.5),
     "vision_model.embeddings.position_embedding.weight": rn(T, D, s=0.2),
     "vision_model.pre_layrnorm.weight": 1 + rn(D, s=0.3), "vision_model.pre_layrnorm.bias": rn(D, s=0.2),
     "vision_model.post_layernorm.weight": 1 + rn(D, s=0.3), "vision_model.post_layernorm.bias": rn(D, s=0.2),
     "visual_projection.weight": lin(proj, D)}
for l in range(L):
    p = "vision_model.encoder.layers.%d." % l
    for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
        W[p + "self_attn.%s.weight" % n] = lin(D, D)
        W[p + "self_attn.%s.bias" % n] = rn(D, s=0.1)
    for n in ["layer_norm1", "layer_norm2"]:
        W[p + n + ".weight"] = 1 + rn(D, s=0.3)
        W[p + n + ".bias"] = rn(D, s=0.2)
    W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"] = lin(I, D), rn(I, s=0.1)
    W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"] = lin(D, I), rn(D, s=0.1)


def ln(x, n):
    return F.layer_norm(x, (D,), W[n + ".weight"], W[n + ".bias"], eps)


def forward(x, edit=None):
    """Returns image_embeds and hidden_states[0..L] as HF defines them."""
    B = x.shape[0]
    e = F.conv2d(x, W["vision_model.embeddings.patch_embedding.weight"], stride=P)  # no bias
    e = e.flatten(2).transpose(1, 2)
    cls = W["vision_model.embeddings.class_embedding"].expand(B, 1, D)
    h = torch.cat([cls, e], 1) + W["vision_model.embeddings.position_embedding.weight"]
    h = ln(h, "vision_model.pre_layrnorm")
    hs = [h]
    for l in range(L):
        p = "vision_model.encoder.layers.%d." % l
        y = ln(h, p + "layer_norm1")
        q = F.linear(y, W[p + "self_attn.q_proj.weight"], W[p + "self_attn.q_proj.bias"]) * (D // H) ** -0.5
        k = F.linear(y, W[p + "self_attn.k_proj.weight"], W[p + "self_attn.k_proj.bias"])
        v = F.linear(y, W[p + "self_attn.v_proj.weight"], W[p + "self_attn.v_proj.bias"])
        sh = lambda t: t.view(B, T, H, D // H).transpose(1, 2)
        a = torch.softmax(sh(q) @ sh(k).transpose(-1, -2), -1) @ sh(v)
        a = a.transpose(1, 2).reshape(B, T, D)
        h = h + F.linear(a, W[p + "self_attn.out_proj.weight"], W[p + "self_attn.out_proj.bias"])
        y = ln(h, p + "layer_norm2")
        y = F.linear(y, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"])
        y = y * torch.sigmoid(1.702 * y)  # quick_gelu
        h = h + F.linear(y, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
        if edit and edit[0] == l + 1:
            h = h.clone()
            h[..., edit[1]] *= edit[2]
        hs.append(h)
    pooled = ln(h[:, 0], "vision_model.post_layernorm")
    return F.linear(pooled, W["visual_projection.weight"]), hs, pooled


tmp = make_tmp("clip")
mdir = os.path.join(tmp, "model")
os.makedirs(mdir)
st = dict(W)
# text-side tensors the vision loader must ignore, and the buffers it must tolerate
st["text_model.embeddings.token_embedding.weight"] = rn(10, 8)
st["text_projection.weight"] = rn(proj, 8)
st["logit_scale"] = torch.tensor(4.6052)
st["vision_model.embeddings.position_ids"] = torch.arange(T).view(1, T)
write_safetensors(os.path.join(mdir, "model.safetensors"), st)
vcfg = {"hidden_size": D, "num_hidden_layers": L, "num_attention_heads": H, "intermediate_size": I,
        "image_size": S, "patch_size": 16}
cfg = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": proj,
       # vision_config carries a wrong patch size that the legacy dict overrides
       "vision_config": dict(vcfg, patch_size=32), "vision_config_dict": vcfg,
       "text_config": {"hidden_size": 8}}
json.dump(cfg, open(os.path.join(mdir, "config.json"), "w"))

x = torch.randn(2, 3, S, S, generator=g)
write_mct(os.path.join(tmp, "px.mct"), x.numpy())
emb, hs, pooled = forward(x)
mid = max(1, L // 2)
layers = ["embeddings", "1", str(mid), str(L), "post_layernorm", "image_embeds"]
pre = os.path.join(tmp, "c")
run_dump(mdir, os.path.join(tmp, "px.mct"), pre, "--layers", ",".join(layers))
ck = Checker()
ck.compare("clip image_embeds (output)", read_mct(pre + ".output.mct"), emb.numpy())
ck.compare("clip layer embeddings", read_mct(pre + ".embeddings.mct"), hs[0].numpy())
for k in ["1", str(mid), str(L)]:
    ck.compare("clip layer %s" % k, read_mct(pre + ".%s.mct" % k), hs[int(k)].numpy())
ck.compare("clip post_layernorm", read_mct(pre + ".post_layernorm.mct"), pooled.numpy())
units = [1, 7, D - 2]
for beta in (0.0, 2.0):
    ref, _, _ = forward(x, edit=(mid, units, beta))
    pe = os.path.join(tmp, "e")
    run_dump(mdir, os.path.join(tmp, "px.mct"), pe, "--edit", mid, "--units", ",".join(map(str, units)),
             "--beta", beta)
    ck.compare("clip edit beta=%g" % beta, read_mct(pe + ".output.mct"), ref.numpy())
pp = os.path.join(tmp, "p")
run_dump(mdir, os.path.join(tmp, "px.mct"), pp, "--start", str(mid), pre + ".%d.mct" % mid)
ck.compare("clip prefix from %d == full (C)" % mid, read_mct(pp + ".output.mct"),
           read_mct(pre + ".output.mct"), tol=1e-6)
ck.finish()
