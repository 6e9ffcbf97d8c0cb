"""vision_torch.py - PyTorch images/s for the models bench/vision.sh times (Debian's torch 1.13,
same thread count): torchvision vit_b_16 and resnet50, and the CLIP B/16 vision tower written
with torch.nn.functional as in tests/models/ref_clip.py. Weights are random (speed does not
depend on them).   usage: vision_torch.py vit|resnet|clip BATCH THREADS SECONDS"""
import sys
import time

import torch
import torch.nn.functional as F
import torchvision

arch, batch, threads, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
torch.set_num_threads(threads)
torch.set_grad_enabled(False)


class ClipVision(torch.nn.Module):
    """CLIP ViT-B/16 vision tower + projection (hf-models.md §3.3)."""

    def __init__(self, D=768, L=12, H=12, I=3072, P=16, S=224, proj=512):
        super().__init__()
        self.D, self.H, self.P = D, H, P
        self.patch = torch.nn.Conv2d(3, D, P, P, bias=False)
        self.cls = torch.nn.Parameter(torch.randn(D))
        self.pos = torch.nn.Parameter(torch.randn((S // P) ** 2 + 1, D))
        self.pre = torch.nn.LayerNorm(D)
        self.post = torch.nn.LayerNorm(D)
        self.blocks = torch.nn.ModuleList()
        for _ in range(L):
            b = torch.nn.Module()
            b.ln1, b.ln2 = torch.nn.LayerNorm(D), torch.nn.LayerNorm(D)
            b.q, b.k, b.v, b.o = (torch.nn.Linear(D, D) for _ in range(4))
            b.fc1, b.fc2 = torch.nn.Linear(D, I), torch.nn.Linear(I, D)
            self.blocks.append(b)
        self.proj = torch.nn.Linear(D, proj, bias=False)

    def forward(self, x):
        B = x.shape[0]
        h = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(B, 1, -1), h], 1) + self.pos
        h = self.pre(h)
        T, hd = h.shape[1], self.D // self.H
        for b in self.blocks:
            y = b.ln1(h)
            sh = lambda t: t.view(B, T, self.H, hd).transpose(1, 2)
            a = torch.softmax(sh(b.q(y) * hd ** -0.5) @ sh(b.k(y)).transpose(-1, -2), -1) @ sh(b.v(y))
            h = h + b.o(a.transpose(1, 2).reshape(B, T, self.D))
            y = b.fc1(b.ln2(h))
            h = h + b.fc2(y * torch.sigmoid(1.702 * y))
        return self.proj(self.post(h[:, 0]))


model = {"vit": lambda: torchvision.models.vit_b_16(), "resnet": lambda: torchvision.models.resnet50(),
         "clip": lambda: ClipVision()}[arch]().eval()
x = torch.randn(batch, 3, 224, 224)
model(x)  # warm-up
n, t0, c0 = 0, time.perf_counter(), time.process_time()
while True:
    model(x)
    n += 1
    t = time.perf_counter() - t0
    if t >= seconds:
        break
cpu = time.process_time() - c0  # all threads of the process
print("images_per_s %.3f batch %d threads %d iters %d peak_gflops - cpu_s_per_image %.4f" % (
    n * batch / t, batch, threads, n, cpu / (n * batch)))
