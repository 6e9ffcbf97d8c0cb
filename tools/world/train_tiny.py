#!/usr/bin/python3
"""Train the tiny world's models (a ViT, a ResNet and a CLIP) and write them as Hugging Face folders.

The committed models (experiments/world/, docs/world.md) were made in two steps:

    miclip world make --out W --seed 1 --per-class 500 --val-per-class 50 --unseen-per-class 50
    python3 tools/world/train_tiny.py --world W --out experiments/world --device cuda --seed 0
        (on a GPU machine: tools/world/gpu_train.sh; --device cpu, the default, works with
         Debian's torch 1.13 too, in a few hours on 2 cores)
    /usr/bin/python3 tools/world/train_tiny.py --world W --out experiments/world --reference-only
        (here, with Debian's PyTorch: measures the accuracies, writes the references)

What training writes, per model, under OUT/{vit,resnet,clip}/ (the layouts of
google/vit-base-patch16-224, microsoft/resnet-50 and openai/clip-vit-base-patch16; see
/work/shared/specs/hf-models.md sections 0-4):
  config.json, preprocessor_config.json, model.safetensors (written by hand: u64 header length,
  JSON header, raw little-endian F32/I64 data), and for CLIP vocab.json, merges.txt,
  tokenizer_config.json, special_tokens_map.json (a byte-level BPE built from the world's words).
--reference-only writes OUT/reference/{vit,resnet,clip}.json: the PyTorch outputs on a fixed set
of validation images (the first REF_PER_CLASS of each class), which tests/world compares with
miclip's C forward. Both write OUT/results.json: accuracies, seeds, times, the command line.

Reproducibility: every random number comes from torch generators seeded from --seed, the thread
count is fixed (--threads, default 2) and deterministic algorithms are requested, so the same
world, seed and machine give the same weights (checked bit for bit on the GPU machine).

Models are implemented here directly with Hugging Face parameter names, so the state dict is
saved as it is; nothing needs renaming. tests/world/test_world_models.py imports this file
(load_model, pixel_values, Tokenizer) as the PyTorch reference.
"""
import argparse
import json
import math
import os
import struct
import sys
import time

import numpy as np
import regex
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

REF_PER_CLASS = 5  # reference outputs: the first 5 val images of each class (180 images)
IMAGE_SIZE = 64

VIT_MEAN, VIT_STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
RESNET_MEAN, RESNET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------------------------------------
# Data


def load_split(world, split):
    """Images [N,64,64,3] uint8 and the attribute records of one split, in index order."""
    recs = [json.loads(l) for l in open(os.path.join(world, split, "attributes.jsonl"))]
    imgs = np.zeros((len(recs), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)
    for i, r in enumerate(recs):
        with Image.open(os.path.join(world, r["path"])) as im:
            imgs[i] = np.asarray(im.convert("RGB"))
    return imgs, recs


def pixel_values(imgs_u8, mean, std):
    """HF preprocessing at the native size (resize and crop are identities at 64x64): rescale by
    1/255 in float32 (equal to float32(x * (1/255.0)), spec section 5.5), then normalise."""
    x = torch.from_numpy(imgs_u8).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


def read_lines(path):
    return [l.strip() for l in open(path) if l.strip()]


# ---------------------------------------------------------------------------------------------
# Models, with Hugging Face module names


class Attention(nn.Module):
    """The multi-head attention core shared by the ViT and CLIP layers (no parameters: each
    layer owns its projections under its Hugging Face names)."""

    def __init__(self, d, heads):
        super().__init__()
        self.d, self.h = d, heads

    def attend(self, q, k, v, mask=None):
        B, T, d = q.shape
        hd = d // self.h
        q = q.view(B, T, self.h, hd).transpose(1, 2)
        k = k.view(B, T, self.h, hd).transpose(1, 2)
        v = v.view(B, T, self.h, hd).transpose(1, 2)
        a = (q @ k.transpose(-1, -2)) * (hd ** -0.5)
        if mask is not None:
            a = a + mask
        a = a.softmax(dim=-1)
        return (a @ v).transpose(1, 2).reshape(B, T, d)


class ViTSelfAttention(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.query = nn.Linear(d, d)
        self.key = nn.Linear(d, d)
        self.value = nn.Linear(d, d)


class ViTAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.attention = ViTSelfAttention(d)
        self.output = nn.Module()
        self.output.dense = nn.Linear(d, d)
        self.core = Attention(d, heads)

    def forward(self, x):
        a = self.attention
        y = self.core.attend(a.query(x), a.key(x), a.value(x))
        return self.output.dense(y)


class ViTLayer(nn.Module):
    def __init__(self, d, heads, inter, eps):
        super().__init__()
        self.layernorm_before = nn.LayerNorm(d, eps=eps)
        self.attention = ViTAttention(d, heads)
        self.layernorm_after = nn.LayerNorm(d, eps=eps)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(d, inter)
        self.output = nn.Module()
        self.output.dense = nn.Linear(inter, d)

    def forward(self, x):
        x = x + self.attention(self.layernorm_before(x))
        h = F.gelu(self.intermediate.dense(self.layernorm_after(x)))
        return x + self.output.dense(h)


class ViTForImageClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["hidden_size"], cfg["patch_size"]
        n = (cfg["image_size"] // p) ** 2
        self.vit = nn.Module()
        e = self.vit.embeddings = nn.Module()
        e.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        e.position_embeddings = nn.Parameter(torch.zeros(1, n + 1, d))
        e.patch_embeddings = nn.Module()
        e.patch_embeddings.projection = nn.Conv2d(3, d, p, stride=p)
        self.vit.encoder = nn.Module()
        self.vit.encoder.layer = nn.ModuleList(
            ViTLayer(d, cfg["num_attention_heads"], cfg["intermediate_size"], cfg["layer_norm_eps"])
            for _ in range(cfg["num_hidden_layers"]))
        self.vit.layernorm = nn.LayerNorm(d, eps=cfg["layer_norm_eps"])
        self.classifier = nn.Linear(d, cfg["num_labels"])

    def init(self, g):
        for name, prm in self.named_parameters():
            if name.endswith("bias"):
                nn.init.zeros_(prm)
            elif "layernorm" in name:
                nn.init.ones_(prm)
            else:
                with torch.no_grad():
                    prm.copy_(torch.randn(prm.shape, generator=g) * 0.02)

    def forward(self, x):
        e = self.vit.embeddings
        t = e.patch_embeddings.projection(x).flatten(2).transpose(1, 2)
        t = torch.cat([e.cls_token.expand(t.shape[0], -1, -1), t], dim=1) + e.position_embeddings
        for layer in self.vit.encoder.layer:
            t = layer(t)
        t = self.vit.layernorm(t)
        return self.classifier(t[:, 0])


class ConvLayer(nn.Module):
    """HF ResNetConvLayer: conv (no bias, padding k//2) + BN (+ ReLU unless act=False)."""

    def __init__(self, cin, cout, k, stride=1, act=True):
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False)
        self.normalization = nn.BatchNorm2d(cout)
        self.act = act

    def forward(self, x):
        x = self.normalization(self.convolution(x))
        return F.relu(x) if self.act else x


class ShortCut(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.convolution = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
        self.normalization = nn.BatchNorm2d(cout)

    def forward(self, x):
        return self.normalization(self.convolution(x))


class BottleNeckLayer(nn.Module):
    """ResNet v1.5 bottleneck (stride on the 3x3), HF names layer.0/1/2 and shortcut."""

    def __init__(self, cin, cout, stride, reduction=4):
        super().__init__()
        mid = cout // reduction
        self.shortcut = ShortCut(cin, cout, stride) if (cin != cout or stride != 1) else None
        self.layer = nn.Sequential(ConvLayer(cin, mid, 1), ConvLayer(mid, mid, 3, stride=stride),
                                   ConvLayer(mid, cout, 1, act=False))

    def forward(self, x):
        r = x if self.shortcut is None else self.shortcut(x)
        return F.relu(self.layer(x) + r)


class ResNetForImageClassification(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.resnet = nn.Module()
        emb = self.resnet.embedder = nn.Module()
        emb.embedder = ConvLayer(cfg["num_channels"], cfg["embedding_size"], 7, stride=2)
        self.resnet.encoder = nn.Module()
        stages = []
        cin = cfg["embedding_size"]
        for s, (cout, depth) in enumerate(zip(cfg["hidden_sizes"], cfg["depths"])):
            stride = 2 if (s > 0 or cfg["downsample_in_first_stage"]) else 1
            st = nn.Module()
            st.layers = nn.ModuleList(
                BottleNeckLayer(cin if l == 0 else cout, cout, stride if l == 0 else 1)
                for l in range(depth))
            stages.append(st)
            cin = cout
        self.resnet.encoder.stages = nn.ModuleList(stages)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(cin, cfg["num_labels"]))

    def init(self, g):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.out_channels * m.kernel_size[0] * m.kernel_size[1]
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * math.sqrt(2.0 / fan_out))
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.resnet.embedder.embedder(x)
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        for st in self.resnet.encoder.stages:
            for layer in st.layers:
                x = layer(x)
        x = x.mean(dim=(2, 3), keepdim=True)
        return self.classifier(x)


def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.q_proj = nn.Linear(d, d)
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)
        self.core = Attention(d, heads)

    def forward(self, x, mask=None):
        return self.out_proj(self.core.attend(self.q_proj(x), self.k_proj(x), self.v_proj(x), mask))


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, inter, eps):
        super().__init__()
        self.layer_norm1 = nn.LayerNorm(d, eps=eps)
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm2 = nn.LayerNorm(d, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, inter)
        self.mlp.fc2 = nn.Linear(inter, d)

    def forward(self, x, mask=None):
        x = x + self.self_attn(self.layer_norm1(x), mask)
        return x + self.mlp.fc2(quick_gelu(self.mlp.fc1(self.layer_norm2(x))))


class CLIPModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        vc, tc = cfg["vision_config"], cfg["text_config"]
        dv, dt, P = vc["hidden_size"], tc["hidden_size"], cfg["projection_dim"]
        n = (vc["image_size"] // vc["patch_size"]) ** 2
        self.vision_model = nn.Module()
        ve = self.vision_model.embeddings = nn.Module()
        ve.class_embedding = nn.Parameter(torch.zeros(dv))
        ve.patch_embedding = nn.Conv2d(3, dv, vc["patch_size"], stride=vc["patch_size"], bias=False)
        ve.position_embedding = nn.Embedding(n + 1, dv)
        self.vision_model.pre_layrnorm = nn.LayerNorm(dv, eps=vc["layer_norm_eps"])
        self.vision_model.encoder = nn.Module()
        self.vision_model.encoder.layers = nn.ModuleList(
            CLIPLayer(dv, vc["num_attention_heads"], vc["intermediate_size"], vc["layer_norm_eps"])
            for _ in range(vc["num_hidden_layers"]))
        self.vision_model.post_layernorm = nn.LayerNorm(dv, eps=vc["layer_norm_eps"])
        self.text_model = nn.Module()
        te = self.text_model.embeddings = nn.Module()
        te.token_embedding = nn.Embedding(tc["vocab_size"], dt)
        te.position_embedding = nn.Embedding(tc["max_position_embeddings"], dt)
        self.text_model.encoder = nn.Module()
        self.text_model.encoder.layers = nn.ModuleList(
            CLIPLayer(dt, tc["num_attention_heads"], tc["intermediate_size"], tc["layer_norm_eps"])
            for _ in range(tc["num_hidden_layers"]))
        self.text_model.final_layer_norm = nn.LayerNorm(dt, eps=tc["layer_norm_eps"])
        self.visual_projection = nn.Linear(dv, P, bias=False)
        self.text_projection = nn.Linear(dt, P, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(cfg["logit_scale_init_value"])))
        self.eos_id = tc["eos_token_id"]

    def init(self, g):
        for name, prm in self.named_parameters():
            if name == "logit_scale":
                continue
            if name.endswith("bias"):
                nn.init.zeros_(prm)
            elif "layer_norm" in name or "layrnorm" in name or "layernorm" in name:
                nn.init.ones_(prm)
            else:
                std = 0.02 if "embedding" in name else 1.0 / math.sqrt(prm.shape[-1] if prm.dim() == 2 else prm[0].numel())
                with torch.no_grad():
                    prm.copy_(torch.randn(prm.shape, generator=g) * std)

    def image_embeds(self, x):
        ve = self.vision_model.embeddings
        t = ve.patch_embedding(x).flatten(2).transpose(1, 2)
        t = torch.cat([ve.class_embedding.view(1, 1, -1).expand(t.shape[0], -1, -1), t], dim=1)
        t = t + ve.position_embedding.weight[: t.shape[1]]
        t = self.vision_model.pre_layrnorm(t)
        for layer in self.vision_model.encoder.layers:
            t = layer(t)
        return self.visual_projection(self.vision_model.post_layernorm(t[:, 0]))

    def text_embeds(self, ids):
        """ids [B,L] (any padding after the end token; L <= max_position_embeddings)."""
        te = self.text_model.embeddings
        L = ids.shape[1]
        t = te.token_embedding(ids) + te.position_embedding.weight[:L]
        mask = torch.full((L, L), float("-inf"), device=ids.device).triu(1)
        for layer in self.text_model.encoder.layers:
            t = layer(t, mask)
        t = self.text_model.final_layer_norm(t)
        # Pool at the first end-of-text token (= the argmax: it is the largest id).
        eos = (ids == self.eos_id).int().argmax(dim=1)
        return self.text_projection(t[torch.arange(ids.shape[0], device=ids.device), eos])


# ---------------------------------------------------------------------------------------------
# Byte-level BPE (CLIP conventions, spec section 4)

PAT = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                    regex.IGNORECASE)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


BYTE_ENC = bytes_to_unicode()


def clean(text):
    return regex.sub(r"\s+", " ", text).strip().lower()


def pieces(text):
    return ["".join(BYTE_ENC[b] for b in tok.encode("utf-8")) for tok in PAT.findall(clean(text))]


def learn_bpe(words):
    """Merges for a {word: count} dict, most frequent pair first (ties: smallest pair), skipping
    a pair whose concatenation is already a token so every vocab entry is unique. Runs until each
    word is one symbol or no pair is left."""
    segs = {w: tuple(w[:-1]) + (w[-1] + "</w>",) for w in words}
    tokens = set(BYTE_ENC.values()) | {c + "</w>" for c in BYTE_ENC.values()}
    merges = []
    while True:
        counts = {}
        for w, s in segs.items():
            for a, b in zip(s, s[1:]):
                counts[(a, b)] = counts.get((a, b), 0) + words[w]
        cand = sorted((p for p in counts if p[0] + p[1] not in tokens),
                      key=lambda p: (-counts[p], p))
        if not cand:
            return merges
        a, b = cand[0]
        merges.append((a, b))
        tokens.add(a + b)
        for w, s in segs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = tuple(out)


class Tokenizer:
    """CLIP's encoder (simple_tokenizer.bpe) for a vocab and merge list."""

    def __init__(self, merges):
        self.merges = merges
        self.ranks = {m: i for i, m in enumerate(merges)}
        vocab = list(BYTE_ENC.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += [a + b for a, b in merges]
        vocab += ["<|startoftext|>", "<|endoftext|>"]
        self.encoder = {v: i for i, v in enumerate(vocab)}
        assert len(self.encoder) == len(vocab), "duplicate vocab entries"
        self.sot, self.eot = self.encoder["<|startoftext|>"], self.encoder["<|endoftext|>"]
        self.cache = {}

    def bpe(self, piece):
        word = list(piece[:-1]) + [piece[-1] + "</w>"]
        while len(word) > 1:
            pairs = set(zip(word, word[1:]))
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            a, b = best
            out, i = [], 0
            while i < len(word):
                if i + 1 < len(word) and word[i] == a and word[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = out
        return word

    def encode(self, text):
        if text in self.cache:
            return self.cache[text]
        ids = []
        for p in pieces(text):
            if p in ("<|startoftext|>", "<|endoftext|>"):
                ids.append(self.encoder[p])
            else:
                ids += [self.encoder[t] for t in self.bpe(p)]
        self.cache[text] = ids
        return ids

    def batch(self, texts, length):
        """[sot] + ids + [eot], zero-padded to `length` (OpenAI's clip.tokenize convention)."""
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for i, t in enumerate(texts):
            ids = [self.sot] + self.encode(t) + [self.eot]
            assert len(ids) <= length, t
            out[i, : len(ids)] = torch.tensor(ids)
        return out


# ---------------------------------------------------------------------------------------------
# Captions

# {c} colour, {s} shape, {t} texture. Templates mention any subset; training treats a caption
# as a positive for every image whose attributes match all it mentions.
TEMPLATES = [
    ("a photo of a {c} {s} on a {t} background.", "cst"),
    ("a {c} {s} on a {t} background.", "cst"),
    ("a {t} picture with a {c} {s}.", "cst"),
    ("a photo of a {c} {s}.", "cs"),
    ("a {c} {s}.", "cs"),
    ("an image of a {c} {s}.", "cs"),
    ("a photo of a {s} that is {c}.", "cs"),
    ("a photo of a {t}.", "t"),
    ("a photo of a {t} texture.", "t"),
    ("a {t} background.", "t"),
    ("a {t} pattern.", "t"),
    ("a photo of a {s}.", "s"),
    ("a photo of something {c}.", "c"),
]
CLASS_PROMPT = "a photo of a {}."
TEXTURE_PROMPT = "a photo of a {} texture."


def caption(tpl, colour, shape, texture):
    return tpl.format(c=colour, s=shape, t=texture)


def corpus_words(colours, shapes, textures, concepts):
    """Word counts over every caption the training can draw plus the concept list, so the BPE
    covers the world's vocabulary with whole-word tokens."""
    words = {}
    texts = [caption(t, c, s, x) for t, _ in TEMPLATES for c in colours for s in shapes for x in textures]
    texts += [CLASS_PROMPT.format(c) for c in concepts] + [TEXTURE_PROMPT.format(t) for t in textures]
    for text in texts:
        for p in pieces(text):
            words[p] = words.get(p, 0) + 1
    return words


# ---------------------------------------------------------------------------------------------
# safetensors and HF folders


def save_safetensors(path, tensors):
    """Writes {name: tensor} as safetensors: u64 LE header length, JSON header (names sorted,
    offsets contiguous from 0), raw little-endian C-contiguous data. F32 and I64 only."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype == torch.float32:
            dt, arr = "F32", t.numpy().astype("<f4")
        elif t.dtype == torch.int64:
            dt, arr = "I64", t.numpy().astype("<i8")
        else:
            raise ValueError(f"{name}: unsupported dtype {t.dtype}")
        b = arr.tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # align the data section to 8 bytes
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = {"F32": np.float32, "I64": np.int64}[info["dtype"]]
        out[name] = torch.from_numpy(np.frombuffer(data[base + b:base + e], dtype=dt).reshape(info["shape"]).copy())
    return out


def write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")
    os.replace(tmp, path)


def state_dict_for_export(model):
    sd = model.state_dict()
    return {k: v for k, v in sd.items() if ".core." not in k}


# ---------------------------------------------------------------------------------------------
# Training


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def train_classifier(model, x, y, epochs, batch, lr, wd, g, log):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    n = x.shape[0]
    steps = epochs * (n // batch)
    step = 0
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        tot, correct = 0.0, 0
        for i in range(n // batch):
            idx = perm[i * batch:(i + 1) * batch].to(x.device)
            xb, yb = x[idx], y[idx]
            # No augmentation: the world already varies position, scale, rotation and colours.
            for pg in opt.param_groups:
                pg["lr"] = lr_at(step, steps, lr, steps // 20)
            out = model(xb)
            loss = F.cross_entropy(out, yb, label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            tot += loss.item()
            correct += (out.argmax(1) == yb).sum().item()
        log(f"  epoch {ep + 1}/{epochs} loss {tot / (n // batch):.4f} train acc {correct / (batch * (n // batch)):.4f}")


@torch.no_grad()
def predict(model, x, batch=256):
    model.eval()
    return torch.cat([model(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def compat_matrix(need, attrs):
    """[B,B] 1 where caption j's mentioned attributes (need[j], a subset of "cst") all match
    image i's attributes (attrs: [B,3] colour, shape, texture indices)."""
    ok = torch.ones(len(need), len(need), dtype=torch.bool, device=attrs.device)
    for col, key in enumerate("cst"):
        mentions = torch.tensor([key in n for n in need], device=attrs.device)
        same = attrs[:, col][:, None] == attrs[:, col][None, :]
        ok &= same | ~mentions[None, :]
    return ok.float()


def train_clip(model, tok, x, recs, epochs, batch, lr, wd, g, log, ctx):
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=wd)
    n = x.shape[0]
    steps = epochs * (n // batch)
    step = 0
    cols, shps, texs = (sorted({r[k] for r in recs}) for k in ("colour", "shape", "texture"))
    attr_idx = torch.tensor([[cols.index(r["colour"]), shps.index(r["shape"]), texs.index(r["texture"])]
                             for r in recs], device=x.device)
    for ep in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        tpl_idx = torch.randint(len(TEMPLATES), (n,), generator=g)
        tot = 0.0
        for i in range(n // batch):
            idx = perm[i * batch:(i + 1) * batch].tolist()
            texts, need = [], []
            for j in idx:
                r = recs[j]
                tpl, nd = TEMPLATES[tpl_idx[j]]
                texts.append(caption(tpl, r["colour"], r["shape"], r["texture"]))
                need.append(nd)
            ids = tok.batch(texts, ctx)
            L = int((ids != 0).sum(1).max())
            ids = ids[:, :L].to(x.device)
            idx_d = torch.tensor(idx, device=x.device)
            for pg in opt.param_groups:
                pg["lr"] = lr_at(step, steps, lr, steps // 20)
            ie = F.normalize(model.image_embeds(x[idx_d]), dim=-1)
            te = F.normalize(model.text_embeds(ids), dim=-1)
            scale = model.logit_scale.exp().clamp(max=100.0)
            logits = scale * ie @ te.t()
            m = compat_matrix(need, attr_idx[idx_d])
            loss_i = -(F.log_softmax(logits, 1) * (m / m.sum(1, keepdim=True))).sum(1).mean()
            loss_t = -(F.log_softmax(logits.t(), 1) * (m.t() / m.t().sum(1, keepdim=True))).sum(1).mean()
            loss = 0.5 * (loss_i + loss_t)
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(max=math.log(100.0))
            step += 1
            tot += loss.item()
        log(f"  epoch {ep + 1}/{epochs} loss {tot / (n // batch):.4f} logit_scale {model.logit_scale.exp().item():.1f}")


@torch.no_grad()
def clip_zero_shot(model, tok, x, names, prompt, ctx):
    model.eval()
    ids = tok.batch([prompt.format(nm) for nm in names], ctx).to(x.device)
    te = F.normalize(model.text_embeds(ids), dim=-1)
    ie = torch.cat([model.image_embeds(x[i:i + 256]) for i in range(0, x.shape[0], 256)])
    return F.normalize(ie, dim=-1) @ te.t(), ie, te


# ---------------------------------------------------------------------------------------------


def r8(t):
    """A float tensor as nested lists of 8-significant-digit floats (float32 needs 9 for a round
    trip; 8 keeps the files small and is far inside every tolerance the tests use)."""
    return [r8(v) for v in t] if t.dim() > 0 else float("%.8g" % t.item())


def id2label(classes):
    return {str(i): c for i, c in enumerate(classes)}, {c: i for i, c in enumerate(classes)}


def model_configs(classes, textures, tok):
    i2l, l2i = id2label(classes)
    vit = {"architectures": ["ViTForImageClassification"], "model_type": "vit",
           "hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4,
           "intermediate_size": 256, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
           "image_size": IMAGE_SIZE, "patch_size": 8, "num_channels": 3, "qkv_bias": True,
           "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
           "initializer_range": 0.02, "encoder_stride": 8,
           "problem_type": "single_label_classification", "torch_dtype": "float32",
           "id2label": i2l, "label2id": l2i}
    resnet = {"architectures": ["ResNetForImageClassification"], "model_type": "resnet",
              "num_channels": 3, "embedding_size": 16, "hidden_sizes": [32, 64, 128, 256],
              "depths": [1, 1, 1, 1], "layer_type": "bottleneck", "hidden_act": "relu",
              "downsample_in_first_stage": False, "downsample_in_bottleneck": False,
              "torch_dtype": "float32", "id2label": i2l, "label2id": l2i}
    clip = {"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": 64,
            "logit_scale_init_value": 2.6592, "torch_dtype": "float32",
            "text_config": {"model_type": "clip_text_model", "vocab_size": len(tok.encoder),
                            "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
                            "num_attention_heads": 4, "max_position_embeddings": CONTEXT,
                            "hidden_act": "quick_gelu", "layer_norm_eps": 1e-5,
                            "bos_token_id": tok.sot, "eos_token_id": tok.eot,
                            "pad_token_id": tok.eot, "projection_dim": 64},
            "vision_config": {"model_type": "clip_vision_model", "hidden_size": 64,
                              "intermediate_size": 256, "num_hidden_layers": 4,
                              "num_attention_heads": 4, "image_size": IMAGE_SIZE, "patch_size": 8,
                              "num_channels": 3, "hidden_act": "quick_gelu",
                              "layer_norm_eps": 1e-5, "projection_dim": 64}}
    return {"vit": vit, "resnet": resnet, "clip": clip}


PREPROCESSORS = {
    "vit": {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": VIT_MEAN,
            "image_std": VIT_STD, "image_processor_type": "ViTImageProcessor", "resample": 2,
            "rescale_factor": 1 / 255, "size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}},
    # ConvNextImageProcessor as microsoft/resnet-50; crop_pct 1.0 makes its resize (short side to
    # int(64 / 1.0) = 64) and its 64x64 centre crop identities at the world's size.
    "resnet": {"crop_pct": 1.0, "do_normalize": True, "do_rescale": True, "do_resize": True,
               "image_mean": RESNET_MEAN, "image_std": RESNET_STD,
               "image_processor_type": "ConvNextImageProcessor", "resample": 3,
               "rescale_factor": 1 / 255, "size": {"shortest_edge": IMAGE_SIZE}},
    "clip": {"crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE}, "do_center_crop": True,
             "do_convert_rgb": True, "do_normalize": True, "do_rescale": True, "do_resize": True,
             "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
             "image_processor_type": "CLIPImageProcessor", "processor_class": "CLIPProcessor",
             "resample": 3, "rescale_factor": 1 / 255, "size": {"shortest_edge": IMAGE_SIZE}},
}
NORM = {"vit": (VIT_MEAN, VIT_STD), "resnet": (RESNET_MEAN, RESNET_STD), "clip": (CLIP_MEAN, CLIP_STD)}
CONTEXT = 77  # CLIP's context; captions use about 16, the rest of the positions stay untrained


def write_tokenizer(d, tok):
    with open(os.path.join(d, "vocab.json"), "w") as f:
        json.dump(tok.encoder, f, ensure_ascii=False)
    with open(os.path.join(d, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n")
        for a, b in tok.merges:
            f.write(f"{a} {b}\n")
    write_json(os.path.join(d, "tokenizer_config.json"), {
        "add_prefix_space": False, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "do_lower_case": True,
        "errors": "replace", "model_max_length": CONTEXT, "tokenizer_class": "CLIPTokenizer"})
    write_json(os.path.join(d, "special_tokens_map.json"), {
        "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>", "unk_token": "<|endoftext|>"})


def read_merges(d):
    lines = open(os.path.join(d, "merges.txt"), encoding="utf-8").read().split("\n")[1:]
    return [tuple(l.split()) for l in lines if l]


def build(name, cfg):
    cls = {"vit": ViTForImageClassification, "resnet": ResNetForImageClassification, "clip": CLIPModel}[name]
    c = dict(cfg)
    if name != "clip":
        c["num_labels"] = len(cfg["id2label"])
    return cls(c)


def load_model(out, name):
    """A model of this script from a folder it wrote (tests use this as the PyTorch reference)."""
    d = os.path.join(out, name)
    cfg = json.load(open(os.path.join(d, "config.json")))
    model = build(name, cfg)
    sd = load_safetensors(os.path.join(d, "model.safetensors"))
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.eval()
    return model, cfg


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--world", required=True, help="folder written by `miclip world make`")
    ap.add_argument("--out", required=True, help="where to write vit/, resnet/, clip/, reference/")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--models", default="vit,resnet,clip")
    ap.add_argument("--epochs-vit", type=int, default=30)
    ap.add_argument("--epochs-resnet", type=int, default=15)
    ap.add_argument("--epochs-clip", type=int, default=30)
    ap.add_argument("--reference-only", action="store_true",
                    help="train nothing: load the folders in --out, measure the accuracies and "
                         "write reference/*.json (run this on the machine whose PyTorch the tests use)")
    args = ap.parse_args()

    if args.device.startswith("cuda"):
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_num_threads(args.threads)
    # On CUDA a few backward kernels (embedding, max-pool) have no deterministic version in some
    # releases: warn there rather than stop; on the CPU everything used here is deterministic.
    torch.use_deterministic_algorithms(True, warn_only=args.device != "cpu")
    dev = torch.device(args.device)
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:7.1f}s] {msg}", flush=True)

    classes = read_lines(os.path.join(args.world, "classes.txt"))
    textures = read_lines(os.path.join(args.world, "textures.txt"))
    colours = read_lines(os.path.join(args.world, "colours.txt"))
    shapes = read_lines(os.path.join(args.world, "shapes.txt"))
    concepts = read_lines(os.path.join(args.world, "concepts.txt"))
    world_info = json.load(open(os.path.join(args.world, "world.json")))
    log(f"loading world {args.world} ({world_info})")
    splits = ["val", "unseen"] if args.reference_only else ["train", "val", "unseen"]
    data = {sp: load_split(args.world, sp) for sp in splits}
    xva, rva = data["val"]
    xun, run = data["unseen"]
    yva = torch.tensor([r["label"] for r in rva])
    tun = torch.tensor([textures.index(r["texture"]) for r in run])
    per = world_info["val_per_class"]
    ref_idx = [c * per + k for c in range(len(classes)) for k in range(REF_PER_CLASS)]
    log(", ".join(f"{sp} {len(data[sp][1])}" for sp in splits) + " images")

    os.makedirs(os.path.join(args.out, "reference"), exist_ok=True)
    results_path = os.path.join(args.out, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else {}
    entry = {"command": " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]), "world": world_info,
             "torch": torch.__version__, "device": args.device, "threads": args.threads, "seed": args.seed}
    results["evaluation" if args.reference_only else "training"] = entry

    if args.reference_only:
        tok = Tokenizer(read_merges(os.path.join(args.out, "clip")))
    else:
        tok = Tokenizer(learn_bpe(corpus_words(colours, shapes, textures, concepts)))
    cfgs = model_configs(classes, textures, tok)
    seeds = {"vit": 1, "resnet": 2, "clip": 3}
    epochs = {"vit": args.epochs_vit, "resnet": args.epochs_resnet, "clip": args.epochs_clip}

    for name in args.models.split(","):
        d = os.path.join(args.out, name)
        mean, std = NORM[name]
        t0 = time.time()
        if args.reference_only:
            model, cfg = load_model(args.out, name)
            model.to(dev)
        else:
            cfg = cfgs[name]
            torch.manual_seed(args.seed)
            g = torch.Generator().manual_seed(args.seed * 1000 + seeds[name])
            model = build(name, cfg)
            model.init(g)
            model.to(dev)
            xtr, rtr = data["train"]
            x = pixel_values(xtr, mean, std).to(dev)
            log(f"training {name}: {sum(p.numel() for p in model.parameters())} parameters, {epochs[name]} epochs")
            if name == "clip":
                train_clip(model, tok, x, rtr, epochs[name], 128, 1e-3, 0.05, g, log, CONTEXT)
            else:
                ytr = torch.tensor([r["label"] for r in rtr], device=dev)
                lr = 2e-3 if name == "vit" else 3e-3
                train_classifier(model, x, ytr, epochs[name], 128, lr, 0.05 if name == "vit" else 0.01, g, log)
            del x
            os.makedirs(d, exist_ok=True)
            write_json(os.path.join(d, "config.json"), cfg)
            write_json(os.path.join(d, "preprocessor_config.json"), PREPROCESSORS[name])
            if name == "clip":
                write_tokenizer(d, tok)
            save_safetensors(os.path.join(d, "model.safetensors"), state_dict_for_export(model))
        model.eval()
        xv = pixel_values(xva, mean, std).to(dev)
        # The full validation split's top-1 decisions ("val_pred", in attributes.jsonl order) and
        # the outputs themselves on the reference subset ("images").
        rec = {"model": name, "images": [rva[i]["path"] for i in ref_idx],
               "labels": [rva[i]["label"] for i in ref_idx], "world": world_info,
               "torch": torch.__version__, "device": args.device}
        res = {"val_images": len(rva), "params": sum(p.numel() for p in model.parameters())}
        if not args.reference_only:
            res.update({"train_seconds": round(time.time() - t0), "epochs": epochs[name]})
        if name == "clip":
            sims, ie, te = clip_zero_shot(model, tok, xv, classes, CLASS_PROMPT, CONTEXT)
            xu = pixel_values(xun, mean, std).to(dev)
            tsims, _, tt = clip_zero_shot(model, tok, xu, textures, TEXTURE_PROMPT, CONTEXT)
            tsims2, _, _ = clip_zero_shot(model, tok, xu, textures, CLASS_PROMPT, CONTEXT)
            acc = (sims.argmax(1).cpu() == yva).float().mean().item()
            acc_t = (tsims.argmax(1).cpu() == tun).float().mean().item()
            acc_t2 = (tsims2.argmax(1).cpu() == tun).float().mean().item()
            log(f"clip zero-shot: classes {acc:.4f} ('{CLASS_PROMPT}'), textures {acc_t:.4f} "
                f"('{TEXTURE_PROMPT}'), textures {acc_t2:.4f} ('{CLASS_PROMPT}')")
            with torch.no_grad():
                ct = model.text_embeds(tok.batch([CLASS_PROMPT.format(c) for c in classes], CONTEXT).to(dev))
                tt = model.text_embeds(tok.batch([TEXTURE_PROMPT.format(t) for t in textures], CONTEXT).to(dev))
            rec.update({"image_embeds": r8(ie[ref_idx].cpu()), "pred": sims[ref_idx].argmax(1).tolist(),
                        "val_pred": sims.argmax(1).tolist(),
                        "class_prompts": [CLASS_PROMPT.format(c) for c in classes],
                        "class_input_ids": [[tok.sot] + tok.encode(CLASS_PROMPT.format(c)) + [tok.eot] for c in classes],
                        "class_text_embeds": r8(ct.cpu()),
                        "texture_prompts": [TEXTURE_PROMPT.format(t) for t in textures],
                        "texture_input_ids": [[tok.sot] + tok.encode(TEXTURE_PROMPT.format(t)) + [tok.eot] for t in textures],
                        "texture_text_embeds": r8(tt.cpu()), "logit_scale": model.logit_scale.item()})
            res.update({"zero_shot_classes": acc, "class_prompt": CLASS_PROMPT,
                        "zero_shot_textures": acc_t, "texture_prompt": TEXTURE_PROMPT,
                        "zero_shot_textures_class_prompt": acc_t2, "unseen_images": len(run),
                        "vocab_size": len(tok.encoder)})
        else:
            logits = predict(model, xv).cpu()
            acc = (logits.argmax(1) == yva).float().mean().item()
            log(f"{name} val top-1 {acc:.4f}")
            rec.update({"logits": r8(logits[ref_idx]), "pred": logits[ref_idx].argmax(1).tolist(),
                        "val_pred": logits.argmax(1).tolist()})
            res["val_top1"] = acc
        if args.reference_only:
            write_json(os.path.join(args.out, "reference", name + ".json"), rec)
        results.setdefault(name, {})["evaluation" if args.reference_only else "training"] = res
        write_json(results_path, results)
    log("done")


if __name__ == "__main__":
    main()
