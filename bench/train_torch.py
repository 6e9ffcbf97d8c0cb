"""train_torch.py - the PyTorch side of bench/train.sh: the same training steps as
bench/train_bench.c, written the way a careful PyTorch user would.

E_n: nn.Linear(768, 512, bias=False), learnable logit scale, CLIP's symmetric cross-entropy
for the out and in branches, Adam, the clamp. SAE: top-k with b_pre and b_enc, the decoder
applied sparsely with F.embedding_bag (as EleutherAI's sparsify does on CPU) rather than a
dense product, the FVU loss, the decoder-gradient projection, Adam, renormalisation.
Usage: train_torch.py en|sae [timed steps] [threads] [classes (E_n)]."""
import math
import sys
import time

import torch
import torch.nn.functional as F

what = sys.argv[1] if len(sys.argv) > 1 else "en"
steps = max(1, int(sys.argv[2])) if len(sys.argv) > 2 else 5
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 1
classes = int(sys.argv[4]) if len(sys.argv) > 4 else 1000
torch.set_num_threads(threads)
torch.manual_seed(0)


def bench_en():
    n, d, B, C = 768, 512, 1024, classes
    lin = torch.nn.Linear(n, d, bias=False)
    logs = torch.nn.Parameter(torch.tensor(math.log(1 / 0.07)))
    opt = torch.optim.Adam([lin.weight, logs], lr=1e-4)
    a, img = torch.randn(B, n), torch.randn(B, d)
    cls = F.normalize(torch.randn(C, d), dim=1)
    labels = torch.randint(0, C, (B,))
    t_in = F.normalize(img, dim=1)
    ar = torch.arange(B)

    def step():
        u = F.normalize(lin(a), dim=1)
        s = logs.exp()
        t_out = cls[labels]
        lo = s * u @ t_out.T
        li = s * u @ t_in.T
        loss = (F.cross_entropy(lo, ar) + F.cross_entropy(lo.T, ar)) / 2 + \
               (F.cross_entropy(li, ar) + F.cross_entropy(li.T, ar)) / 2
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            logs.clamp_(0, math.log(100))
        return loss.item()

    step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        loss = step()
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    print(f"torch  E_n  n=768 d=512 batch=1024 classes={C}: wall {1e3 * dt / steps:.1f} ms/step {B * steps / dt:.0f} "
          f"samples/s, cpu {1e3 * ct / steps:.1f} ms/step {B * steps / ct:.0f} samples/s "
          f"(loss {loss:.4f}, threads {threads}, torch {torch.__version__})")


def bench_sae():
    n, m, k, B = 768, 24576, 32, 4096
    We = torch.randn(m, n)
    We /= We.norm(dim=1, keepdim=True)
    W_enc = torch.nn.Parameter(We.clone())
    W_dec = torch.nn.Parameter(We.clone())  # m x n, row j = atom j
    b_enc = torch.nn.Parameter(torch.zeros(m))
    b_pre = torch.nn.Parameter(torch.zeros(n))
    opt = torch.optim.Adam([W_enc, b_enc, W_dec, b_pre], lr=1e-3)
    a = torch.randn(B, n)
    tv = ((a - a.mean(0)) ** 2).sum()

    def step():
        pre = F.linear(a - b_pre, W_enc, b_enc)
        vals, idx = pre.topk(k, dim=1, sorted=False)
        f = F.relu(vals)
        ahat = F.embedding_bag(idx, W_dec, per_sample_weights=f, mode="sum") + b_pre
        fvu = ((a - ahat) ** 2).sum() / tv
        opt.zero_grad(set_to_none=True)
        fvu.backward()
        with torch.no_grad():
            g = W_dec.grad
            g -= (g * W_dec).sum(1, keepdim=True) * W_dec
        opt.step()
        with torch.no_grad():
            W_dec.div_(W_dec.norm(dim=1, keepdim=True))
        return fvu.item()

    step()
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(steps):
        fvu = step()
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    print(f"torch  SAE  768->24576 k=32 batch=4096: wall {1e3 * dt / steps:.1f} ms/step {B * steps / dt:.0f} "
          f"samples/s, cpu {1e3 * ct / steps:.1f} ms/step {B * steps / ct:.0f} samples/s "
          f"(fvu {fvu:.4f}, threads {threads}, torch {torch.__version__})")


bench_en() if what == "en" else bench_sae()
