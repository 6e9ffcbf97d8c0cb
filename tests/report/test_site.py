#!/usr/bin/python3
"""The report's results site (report/index.html, report/site/) on a generated tiny world.

Runs the whole pipeline (extract, sae, align, localize, describe, baselines, intervene, report; one
seed, the trained tiny ViT and CLIP) at 2 ranks, then checks:
  - the report at 1 rank writes the same site bytes, and a rerun touches no file (mtimes kept);
  - every local href/src of every page resolves to a file, every PNG decodes (PIL) and no grid is
    blank;
  - each unit page's top images (prefix rows and activations) equal a numpy recomputation from the
    prefix cache's state: a neuron's CLS value (extract.pool auto = cls for the ViT), an SAE
    feature's top-k code of it (relu(W_enc (x - b_pre) + b_enc), top k); its descriptions equal
    the describe store's top concepts; its grid has one tile per top image;
  - each class page lists every method's units of the intervene stores for that class;
  - headless Debian chromium loads the index, a class page and a unit page from file:// with no
    console error (pages report undecodable images on the console), the index's inline search
    (prefilled from the URL's #hash) lists matches, and screenshots of the index and of a unit
    page are taken (kept in the test folder; SITE_SHOTS=DIR copies them there).
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import html.parser
import os
import re
import shutil
import subprocess
import sys
import urllib.parse

import h5py
import numpy as np

SRC = os.environ.get("MICLIP_SOURCE_DIR", os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.join(SRC, "tests", "stages"))
import fixture  # noqa: E402
from fixture import check  # noqa: E402

TOP = 8


class Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.rows, self.tables = [], [], {}
        self._table = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for k in ("href", "src"):
            if k in a:
                self.links.append(a[k])
        if tag == "tr" and "data-row" in a:
            self.rows.append((int(a["data-row"]), int(a["data-image"]), float(a["data-act"])))


def local_target(page, link):
    u = urllib.parse.urlparse(link)
    if u.scheme or u.netloc:
        return None
    return os.path.normpath(os.path.join(os.path.dirname(page), urllib.parse.unquote(u.path))) if u.path else page


def snapshot(root):
    out = {}
    for p in sorted(glob.glob(os.path.join(root, "report", "index.html")) +
                    glob.glob(os.path.join(root, "report", "site", "**", "*"), recursive=True)):
        if os.path.isfile(p):
            out[os.path.relpath(p, root)] = (open(p, "rb").read(), os.stat(p).st_mtime_ns)
    return out


def chromium():
    for name in ("chromium", "chromium-browser"):
        p = shutil.which(name)
        if p:
            return p
    return None


def browse(exe, url, extra, tmp):
    """Runs headless chromium on url; returns (rc, dom or '', console error lines)."""
    prof = os.path.join(tmp, "chrome-profile")
    r = subprocess.run([exe, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--user-data-dir=" + prof,
                        "--allow-file-access-from-files", "--enable-logging=stderr", "--v=0",
                        "--virtual-time-budget=5000"] + extra + [url],
                       capture_output=True, text=True, timeout=120)
    # The site's pages write nothing to the console unless something is wrong, so any console line
    # counts (chromium logs them as "INFO:CONSOLE(line)] "message", source: ...").
    errs = [l for l in r.stderr.splitlines() if ":CONSOLE" in l or "Uncaught" in l
            or "Not allowed to load local resource" in l or "ERR_FILE_NOT_FOUND" in l]
    return r.returncode, r.stdout, errs, r.stderr


def main():
    tmp = os.path.join(os.getcwd(), "report_site")
    os.makedirs(tmp, exist_ok=True)
    world = os.path.join(tmp, "world")
    if not os.path.exists(os.path.join(world, "classes.txt")):
        subprocess.run([fixture.MICLIP, "--quiet", "world", "make", "--out", world, "--seed", "1", "--per-class", "6",
                        "--val-per-class", "2", "--unseen-per-class", "1"], check=True)
    vit, clip = (os.path.join(SRC, "experiments", "world", d) for d in ("vit", "clip"))
    out = os.path.join(tmp, "out")
    shutil.rmtree(out, ignore_errors=True)
    cfg = os.path.join(tmp, "site.yaml")
    with open(cfg, "w") as f:
        f.write(f"""name: site
output_dir: {out}
seeds: [0]
models: {{target: {vit}, clip: {clip}}}
datasets:
  train: {{kind: world, root: {world}, split: train}}
  eval: {{kind: world, root: {world}, split: val}}
concepts:
  - {{name: classes, source: classes}}
  - {{name: world, file: {world}/concepts.txt}}
extract: {{layers: ["3", logits], batch_size: 64}}
sae: {{layer: "3", features: 64, k: 4, batch_size: 32, epochs: 2}}
align: {{batch_size: 72, epochs: 2, lr: 0.15, variants: [in+out]}}
localize: {{tau: 3}}
describe: {{tau: 3}}
baselines: {{methods: [act_values, clip_dissect]}}
intervene: {{layer: "3", units: [neuron, sae], methods: [miclip, random], modes: [scale], betas: [0.0],
             datasets: [eval], tau: 3}}
report: {{figures: [sae_curves, attention_maps]}}
stages: [extract, sae, align, localize, describe, baselines, intervene, report]
""")
    r = fixture.mpirun(2, ["--quiet", "run", cfg], capture_output=True, text=True)
    check(r.returncode == 0, "the pipeline at 2 ranks exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-1500:]))
    if r.returncode:
        return fixture.summary()
    rep = os.path.join(out, "report")
    index = os.path.join(rep, "index.html")
    check(os.path.isfile(index), "report/index.html is written")
    snap2 = snapshot(out)
    r = fixture.mpirun(1, ["--quiet", "run", cfg, "--stage", "report"], capture_output=True, text=True)
    check(r.returncode == 0, "the report at 1 rank exits 0%s" % ("" if r.returncode == 0 else ": " + r.stderr[-800:]))
    snap1 = snapshot(out)
    check(set(snap1) == set(snap2) and all(snap1[k][0] == snap2[k][0] for k in snap1),
          "the site is the same bytes at 1 and 2 ranks (%d files)" % len(snap1))
    check(all(snap1[k][1] == snap2[k][1] for k in snap1 if k in snap2), "a rerun rewrites no site file (mtimes kept)")

    # Links and images.
    from PIL import Image
    pages = [index] + sorted(glob.glob(os.path.join(rep, "site", "*.html")))
    bad, n_links, parsed = [], 0, {}
    for p in pages:
        lk = Links()
        lk.feed(open(p, encoding="utf-8").read())
        parsed[p] = lk
        for l in lk.links:
            t = local_target(p, l)
            if t is None:
                bad.append((p, l, "external"))
                continue
            n_links += 1
            if not os.path.isfile(t):
                bad.append((p, l))
    check(not bad, "every href/src of %d pages (%d local links) resolves to a file, none external%s" %
          (len(pages), n_links, "" if not bad else ": %s" % bad[:5]))
    pngs = sorted(glob.glob(os.path.join(rep, "site", "grids", "*.png")))
    blank = []
    for p in pngs + sorted(glob.glob(os.path.join(rep, "figures", "*.png"))):
        im = Image.open(p)
        im.load()
        a = np.asarray(im.convert("RGB"))
        if a.std() < 1:
            blank.append(p)
    check(len(pngs) > 0 and not blank, "%d grid PNGs (and the figures) decode and none is blank%s" % (len(pngs), blank))

    # The reference: top images from the prefix cache (numpy), units and descriptions from the stores.
    ipath = sorted(glob.glob(os.path.join(out, "intervene", "intervene-s0-l3-miclip-scale-b0-*.h5")))[0]
    inter = h5py.File(ipath, "r")
    prefix = h5py.File(os.path.join(out, "intervene", os.path.basename(inter["eval/neuron"].attrs["prefix_store"])), "r")
    state = prefix["state"][:]
    pooled = state[:, 0, :].astype(np.float64)  # extract.pool auto: the CLS token of the ViT
    sae = h5py.File(os.path.join(out, "sae", os.path.basename(inter["eval/sae"].attrs["sae_store"])), "r")
    W, b, bp = sae["W_enc"][:].astype(np.float64), sae["b_enc"][:].astype(np.float64), sae["b_pre"][:].astype(np.float64)
    k = 4

    def code(x):
        pre = (x - bp) @ W.T + b
        f = np.zeros_like(pre)
        idx = np.argsort(-pre, axis=1, kind="stable")[:, :k]
        np.put_along_axis(f, idx, np.maximum(np.take_along_axis(pre, idx, axis=1), 0), axis=1)
        return f

    codes = code(pooled)
    dpath = sorted(glob.glob(os.path.join(out, "describe", "describe-s0-l3-inout-*.h5")))[0]
    desc = h5py.File(dpath, "r")
    checked, mism, desc_bad, grid_bad = 0, [], [], []
    for kind in ("neuron", "sae"):
        n_units = state.shape[2] if kind == "neuron" else W.shape[0]
        units = sorted(set(int(u) for u in inter["eval/%s/units" % kind][:].ravel()) | set(range(min(16, n_units))))
        have = sorted(int(re.match(r"%s-(\d+)\.html" % kind, os.path.basename(p)).group(1))
                      for p in glob.glob(os.path.join(rep, "site", "%s-*.html" % kind)))
        check(have == units, "%s pages: one per unit miclip edits for some class and per described unit (first 16) (%d)" % (kind, len(units)))
        for u in units:
            page = os.path.join(rep, "site", "%s-%d.html" % (kind, u))
            if page not in parsed:
                continue
            rows = parsed[page].rows
            v = pooled[:, u] if kind == "neuron" else codes[:, u]
            order = [i for i in np.argsort(-v, kind="stable") if kind == "neuron" or v[i] > 0][:TOP]
            got = [r[0] for r in rows]
            acts = np.array([r[2] for r in rows])
            same = got == [int(i) for i in order] or (
                len(got) == len(order) and np.allclose(np.sort(acts)[::-1], v[order], rtol=1e-4, atol=1e-5))
            if not same or not np.allclose(acts, v[got] if got else acts, rtol=1e-4, atol=1e-5):
                mism.append((kind, u, got, [int(i) for i in order]))
            ii = prefix["image_index"][:]
            if any(r[1] != int(ii[r[0]]) for r in rows):
                mism.append((kind, u, "image index"))
            con = [s.decode() for s in desc["world/concepts_bytes"][:].tobytes().split(b"\0")[:-1]]
            top = desc["world/%s/top_concepts" % kind][u]
            text = open(page, encoding="utf-8").read()
            want = [con[j] for j in top]
            pos = text.find("miclip (in+out), concept set world")
            seg = text[pos:text.find("</table>", pos)]
            if pos < 0 or re.findall(r"<tr><td>\d+</td><td>([^<]*)</td>", seg) != [html_escape(w) for w in want]:
                desc_bad.append((kind, u))
            im = Image.open(os.path.join(rep, "site", "grids", "%s-%d.png" % (kind, u)))
            rows_of_tiles = (len(rows) + 3) // 4
            if len(rows) and im.size[1] < rows_of_tiles * 128:
                grid_bad.append((kind, u, im.size))
            checked += 1
    check(checked > 0 and not mism, "%d unit pages: top images and activations equal numpy on the prefix state%s" %
          (checked, "" if not mism else ": %s" % mism[:3]))
    check(not desc_bad, "unit pages list the describe store's top concepts (world set)%s" % desc_bad[:3])
    check(not grid_bad, "each grid is tall enough for its tiles%s" % grid_bad[:3])
    classes_bad = []
    C = inter["eval/neuron/units"].shape[0]
    for c in range(C):
        text = open(os.path.join(rep, "site", "class-%d.html" % c), encoding="utf-8").read()
        for m in sorted(glob.glob(os.path.join(out, "intervene", "intervene-s0-l3-*-*.h5"))):
            h = h5py.File(m, "r")
            method = h.attrs["method"]
            method = method.decode() if isinstance(method, bytes) else method
            for kind in ("neuron", "sae"):
                want = " ".join(str(int(x)) for x in h["eval/%s/units" % kind][c])
                rows = re.findall(r"<tr><td>%s</td><td>[^<]*</td><td>(.*?)</td>" % re.escape(method), text)
                if want not in [re.sub(r"<[^>]+>", "", x) for x in rows]:
                    classes_bad.append((c, method, kind))
    check(not classes_bad, "class pages list every method's units from the intervene stores%s" % classes_bad[:3])

    # The browser.
    exe = chromium()
    check(exe is not None, "chromium is installed (scripts/install-deps.sh)")
    if exe:
        # A negative control: a page with a script error and an image that is not there is caught.
        neg = os.path.join(tmp, "broken.html")
        with open(neg, "w") as f:
            f.write(open(index, encoding="utf-8").read().replace("</body>", '<img src="missing.png"><script>nope();'
                                                                   '</script></body>'))
        rc, dom, errs, _ = browse(exe, "file://" + neg, ["--dump-dom"], tmp)
        check(any("nope" in e for e in errs) and any("missing.png" in e for e in errs),
              "the console check catches a script error and an image that does not decode (control)")
        unit_page = os.path.join(rep, "site", "sae-%d.html" % int(inter["eval/sae/units"][0][0]))
        for p in [index, os.path.join(rep, "site", "class-0.html"), unit_page]:
            rc, dom, errs, log = browse(exe, "file://" + p, ["--dump-dom"], tmp)
            check(rc == 0 and "</html>" in dom and not errs,
                  "chromium loads %s without console errors%s" % (os.path.relpath(p, out), "" if not errs else ": %s" % errs[:3]))
        rc, dom, errs, _ = browse(exe, "file://" + index + "#" + "circle", ["--dump-dom"], tmp)
        hits = re.findall(r'<ul id="hits">(.*?)</ul>', dom, re.S)
        check(rc == 0 and hits and "site/" in hits[0] and not errs,
              "the index's search for 'circle' lists links to pages (JS ran without errors)")
        shots = {}
        for name, p in [("site-index.png", index), ("site-unit.png", unit_page)]:
            shot = os.path.join(tmp, name)
            if os.path.exists(shot):
                os.remove(shot)
            rc, _, errs, log = browse(exe, "file://" + p, ["--screenshot=" + shot, "--window-size=1100,1400",
                                                           "--hide-scrollbars"], tmp)
            ok = rc == 0 and os.path.isfile(shot)
            if ok:
                a = np.asarray(Image.open(shot).convert("RGB"))
                ok = a.shape[0] == 1400 and a.std() > 5
            check(ok and not errs, "screenshot of %s (%s)" % (os.path.relpath(p, out), shot))
            shots[name] = shot
        dest = os.environ.get("SITE_SHOTS")
        if dest:
            for name, p in shots.items():
                if os.path.isfile(p):
                    shutil.copy(p, os.path.join(dest, name))

    # A deleted prefix cache: one warning naming it, the index alone, the tables unchanged.
    pre = glob.glob(os.path.join(out, "intervene", "prefix-*.h5"))
    aside = os.path.join(tmp, "aside")
    os.makedirs(aside, exist_ok=True)
    tables = {p: open(p, "rb").read() for p in glob.glob(os.path.join(rep, "tables", "*"))}
    for p in pre:
        shutil.move(p, aside)
    r = fixture.mpirun(2, ["run", cfg, "--stage", "report"], capture_output=True, text=True)
    for p in glob.glob(os.path.join(aside, "*")):
        shutil.move(p, os.path.join(out, "intervene"))
    warn = [l for l in r.stderr.splitlines() if "warning" in l and "prefix cache" in l]
    text = open(index, encoding="utf-8").read()
    check(r.returncode == 0 and len(warn) == 1 and os.path.basename(pre[0]) in warn[0] and "site/class-" not in text
          and all(open(p, "rb").read() == b for p, b in tables.items()),
          "without the prefix cache: exit 0, one warning naming it, the index without unit pages, the same tables")
    return fixture.summary()


def html_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&#39;")


if __name__ == "__main__":
    sys.exit(main())
