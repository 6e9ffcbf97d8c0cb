"""ref_tsne.py - miclip's t-SNE (src/method/tsne.c, through tsne_run) beside scikit-learn's TSNE
on the same inputs. Usage: ref_tsne.py path/to/tsne_run. See docs/tsne.md.

t-SNE is a non-convex optimisation: two correct implementations that differ only in rounding
(sklearn optimises float32 coordinates, miclip double; sklearn's PCA init is randomized SVD,
miclip's subspace iteration) end in different local optima, so the embeddings are not compared
point by point. What is compared, and why each tolerance:
  * trustworthiness at k = 5 and 10 (how many embedded neighbours are true neighbours), ours vs
    sklearn's: |diff| <= 0.02. Reruns of sklearn itself with different seeds move it by ~0.005
    on these inputs; 0.02 leaves room for that and still catches a broken gradient or P (a
    wrong perplexity or an unsymmetrised P costs > 0.05).
  * both >= 0.90 on the blobs (well-separated clusters: any working t-SNE keeps neighbours).
  * the final KL divergence (sklearn's kl_divergence_, same definition: exact over all pairs,
    Barnes-Hut over the sparse P) within 10% relative: different local optima of the same
    objective differ by a few percent; a wrong gradient scale or exaggeration schedule by far more.
  * mc_trustworthiness equals sklearn.manifold.trustworthiness to 1e-9 (the same integer
    penalty sum; only the final division rounds) on both embeddings, with sklearn given the
    float32 data as float64. Given float32 arrays, sklearn rounds the input distances to float32,
    where a near-duplicate's two copies can tie as seen from a third point and its unstable
    argsort breaks the tie either way; miclip ranks by double distances (ties: lower index). On
    float32 input the two may then differ by a few penalty units: checked <= 1e-5 (~8 units at
    n = 300, k = 10).
  * determinism: two runs, and 1 vs 2 threads, give identical bytes.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from sklearn.datasets import make_blobs
from sklearn.manifold import TSNE, trustworthiness

RUN = sys.argv[1]
TOL_TRUST = 0.02
MIN_TRUST_BLOBS = 0.90
TOL_KL_REL = 0.10
TOL_TRUST_FN = 1e-9
TOL_TRUST_FN_F32 = 1e-5
failures = []


def check(ok, msg):
    print(("ok   " if ok else "FAIL ") + msg)
    if not ok:
        failures.append(msg)


def ours(tmp, x, method, threads=1, tag="a", **opt):
    n, d = x.shape
    xp = os.path.join(tmp, "x.f32")
    yp = os.path.join(tmp, f"y-{method}-{tag}.f64")
    x.astype("<f4").tofile(xp)
    args = [RUN, "embed", xp, str(n), str(d), yp, "--method", "exact" if method == "exact" else "bh",
            "--threads", str(threads)]
    for k, v in opt.items():
        args += ["--" + k.replace("_", "-"), str(v)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    fields = dict(f.split("=") for f in out.split())
    y = np.fromfile(yp, dtype="<f8").reshape(n, -1)
    return y, float(fields["kl"]), int(fields["n_iter"]), float(fields["seconds"]), open(yp, "rb").read()


def our_trust(tmp, x, y, k):
    n, d = x.shape
    xp, yp = os.path.join(tmp, "xt.f32"), os.path.join(tmp, "yt.f64")
    x.astype("<f4").tofile(xp)
    np.ascontiguousarray(y, dtype="<f8").tofile(yp)
    out = subprocess.run([RUN, "trust", xp, str(n), str(d), yp, str(y.shape[1]), str(k)],
                         check=True, capture_output=True, text=True).stdout
    return float(out)


def datasets():
    # 1. Gaussian blobs in 50-D: 300 points, 5 clusters.
    x, _ = make_blobs(n_samples=300, n_features=50, centers=5, cluster_std=2.0, random_state=0)
    yield "blobs", x.astype(np.float32), True
    # 2. Near-duplicates: 150 blob points, each with a copy moved by 1e-4 (the data's scale is
    #    ~10), so half the nearest-neighbour distances are ~1e-3 of the rest.
    b, _ = make_blobs(n_samples=150, n_features=50, centers=4, cluster_std=2.0, random_state=1)
    rng = np.random.default_rng(2)
    x = np.concatenate([b, b + 1e-4 * rng.standard_normal(b.shape)])
    yield "near-duplicates", x.astype(np.float32), True


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for name, x, clustered in datasets():
            for method in ("exact", "barnes_hut"):
                # sklearn 1.5 renamed n_iter to max_iter.
                steps = {"max_iter" if "max_iter" in TSNE().get_params() else "n_iter": 1000}
                sk = TSNE(n_components=2, perplexity=30.0, init="pca", learning_rate="auto",
                          method=method, random_state=0, **steps)
                ysk = sk.fit_transform(x)
                y, kl, it, secs, raw = ours(tmp, x, method)
                _, kl2, _, _, raw2 = ours(tmp, x, method, threads=2, tag="b")
                print(f"{name} {method}: sklearn KL {sk.kl_divergence_:.5f} ({sk.n_iter_ + 1} steps), "
                      f"ours {kl:.5f} ({it} steps, {secs:.2f} s)")
                check(raw == raw2 and kl == kl2, f"{name} {method}: 1 and 2 threads give identical bytes")
                _, _, _, _, raw3 = ours(tmp, x, method, tag="c")
                check(raw == raw3, f"{name} {method}: a second run gives identical bytes")
                check(abs(kl - sk.kl_divergence_) <= TOL_KL_REL * sk.kl_divergence_,
                      f"{name} {method}: KL ours {kl:.5f} vs sklearn {sk.kl_divergence_:.5f} "
                      f"(rel {abs(kl - sk.kl_divergence_) / sk.kl_divergence_:.4f} <= {TOL_KL_REL})")
                x64 = x.astype(np.float64)
                for k in (5, 10):
                    t_sk = trustworthiness(x64, ysk.astype(np.float64), n_neighbors=k)
                    t_ours = trustworthiness(x64, y, n_neighbors=k)
                    check(abs(t_sk - t_ours) <= TOL_TRUST,
                          f"{name} {method} T({k}): ours {t_ours:.4f} vs sklearn {t_sk:.4f} "
                          f"(|diff| {abs(t_sk - t_ours):.4f} <= {TOL_TRUST})")
                    if clustered:
                        check(min(t_sk, t_ours) >= MIN_TRUST_BLOBS, f"{name} {method} T({k}) >= {MIN_TRUST_BLOBS}")
                    for who, emb, ref in (("ours", y, t_ours), ("sklearn's", ysk.astype(np.float64), t_sk)):
                        t_fn = our_trust(tmp, x, emb, k)
                        check(abs(t_fn - ref) <= TOL_TRUST_FN,
                              f"{name} {method} mc_trustworthiness({k}) on {who} embedding {t_fn:.12f} "
                              f"= sklearn's {ref:.12f}")
                        ref32 = trustworthiness(x, emb, n_neighbors=k)
                        check(abs(t_fn - ref32) <= TOL_TRUST_FN_F32,
                              f"{name} {method} mc_trustworthiness({k}) on {who} embedding vs sklearn on "
                              f"float32 data: |diff| {abs(t_fn - ref32):.2e} <= {TOL_TRUST_FN_F32}")
    print(f"{len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
