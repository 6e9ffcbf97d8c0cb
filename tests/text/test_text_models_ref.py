#!/usr/bin/python3
"""CLIP text tower and MPNet sentence encoder: miclip's C forward against PyTorch
implementations written here from specs/hf-models.md 3.4 and 6.3 (transformers is not in
Debian), with random full-size weights exported to Hugging Face folders (config.json,
model.safetensors, tokenizer files).

Checks, per model: the token ids equal the Python reference tokenizers' (ref_tokenizers.py),
and the embeddings agree with max abs error <= 1e-4 * max|reference| (float32 GEMMs summed in
another order; the attention and LayerNorm are the same maths).
Usage: test_text_models_ref.py TEXT_TOOL WORKDIR
       test_text_models_ref.py --build-only WORKDIR   (only write the two folders; bench/text.sh)"""
import json
import math
import os
import random
import struct
import subprocess
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ref_tokenizers as R  # noqa: E402

torch.set_num_threads(1)
tool, work = sys.argv[1], sys.argv[2]
BUILD_ONLY = tool == "--build-only"
os.makedirs(work, exist_ok=True)
rng = random.Random(7)
torch.manual_seed(7)


def save_safetensors(path, tensors):
    header, off, blobs = {}, 0, []
    for name, t in tensors.items():
        a = t.detach().contiguous().numpy().astype("<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def rnd(*shape, std=0.02):
    return torch.randn(*shape) * std


def run_tool(folder, texts, template=None):
    args = [tool, "embed", folder] + ([template] if template else [])
    out = subprocess.run(args, input="".join(t.encode().hex() + "\n" for t in texts), capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr)
        sys.exit(1)
    lines = out.stdout.splitlines()
    ids = [[int(x) for x in l.split()[1:]] for l in lines if l.startswith("I")]
    emb = np.array([[float(x) for x in l.split()[1:]] for l in lines if l.startswith("E")], dtype=np.float64)
    return ids, emb


failures = 0


def compare(name, got, want):
    global failures
    err = float(np.abs(got - want).max())
    scale = float(np.abs(want).max())
    ok = err <= 1e-4 * scale
    print("%s: max abs err %.3g, max|ref| %.3g, allowed %.3g -> %s" % (name, err, scale, 1e-4 * scale,
                                                                       "ok" if ok else "FAIL"))
    if not ok:
        failures += 1


TEXTS = ["a photo of a cat.", "", "dog", "Hello   World!", "don't stop", "3.14", "naïve café σοφία 東京 😀",
         "a " * 200, "red circle on a striped background", "x", "the the the the", "&amp; &lt;3"]

# ---------------------------------------------------------------------------------------------
# CLIP text tower, full size: 49408 ids, width 512, 12 layers, 8 heads, 77 positions, proj 512
# ---------------------------------------------------------------------------------------------
clip_dir = os.path.join(work, "clip")
os.makedirs(clip_dir, exist_ok=True)
# A full-size CLIP-layout vocabulary: 256 bytes, 256 bytes</w>, 48894 merges, 2 specials. The
# first merges are learned from the test texts so they matter; the rest are random pairs.
be = R.bytes_to_unicode()
learned_vocab, learned = R.train_bpe(TEXTS * 3 + ["photo photograph cat category dog dogma"], 300)
syms = list(be.values()) + [v + "</w>" for v in be.values()]
have = set(syms)
merges = []
for a, b in learned:
    if a + b not in have:
        merges.append((a, b))
        have.add(a + b)
pool_nw = [s for s in have if not s.endswith("</w>")]
pool_all = list(have)
while len(merges) < 48894:
    a, b = rng.choice(pool_nw), rng.choice(pool_all)
    if a + b in have or len(a + b) > 16:
        continue
    merges.append((a, b))
    have.add(a + b)
    (pool_all.append(a + b), (pool_nw.append(a + b) if not b.endswith("</w>") else None))
vocab_list = syms + [a + b for a, b in merges] + ["<|startoftext|>", "<|endoftext|>"]
assert len(vocab_list) == 49408
R.write_clip_vocab(clip_dir, {v: i for i, v in enumerate(vocab_list)}, merges)

D, I, L, H, V, P, CTX = 512, 2048, 12, 8, 49408, 512, 77
W = {"text_model.embeddings.token_embedding.weight": rnd(V, D),
     "text_model.embeddings.position_embedding.weight": rnd(CTX, D, std=0.01)}
for i in range(L):
    p = "text_model.encoder.layers.%d." % i
    for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
        W[p + "self_attn.%s.weight" % n] = rnd(D, D, std=D ** -0.5)
        W[p + "self_attn.%s.bias" % n] = rnd(D)
    for n in ["layer_norm1", "layer_norm2"]:
        W[p + n + ".weight"] = 1 + rnd(D, std=0.1)
        W[p + n + ".bias"] = rnd(D)
    W[p + "mlp.fc1.weight"] = rnd(I, D, std=D ** -0.5)
    W[p + "mlp.fc1.bias"] = rnd(I)
    W[p + "mlp.fc2.weight"] = rnd(D, I, std=I ** -0.5)
    W[p + "mlp.fc2.bias"] = rnd(D)
W["text_model.final_layer_norm.weight"] = 1 + rnd(D, std=0.1)
W["text_model.final_layer_norm.bias"] = rnd(D)
W["text_projection.weight"] = rnd(P, D, std=D ** -0.5)
W["logit_scale"] = torch.tensor(math.log(100.0))
W["text_model.embeddings.position_ids"] = torch.arange(CTX, dtype=torch.float32)[None]  # extra key: ignored
save_safetensors(os.path.join(clip_dir, "model.safetensors"), W)
with open(os.path.join(clip_dir, "config.json"), "w") as f:
    json.dump({"architectures": ["CLIPModel"], "model_type": "clip", "projection_dim": P,
               "logit_scale_init_value": 2.6592,
               "text_config": {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1},
               "vision_config": {"patch_size": 16}}, f)


def clip_text_forward(ids):
    """specs 3.4: token+pos, 12 pre-norm causal layers (quick_gelu), final LN, pool at argmax."""
    x = W["text_model.embeddings.token_embedding.weight"][ids] + W["text_model.embeddings.position_embedding.weight"][
        :ids.shape[1]]
    B, T, _ = x.shape
    mask = torch.full((T, T), float("-inf")).triu(1)
    ln = torch.nn.functional.layer_norm
    for i in range(L):
        p = "text_model.encoder.layers.%d." % i
        h = ln(x, (D,), W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], 1e-5)
        q = (h @ W[p + "self_attn.q_proj.weight"].T + W[p + "self_attn.q_proj.bias"]) * (D // H) ** -0.5
        k = h @ W[p + "self_attn.k_proj.weight"].T + W[p + "self_attn.k_proj.bias"]
        v = h @ W[p + "self_attn.v_proj.weight"].T + W[p + "self_attn.v_proj.bias"]
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) + mask, dim=-1) @ v
        a = a.transpose(1, 2).reshape(B, T, D)
        x = x + a @ W[p + "self_attn.out_proj.weight"].T + W[p + "self_attn.out_proj.bias"]
        h = ln(x, (D,), W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], 1e-5)
        h = h @ W[p + "mlp.fc1.weight"].T + W[p + "mlp.fc1.bias"]
        h = h * torch.sigmoid(1.702 * h)
        x = x + h @ W[p + "mlp.fc2.weight"].T + W[p + "mlp.fc2.bias"]
    x = ln(x, (D,), W["text_model.final_layer_norm.weight"], W["text_model.final_layer_norm.bias"], 1e-5)
    pooled = x[torch.arange(B), ids.argmax(dim=-1)]
    return pooled @ W["text_projection.weight"].T


ref = R.ClipRef(clip_dir, "openai")
for template in ([] if BUILD_ONLY else [None, "a photo of a {}."]):
    texts = [template.replace("{}", t) if template else t for t in TEXTS]
    want_ids = [ref.encode(t) for t in texts]
    got_ids, got = run_tool(clip_dir, TEXTS, template)
    if got_ids != want_ids:
        failures += 1
        print("CLIP ids differ from the reference tokenizer (template %r)" % template)
    with torch.no_grad():
        want = clip_text_forward(torch.tensor(want_ids, dtype=torch.long)).double().numpy()
    compare("clip text_embeds (template %r)" % template, got, want)
    clip_want = (want_ids, want)
    # the pooled token is the first end token: the C side runs only up to it, the reference
    # pads with 0 to 77; also check one long (truncated) row really ends with 49407
    assert want_ids[TEXTS.index("a " * 200)][-1] == 49407

# CLIP's prompt ensembling: normalise each template's embedding, average, normalise
ENSEMBLE = ["a photo of a {}.", "a {}.", "itap of the {}."]
ens_want = None
if not BUILD_ONLY:
    acc = 0
    for template in ENSEMBLE:
        ids_t = torch.tensor([ref.encode(template.replace("{}", t)) for t in TEXTS], dtype=torch.long)
        with torch.no_grad():
            acc = acc + torch.nn.functional.normalize(clip_text_forward(ids_t), dim=1)
    ens_want = torch.nn.functional.normalize(acc / len(ENSEMBLE), dim=1).double().numpy()

# ---------------------------------------------------------------------------------------------
# MPNet (all-mpnet-base-v2 layout): 30527 ids, 768, 12 layers, 12 heads, 514 positions
# ---------------------------------------------------------------------------------------------
mp_dir = os.path.join(work, "mpnet")
os.makedirs(mp_dir, exist_ok=True)
D, I, L, H, V, MP = 768, 3072, 12, 12, 30527, 514
toks = ["<s>", "<pad>", "</s>", "<unk>"] + ["[unused%d]" % i for i in range(100)] + ["[UNK]"]
seen = set(toks)
base = "a photo of cat dog red circle on striped background hello world don t stop the x naive cafe σοφια 東 京".split()
for w in base + list("abcdefghijklmnopqrstuvwxyz0123456789.,!'&;") + ["##" + c for c in "abcdefghijklmnopqrstuvwxyz"]:
    if w not in seen:
        seen.add(w)
        toks.append(w)
while len(toks) < V - 1:
    w = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8)))
    if rng.random() < 0.4:
        w = "##" + w
    if w not in seen:
        seen.add(w)
        toks.append(w)
toks.append("<mask>")
assert len(toks) == V and toks.index("[UNK]") == 104
with open(os.path.join(mp_dir, "vocab.txt"), "w", encoding="utf-8") as f:
    f.write("\n".join(toks) + "\n")
with open(os.path.join(mp_dir, "config.json"), "w") as f:
    json.dump({"architectures": ["MPNetForMaskedLM"], "model_type": "mpnet", "vocab_size": V, "hidden_size": D,
               "num_hidden_layers": L, "num_attention_heads": H, "intermediate_size": I, "hidden_act": "gelu",
               "max_position_embeddings": MP, "layer_norm_eps": 1e-5, "relative_attention_num_buckets": 32,
               "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}, f)
with open(os.path.join(mp_dir, "sentence_bert_config.json"), "w") as f:
    json.dump({"max_seq_length": 384, "do_lower_case": False}, f)
with open(os.path.join(mp_dir, "tokenizer_config.json"), "w") as f:
    json.dump({"do_lower_case": True, "model_max_length": 512, "strip_accents": None, "tokenize_chinese_chars": True}, f)
with open(os.path.join(mp_dir, "modules.json"), "w") as f:
    json.dump([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
               {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}], f)
os.makedirs(os.path.join(mp_dir, "1_Pooling"), exist_ok=True)
with open(os.path.join(mp_dir, "1_Pooling", "config.json"), "w") as f:
    json.dump({"word_embedding_dimension": D, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
               "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}, f)
M = {"embeddings.word_embeddings.weight": rnd(V, D), "embeddings.position_embeddings.weight": rnd(MP, D),
     "embeddings.LayerNorm.weight": 1 + rnd(D, std=0.1), "embeddings.LayerNorm.bias": rnd(D),
     "encoder.relative_attention_bias.weight": rnd(32, H, std=0.5)}
for i in range(L):
    p = "encoder.layer.%d." % i
    for n in "qkvo":
        M[p + "attention.attn.%s.weight" % n] = rnd(D, D, std=D ** -0.5)
        M[p + "attention.attn.%s.bias" % n] = rnd(D)
    M[p + "attention.LayerNorm.weight"] = 1 + rnd(D, std=0.1)
    M[p + "attention.LayerNorm.bias"] = rnd(D)
    M[p + "intermediate.dense.weight"] = rnd(I, D, std=D ** -0.5)
    M[p + "intermediate.dense.bias"] = rnd(I)
    M[p + "output.dense.weight"] = rnd(D, I, std=I ** -0.5)
    M[p + "output.dense.bias"] = rnd(D)
    M[p + "output.LayerNorm.weight"] = 1 + rnd(D, std=0.1)
    M[p + "output.LayerNorm.bias"] = rnd(D)
M["pooler.dense.weight"] = rnd(D, D)  # present in the checkpoint, unused
M["pooler.dense.bias"] = rnd(D)
save_safetensors(os.path.join(mp_dir, "model.safetensors"), M)
if BUILD_ONLY:
    sys.exit(0)


def bucket(rel):
    """HF relative_position_bucket, float32 as torch computes it."""
    n = -rel
    ret = (n < 0).long() * 16
    n = n.abs()
    small = n < 8
    large = 8 + (torch.log(n.float() / 8) / math.log(128 / 8) * 8).long()
    large = torch.min(large, torch.full_like(large, 15))
    return ret + torch.where(small, n, large)


def mpnet_forward(ids, att):
    """specs 6.3: position ids from the padding, LN(emb), relative bias, post-norm layers,
    mean pooling under the mask, L2 normalisation."""
    B, T = ids.shape
    m = (ids != 1).long()
    pos = torch.cumsum(m, dim=1) * m + 1
    ln = torch.nn.functional.layer_norm
    x = ln(M["embeddings.word_embeddings.weight"][ids] + M["embeddings.position_embeddings.weight"][pos], (D,),
           M["embeddings.LayerNorm.weight"], M["embeddings.LayerNorm.bias"], 1e-5)
    ctxp = torch.arange(T)[:, None]
    memp = torch.arange(T)[None, :]
    bias = M["encoder.relative_attention_bias.weight"][bucket(memp - ctxp)].permute(2, 0, 1)[None]
    ext = (1.0 - att[:, None, None, :].float()) * torch.finfo(torch.float32).min
    for i in range(L):
        p = "encoder.layer.%d." % i
        q, k, v = (x @ M[p + "attention.attn.%s.weight" % n].T + M[p + "attention.attn.%s.bias" % n] for n in "qkv")
        q, k, v = (t.view(B, T, H, D // H).transpose(1, 2) for t in (q, k, v))
        s = q @ k.transpose(-1, -2) / math.sqrt(D // H) + bias + ext
        c = (torch.softmax(s, dim=-1) @ v).transpose(1, 2).reshape(B, T, D)
        a = ln(c @ M[p + "attention.attn.o.weight"].T + M[p + "attention.attn.o.bias"] + x, (D,),
               M[p + "attention.LayerNorm.weight"], M[p + "attention.LayerNorm.bias"], 1e-5)
        h = torch.nn.functional.gelu(a @ M[p + "intermediate.dense.weight"].T + M[p + "intermediate.dense.bias"])
        x = ln(h @ M[p + "output.dense.weight"].T + M[p + "output.dense.bias"] + a, (D,),
               M[p + "output.LayerNorm.weight"], M[p + "output.LayerNorm.bias"], 1e-5)
    am = att[:, :, None].float()
    s = (x * am).sum(1) / am.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(s, p=2, dim=1)


wref = R.WordPieceRef(mp_dir, max_length=384)
mp_texts = TEXTS + ["word " * 500, "the <mask> sat on <s> mat", "a <pad> in the text gets position id 1"]
want_ids = [wref.encode(t) for t in mp_texts]
got_ids, got = run_tool(mp_dir, mp_texts)
got_trim = [[x for x in r[:len(w)]] for r, w in zip(got_ids, want_ids)]
if got_trim != want_ids or any(any(x != 1 for x in r[len(w):]) for r, w in zip(got_ids, want_ids)):
    failures += 1
    print("MPNet ids differ from the reference tokenizer")
Tm = max(len(w) for w in want_ids)
pad_ids = torch.tensor([w + [1] * (Tm - len(w)) for w in want_ids])
att = torch.tensor([[1] * len(w) + [0] * (Tm - len(w)) for w in want_ids])
with torch.no_grad():
    want = mpnet_forward(pad_ids, att).double().numpy()
compare("mpnet sentence_embeds (batch padded to %d)" % Tm, got, want)
mp_want = want

# ---------------------------------------------------------------------------------------------
# The command-line contract: miclip tokenize / embed-text (1 and 2 ranks, with the cache)
# ---------------------------------------------------------------------------------------------
import h5py  # noqa: E402

miclip = os.environ.get("MICLIP")
if miclip:
    env = dict(os.environ)
    out = subprocess.run([miclip, "tokenize", clip_dir] + TEXTS[:6], capture_output=True, text=True, env=env)
    want_lines = [" ".join(str(i) for i in ref.encode(t) if i != 0) for t in TEXTS[:6]]
    if out.returncode != 0 or out.stdout.splitlines() != want_lines:
        failures += 1
        print("miclip tokenize: output differs\n%s\n%s" % (out.stdout, out.stderr))
    tj = os.path.join(work, "texts.json")
    with open(tj, "w") as f:
        json.dump(TEXTS, f)
    mpiexec = os.environ.get("MICLIP_MPIEXEC", "mpiexec")
    cache = os.path.join(work, "cache.h5")
    if os.path.exists(cache):
        os.remove(cache)
    runs = [([], "e1.h5"), ([mpiexec, "--oversubscribe", "-n", "2"], "e2.h5"),
            ([mpiexec, "--oversubscribe", "-n", "2"], "e3.h5")]
    tpj = os.path.join(work, "templates.json")
    with open(tpj, "w") as f:
        json.dump(ENSEMBLE, f)
    for k, (pre, name) in enumerate(runs):
        extra = ["--cache", cache] if k > 0 else ["--templates", tpj]
        o = os.path.join(work, name)
        r = subprocess.run(pre + [miclip, "embed-text", clip_dir, "--texts", tj, "--template", "a photo of a {}.",
                                  "--out", o] + extra, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            failures += 1
            print("embed-text failed: %s" % r.stderr)
            continue
        if k == 2 and "0 of %d texts computed" % len(TEXTS) not in r.stderr:
            failures += 1
            print("embed-text: the second cached run recomputed texts: %s" % r.stderr)
        with h5py.File(o, "r") as f:
            ids_ok = f["input_ids"].dtype == np.int32 and f["input_ids"][:].tolist() == clip_want[0]
            if not ids_ok:
                failures += 1
                print("embed-text /input_ids differ from the reference tokenizer (%s)" % name)
            compare("embed-text /text_embeds (%s)" % name, f["text_embeds"][:].astype(np.float64), clip_want[1])
            if name == "e1.h5" and "ensemble_embeds" not in f:
                failures += 1
                print("embed-text --templates wrote no /ensemble_embeds")
            if "ensemble_embeds" in f:
                compare("embed-text /ensemble_embeds (%s)" % name, f["ensemble_embeds"][:].astype(np.float64), ens_want)
    o = os.path.join(work, "m1.h5")
    r = subprocess.run([miclip, "embed-text", mp_dir, "--texts", tj, "--out", o], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        failures += 1
        print("embed-text (MPNet) failed: %s" % r.stderr)
    else:
        with h5py.File(o, "r") as f:
            compare("embed-text /sentence_embeds", f["sentence_embeds"][:].astype(np.float64), mp_want[:len(TEXTS)])
print("FAILURES: %d" % failures)
sys.exit(1 if failures else 0)
