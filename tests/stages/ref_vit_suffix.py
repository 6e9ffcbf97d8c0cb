"""ref_vit_suffix.py - an independent numpy (float64) forward of the last blocks of a Hugging Face
ViTForImageClassification folder, from a hidden state: blocks start+1..L (pre-LN attention and
MLP, exact-erf GELU), the final LayerNorm and the classifier on the CLS token. Used by
test_intervene.py to check the intervene stage's edited logits."""
import json
import math
import os
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        if v["dtype"] == "BF16":
            raw = np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], _DT[v["dtype"]])
        out[k] = arr.reshape(v["shape"]).astype(np.float64)
    return out


class ViTSuffix:
    def __init__(self, model_dir):
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.L = self.cfg["num_hidden_layers"]
        self.H = self.cfg["num_attention_heads"]
        self.eps = self.cfg.get("layer_norm_eps", 1e-12)

    def _ln(self, x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def _lin(self, x, p):
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def block(self, x, i):
        p = "vit.encoder.layer.%d." % i
        B, T, D = x.shape
        hd = D // self.H
        h = self._ln(x, p + "layernorm_before")
        q, k, v = (self._lin(h, p + "attention.attention." + n).reshape(B, T, self.H, hd).transpose(0, 2, 1, 3)
                   for n in ("query", "key", "value"))
        s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        x = x + self._lin(a, p + "attention.output.dense")
        h = self._lin(self._ln(x, p + "layernorm_after"), p + "intermediate.dense")
        erf = np.vectorize(math.erf)
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        return x + self._lin(h, p + "output.dense")

    def logits(self, state, start):
        """state [B, T, D]: the output of block `start` ("0" = embeddings)."""
        x = np.asarray(state, np.float64)
        for i in range(int(start), self.L):
            x = self.block(x, i)
        x = self._ln(x, "vit.layernorm")
        return self._lin(x[:, 0], "classifier")
