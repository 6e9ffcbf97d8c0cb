#!/usr/bin/python3
"""PyTorch side of bench/text.sh: the CLIP text tower and the MPNet encoder written the way
Hugging Face's eager modules run them (F.linear, batches padded to their longest row, an
additive causal / padding mask, softmax, one matmul per attention side), on the same weights
and the same token ids as miclip, with torch.set_num_threads(THREADS).

Usage: text_torch.py clip|mpnet MODEL_DIR IDS.npy THREADS [BATCH]
IDS.npy: int32 [N, L] rows (CLIP: zero-padded after <|endoftext|>; MPNet: <pad>=1-padded).
Prints concepts/s of the forward passes only (tokenization and loading excluded)."""
import json
import math
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

family, folder, ids_path, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
batch = int(sys.argv[5]) if len(sys.argv) > 5 else 256
torch.set_num_threads(threads)


def load_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in h.items():
        if k == "__metadata__" or v["dtype"] != "F32":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.from_numpy(np.frombuffer(data[b:e], dtype="<f4").reshape(v["shape"]).copy())
    return out


W = load_st(folder + "/model.safetensors")
ids_all = np.load(ids_path)
N = ids_all.shape[0]


def attn(x, p, names, H, mask):
    B, T, D = x.shape
    q, k, v = (F.linear(x, W[p + n + ".weight"], W[p + n + ".bias"]).view(B, T, H, D // H).transpose(1, 2)
               for n in names)
    s = torch.matmul(q, k.transpose(-1, -2)) * (D // H) ** -0.5 + mask
    return torch.matmul(torch.softmax(s, dim=-1), v).transpose(1, 2).reshape(B, T, D)


def clip_forward(ids):
    D = W["text_model.final_layer_norm.weight"].shape[0]
    H = D // 64
    B, T = ids.shape
    x = W["text_model.embeddings.token_embedding.weight"][ids] + W["text_model.embeddings.position_embedding.weight"][:T]
    mask = torch.full((T, T), torch.finfo(torch.float32).min).triu(1)[None, None]
    i = 0
    while "text_model.encoder.layers.%d.layer_norm1.weight" % i in W:
        p = "text_model.encoder.layers.%d." % i
        h = F.layer_norm(x, (D,), W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], 1e-5)
        a = attn(h, p + "self_attn.", ["q_proj", "k_proj", "v_proj"], H, mask)
        x = x + F.linear(a, W[p + "self_attn.out_proj.weight"], W[p + "self_attn.out_proj.bias"])
        h = F.layer_norm(x, (D,), W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], 1e-5)
        h = F.linear(h, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"])
        h = h * torch.sigmoid(1.702 * h)
        x = x + F.linear(h, W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
        i += 1
    x = F.layer_norm(x, (D,), W["text_model.final_layer_norm.weight"], W["text_model.final_layer_norm.bias"], 1e-5)
    return F.linear(x[torch.arange(B), ids.argmax(-1)], W["text_projection.weight"])


def bucket(rel):
    n = -rel
    ret = (n < 0).long() * 16
    n = n.abs()
    large = torch.min(8 + (torch.log(n.float() / 8) / math.log(16) * 8).long(), torch.full_like(n, 15))
    return ret + torch.where(n < 8, n, large)


def mpnet_forward(ids, att):
    D = W["embeddings.LayerNorm.weight"].shape[0]
    H = W["encoder.relative_attention_bias.weight"].shape[1]
    B, T = ids.shape
    m = (ids != 1).long()
    pos = torch.cumsum(m, 1) * m + 1
    x = F.layer_norm(W["embeddings.word_embeddings.weight"][ids] + W["embeddings.position_embeddings.weight"][pos], (D,),
                     W["embeddings.LayerNorm.weight"], W["embeddings.LayerNorm.bias"], 1e-5)
    r = torch.arange(T)
    bias = W["encoder.relative_attention_bias.weight"][bucket(r[None, :] - r[:, None])].permute(2, 0, 1)[None]
    mask = bias + (1.0 - att[:, None, None, :].float()) * torch.finfo(torch.float32).min
    i = 0
    while "encoder.layer.%d.attention.attn.q.weight" % i in W:
        p = "encoder.layer.%d." % i
        a = attn(x, p + "attention.attn.", ["q", "k", "v"], H, mask)
        x = F.layer_norm(F.linear(a, W[p + "attention.attn.o.weight"], W[p + "attention.attn.o.bias"]) + x, (D,),
                         W[p + "attention.LayerNorm.weight"], W[p + "attention.LayerNorm.bias"], 1e-5)
        h = F.gelu(F.linear(x, W[p + "intermediate.dense.weight"], W[p + "intermediate.dense.bias"]))
        x = F.layer_norm(F.linear(h, W[p + "output.dense.weight"], W[p + "output.dense.bias"]) + x, (D,),
                         W[p + "output.LayerNorm.weight"], W[p + "output.LayerNorm.bias"], 1e-5)
        i += 1
    am = att[:, :, None].float()
    return F.normalize((x * am).sum(1) / am.sum(1).clamp(min=1e-9), dim=1)


t0 = time.perf_counter()
c0 = time.process_time()
with torch.inference_mode():
    for b0 in range(0, N, batch):
        rows = torch.from_numpy(ids_all[b0:b0 + batch].astype(np.int64))
        if family == "clip":
            eot = rows.argmax(-1)
            T = int(eot.max()) + 1  # HF pads a batch to its longest row
            clip_forward(rows[:, :T])
        else:
            att = (rows != 1).long()
            T = int(att.sum(1).max())
            mpnet_forward(rows[:, :T], att[:, :T])
dt = time.perf_counter() - t0
print("pytorch %-5s threads %d: %d concepts in %.2f s wall (%.2f s CPU): %.0f concepts/s" %
      (family, threads, N, dt, time.process_time() - c0, N / dt))
