"""ref_train.py - checks src/train against PyTorch autograd (float64) on small sizes.

For every case it writes random float32 inputs, runs tests/train/train_refdump (argv[1]) on
them, and compares the loss and every gradient with torch's, computed in float64 from the
same float32 values. Tolerance: 1e-5 relative, measured as max|c - ref| / max|ref| per tensor
(scalars: |c - ref| / max(|ref|, 1e-3)); the C code computes in float32 with float64
reductions, so 1e-5 leaves ~10x margin over its rounding at these sizes.
Cases: E_n + InfoNCE for in+out, in, out, each with a learnable and a fixed logit scale, with
repeated labels, plus fixed scales 1 (Algorithm 1) and 350 (the max-subtracted path); the top-k SAE with and without AuxK; Adam's first steps vs torch.optim.Adam.
Exit code = number of failed comparisons."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

EXE = sys.argv[1]
TOL = 1e-5
fails = 0
tmp = tempfile.mkdtemp(prefix="ref_train_")
rng = np.random.default_rng(1234)


def run(args, inputs, nout):
    pin, pout = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    np.concatenate([np.asarray(x, np.float32).ravel() for x in inputs]).astype("<f4").tofile(pin)
    subprocess.run([EXE] + [str(a) for a in args] + [pin, pout], check=True)
    out = np.fromfile(pout, "<f8")
    assert out.size == nout, (out.size, nout)
    return out


def compare(name, got, ref):
    global fails
    got = np.asarray(got, np.float64).ravel()
    ref = np.asarray(ref, np.float64).ravel()
    scale = max(np.abs(ref).max(), 1e-3)
    err = np.abs(got - ref).max() / scale
    ok = err <= TOL
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name:42s} rel err {err:.2e} (tol {TOL:g})")
    if not ok:
        i = np.argmax(np.abs(got - ref))
        print(f"     worst at {i}: {got[i]!r} vs {ref[i]!r}")


def f32(shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def clip_loss(u, t):
    logits_scaled = u @ t.T
    lab = torch.arange(u.shape[0])
    return (F.cross_entropy(logits_scaled, lab) + F.cross_entropy(logits_scaled.T, lab)) / 2


def align_case(variant, learn, scale=1 / 0.07):
    n, d, C, B = 12, 6, 5, 20
    W = f32((d, n), 1 / np.sqrt(n))
    logs = np.float32(np.log(scale))
    labels = rng.integers(0, C, B).astype(np.float32)  # repeats: 20 samples, 5 classes
    acts, img, cls = f32((B, n)), f32((B, d)), f32((C, d))
    out = run(["align", variant, int(learn), n, d, C, B], [W, [logs], labels, acts, img, cls], 4 + d * n)
    Wt = torch.tensor(W, dtype=torch.float64, requires_grad=True)
    ls = torch.tensor(float(logs), dtype=torch.float64, requires_grad=learn)
    u = F.normalize(torch.tensor(acts, dtype=torch.float64) @ Wt.T, dim=1)
    s = ls.exp()
    t_out = F.normalize(torch.tensor(cls, dtype=torch.float64)[torch.tensor(labels).long()], dim=1)
    t_in = F.normalize(torch.tensor(img, dtype=torch.float64), dim=1)
    l_out = clip_loss(s * u, t_out) if variant != "in" else torch.zeros((), dtype=torch.float64)
    l_in = clip_loss(s * u, t_in) if variant != "out" else torch.zeros((), dtype=torch.float64)
    loss = l_out + l_in
    loss.backward()
    tag = f"align {variant} {'learn' if learn else 'fixed'}" + (f" s={scale:g}" if scale != 1 / 0.07 else "")
    compare(tag + " loss", out[0], loss.item())
    compare(tag + " loss_out", out[1], l_out.item())
    compare(tag + " loss_in", out[2], l_in.item())
    compare(tag + " dlog_scale", out[3], ls.grad.item() if learn else 0.0)
    compare(tag + " dW", out[4:], Wt.grad.numpy())


def sae_case(with_aux):
    n, m, k, kaux, B = 10, 24, 3, 4, 18
    We = f32((m, n))
    We /= np.linalg.norm(We, axis=1, keepdims=True)
    Wd = (We + f32((m, n), 0.1)).astype(np.float32)
    Wd /= np.linalg.norm(Wd, axis=1, keepdims=True)
    be, bp = f32(m, 0.1), f32(n, 0.1)
    dead = np.zeros(m, np.float32)
    if with_aux:
        dead[rng.choice(m, 9, replace=False)] = 1
    acts = f32((B, n))
    out = run(["sae", n, m, k, kaux, B], [We, be, Wd, bp, dead, acts], 4 + 2 * m * n + m + n)
    T = lambda x: torch.tensor(x, dtype=torch.float64, requires_grad=True)
    We_t, be_t, Wd_t, bp_t = T(We), T(be), T(Wd), T(bp)
    a = torch.tensor(acts, dtype=torch.float64)
    pre = (a - bp_t) @ We_t.T + be_t
    v, ix = pre.topk(k, dim=1)
    f = torch.zeros(B, m, dtype=torch.float64).scatter(1, ix, F.relu(v))
    ahat = f @ Wd_t + bp_t
    e = a - ahat
    fvu = (e ** 2).sum() / ((a - a.mean(0)) ** 2).sum()
    loss = fvu
    aux = torch.zeros((), dtype=torch.float64)
    if with_aux:
        kk = min(kaux, int(dead.sum()))
        pd = pre.masked_fill(torch.tensor(dead < 0.5), float("-inf"))
        av, ai = pd.topk(kk, dim=1)
        z = torch.zeros(B, m, dtype=torch.float64).scatter(1, ai, F.relu(av))
        ehat = z @ Wd_t  # no b_pre: the residual has none
        ed = e.detach()
        aux = ((ed - ehat) ** 2).sum() / ((ed - ed.mean(0)) ** 2).sum()
        loss = fvu + aux / 32
    loss.backward()
    gd = Wd_t.grad.numpy()
    Wd64 = Wd.astype(np.float64)
    gd = gd - (gd * Wd64).sum(1, keepdims=True) * Wd64  # the unit-norm projection
    l0 = (f > 0).sum().item() / B
    tag = f"sae {'auxk' if with_aux else 'no-aux'}"
    compare(tag + " loss", out[0], loss.item())
    compare(tag + " fvu", out[1], fvu.item())
    compare(tag + " auxk", out[2], aux.item())
    compare(tag + " l0", out[3], l0)
    o = 4
    for name, g in (("dW_enc", We_t.grad), ("db_enc", be_t.grad), ("dW_dec", gd), ("db_pre", bp_t.grad)):
        g = np.asarray(g)
        compare(tag + " " + name, out[o:o + g.size], g)
        o += g.size


def adam_case(wd):
    N, steps, lr, b1, b2, eps = 50, 4, 1e-2, 0.9, 0.999, 1e-8
    p0 = f32(N)
    grads = f32((steps, N), 0.5)
    grads[1, :5] = 0  # exercise zero gradients
    out = run(["adam", N, steps, lr, b1, b2, eps, wd], [p0, grads], steps * N)
    p = torch.tensor(p0, requires_grad=True)  # float32, as the C code
    opt = torch.optim.Adam([p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for t in range(steps):
        p.grad = torch.tensor(grads[t])
        opt.step()
        compare(f"adam wd={wd} step {t + 1}", out[t * N:(t + 1) * N], p.detach().numpy())


for variant in ("in+out", "in", "out"):
    for learn in (True, False):
        align_case(variant, learn)
align_case("in+out", False, 1.0)    # Algorithm 1 literally: temperature 1
align_case("in+out", False, 350.0)  # beyond 300: the max-subtracted softmax path
sae_case(False)
sae_case(True)
adam_case(0.0)
adam_case(0.01)
print(f"{fails} failed")
sys.exit(min(fails, 100))
