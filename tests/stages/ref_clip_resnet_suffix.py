"""ref_clip_resnet_suffix.py - independent forwards of the last layers of the tiny world's CLIP vision
tower and ResNet from a hidden state, for test_intervene.py's clip and resnet parts.

ClipVisionSuffix (numpy, float64): CLIP encoder layers start+1..L (pre-LN attention with the
query scaled by head_dim^-0.5, quick_gelu MLP), post_layernorm on the CLS token and the visual
projection (no bias) = image_embeds; zero_shot() = softmax(exp(logit_scale) x cosines) against
given text embeddings, as CLIPModel's logits_per_image.

ResNetSuffix (PyTorch, float64, eval mode): the bottleneck stages after `start` (1x1 conv+BN+ReLU,
3x3 strided conv+BN+ReLU, 1x1 conv+BN, plus the shortcut: strided 1x1 conv+BN where the shape
changes, the identity otherwise; ReLU of the sum), global average pool and the classifier, from
Hugging Face's ResNetForImageClassification weights."""
import json
import math
import os
import struct

import numpy as np

_DT = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64}


def load_safetensors(path):
    """Every tensor as float64 (BatchNorm's I64 num_batches_tracked too; it is not used)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        head = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(data[a:b], _DT[v["dtype"]]).reshape(v["shape"]).astype(np.float64)
    return out


class ClipVisionSuffix:
    def __init__(self, model_dir):
        cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.vc = cfg.get("vision_config", cfg)
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.L = self.vc["num_hidden_layers"]
        self.H = self.vc["num_attention_heads"]
        self.eps = self.vc.get("layer_norm_eps", 1e-5)
        self.scale = math.exp(float(self.w["logit_scale"])) if "logit_scale" in self.w else 100.0

    def _ln(self, x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def _lin(self, x, p):
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def block(self, x, i):
        p = "vision_model.encoder.layers.%d." % i
        B, T, D = x.shape
        hd = D // self.H
        h = self._ln(x, p + "layer_norm1")
        q = self._lin(h, p + "self_attn.q_proj") * hd ** -0.5
        k = self._lin(h, p + "self_attn.k_proj")
        v = self._lin(h, p + "self_attn.v_proj")
        q, k, v = (t.reshape(B, T, self.H, hd).transpose(0, 2, 1, 3) for t in (q, k, v))
        s = q @ k.transpose(0, 1, 3, 2)
        s = np.exp(s - s.max(-1, keepdims=True))
        s /= s.sum(-1, keepdims=True)
        a = (s @ v).transpose(0, 2, 1, 3).reshape(B, T, D)
        x = x + self._lin(a, p + "self_attn.out_proj")
        h = self._lin(self._ln(x, p + "layer_norm2"), p + "mlp.fc1")
        h = h / (1.0 + np.exp(-1.702 * h))  # quick_gelu
        return x + self._lin(h, p + "mlp.fc2")

    def image_embeds(self, state, start):
        """state [B, T, D]: the output of encoder layer `start`; returns [B, projection_dim]."""
        x = np.asarray(state, np.float64)
        for i in range(int(start), self.L):
            x = self.block(x, i)
        pooled = self._ln(x[:, 0], "vision_model.post_layernorm")
        return pooled @ self.w["visual_projection.weight"].T

    def zero_shot(self, img, text):
        """img [B, P], text [C, P] -> (pred [B], prob [B, C], cos [B, C])."""
        a = img / np.linalg.norm(img, axis=-1, keepdims=True)
        t = np.asarray(text, np.float64)
        t = t / np.linalg.norm(t, axis=-1, keepdims=True)
        cos = a @ t.T
        z = self.scale * cos
        z = np.exp(z - z.max(-1, keepdims=True))
        return cos.argmax(-1), z / z.sum(-1, keepdims=True), cos


class ResNetSuffix:
    def __init__(self, model_dir):
        import torch  # noqa: F401 (only this class needs it)
        self.cfg = json.load(open(os.path.join(model_dir, "config.json")))
        self.w = load_safetensors(os.path.join(model_dir, "model.safetensors"))

    def _t(self, name):
        import torch
        return torch.from_numpy(self.w[name])

    def _conv_bn(self, x, p, stride, relu):
        import torch.nn.functional as F
        wt = self._t(p + ".convolution.weight")
        x = F.conv2d(x, wt, stride=stride, padding=wt.shape[-1] // 2)
        x = F.batch_norm(x, self._t(p + ".normalization.running_mean"), self._t(p + ".normalization.running_var"),
                         self._t(p + ".normalization.weight"), self._t(p + ".normalization.bias"), False, 0.0, 1e-5)
        return F.relu(x) if relu else x

    def _layer(self, x, p, stride):
        import torch.nn.functional as F
        sc = p + ".shortcut.convolution.weight"
        res = self._conv_bn(x, p + ".shortcut", stride, False) if sc in self.w else x
        down = self.cfg.get("downsample_in_bottleneck", False)
        h = self._conv_bn(x, p + ".layer.0", stride if down else 1, True)
        h = self._conv_bn(h, p + ".layer.1", 1 if down else stride, True)
        h = self._conv_bn(h, p + ".layer.2", 1, False)
        return F.relu(h + res)

    def logits(self, state, start_stage):
        """state [B, C, H, W]: the output of stages.<start_stage>; returns the logits [B, labels]."""
        import torch
        x = torch.from_numpy(np.asarray(state, np.float64))
        for s in range(start_stage + 1, len(self.cfg["depths"])):
            for l in range(self.cfg["depths"][s]):
                stride = 2 if (l == 0 and s > 0) else 1
                x = self._layer(x, "resnet.encoder.stages.%d.layers.%d" % (s, l), stride)
        pooled = x.mean(dim=(2, 3))
        out = pooled @ self._t("classifier.1.weight").T + self._t("classifier.1.bias")
        return out.numpy()
