#!/usr/bin/python3
"""Reference check of src/image against Pillow (the library Hugging Face's image processors use).

Usage: check_image.py IMAGE_TOOL            (the ctest test; works in the current directory)
       check_image.py --write-corpus DIR    (regenerates the committed fuzz corpus)

It builds its inputs in ./image_work (odd sizes, every PNG colour type and bit depth, grayscale,
CMYK and progressive JPEG, scikit-learn's two real photographs, hostile files) and checks:
  * decoded pixels equal PIL's Image.open(f).convert("RGB") exactly;
  * Pillow resize (every filter, up and down, odd sizes): max |C - PIL| (must be 0: bit-exact);
  * the ViT / CLIP / ConvNext(ResNet) processors, written here from the transformers source
    (PIL path), on the uint8 crop (exact) and the float32 tensor (<= 1/255/std, expected 0);
  * hostile inputs give one clean error that names the file.
transformers itself is not installed here, so the processors are re-implemented below step by
step (see docs/preprocessing.md and the spec sections cited there).
"""
import json
import math
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image

Image.MAX_IMAGE_PIXELS = None
FAILS = []
RNG = np.random.default_rng(1234)


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print("FAIL:", what)


# ---- input generation -----------------------------------------------------------------------

def photo_like(w, h, seed):
    """Smooth colour gradients plus texture and noise: exercises every filter tap."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.zeros((h, w, 3))
    for c in range(3):
        fx, fy, ph = r.uniform(0.005, 0.2), r.uniform(0.005, 0.2), r.uniform(0, 6)
        img[..., c] = 128 + 90 * np.sin(fx * x + ph) * np.cos(fy * y) + r.normal(0, 25, (h, w))
    # a few hard edges
    img[(x // 7 + y // 5) % 11 == 0] = 255
    img[(x * 3 + y) % 37 == 0] = 0
    return np.clip(img, 0, 255).astype(np.uint8)


def png_chunk(t, data):
    return struct.pack(">I", len(data)) + t + data + struct.pack(">I", zlib.crc32(t + data) & 0xFFFFFFFF)


def png_bytes(w, h, ctype, depth, raw_rows, plte=None, trns=None):
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
    if plte is not None:
        out += png_chunk(b"PLTE", plte)
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += png_chunk(b"IDAT", zlib.compress(b"".join(b"\x00" + r for r in raw_rows)))
    return out + png_chunk(b"IEND", b"")


def png_adam7_rgb(a):
    """An 8-bit RGB PNG with Adam7 interlacing (Pillow cannot write one)."""
    h, w = a.shape[:2]
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    data = b""
    for x0, y0, dx, dy in passes:
        sub = a[y0::dy, x0::dx]
        if sub.shape[0] == 0 or sub.shape[1] == 0:
            continue
        data += b"".join(b"\x00" + r.tobytes() for r in sub)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1))
    out += png_chunk(b"IDAT", zlib.compress(data))
    return out + png_chunk(b"IEND", b"")


def pack_bits(vals, depth):
    """Packs a row of small ints MSB-first at depth 1/2/4."""
    per = 8 // depth
    pad = (-len(vals)) % per
    v = np.concatenate([vals, np.zeros(pad, dtype=vals.dtype)]).reshape(-1, per)
    b = np.zeros(v.shape[0], dtype=np.uint16)
    for i in range(per):
        b = (b << depth) | v[:, i]
    return b.astype(np.uint8).tobytes()


def make_inputs(d):
    os.makedirs(d, exist_ok=True)
    files = {}

    def save(name, im, **kw):
        p = os.path.join(d, name)
        im.save(p, **kw)
        files[name] = p

    def raw(name, data):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        files[name] = p

    sizes = [(1, 1), (3, 500), (500, 3), (333, 257), (64, 48), (640, 480), (257, 256), (17, 301)]
    for i, (w, h) in enumerate(sizes):
        save(f"rgb_{w}x{h}.png", Image.fromarray(photo_like(w, h, i)))
    base = Image.fromarray(photo_like(333, 257, 99))
    save("q90_420.jpg", base, quality=90, subsampling=2)
    save("q95_444.jpg", base, quality=95, subsampling=0)
    save("q75_422.jpg", base, quality=75, subsampling=1)
    save("progressive.jpg", base, quality=85, progressive=True)
    save("gray.jpg", base.convert("L"), quality=90)
    save("cmyk.jpg", base.convert("CMYK"), quality=90)
    save("odd_1x1.jpg", Image.fromarray(photo_like(1, 1, 5)), quality=90)
    save("odd_3x500.jpg", Image.fromarray(photo_like(3, 500, 6)), quality=90)
    save("gray.png", base.convert("L"))
    la = base.convert("LA")
    save("la.png", la)
    rgba = base.convert("RGBA")
    rgba.putalpha(Image.fromarray(photo_like(333, 257, 7)[..., 0]))
    save("rgba.png", rgba)
    save("palette.png", base.convert("P", palette=Image.ADAPTIVE, colors=200))
    pal = base.convert("P", palette=Image.ADAPTIVE, colors=16)
    save("palette_trns.png", pal, transparency=3)
    save("gray_trns.png", base.convert("L"), transparency=77)
    save("rgb_as.jpg.png", base)  # wrong extension the other way round
    with open(files["rgb_as.jpg.png"], "rb") as f:
        raw("png_named.jpg", f.read())
    # 16-bit and low-depth PNGs, written by hand (PIL cannot write most of them)
    w, h = 45, 31
    g16 = RNG.integers(0, 65536, (h, w), dtype=np.uint16)
    g16[:5] = RNG.integers(0, 300, (5, w))  # values around the 255 clip
    raw("gray16.png", png_bytes(w, h, 0, 16, [r.astype(">u2").tobytes() for r in g16]))
    c16 = RNG.integers(0, 65536, (h, w, 3), dtype=np.uint16)
    raw("rgb16.png", png_bytes(w, h, 2, 16, [r.astype(">u2").tobytes() for r in c16]))
    a16 = RNG.integers(0, 65536, (h, w, 4), dtype=np.uint16)
    raw("rgba16.png", png_bytes(w, h, 6, 16, [r.astype(">u2").tobytes() for r in a16]))
    l16 = RNG.integers(0, 65536, (h, w, 2), dtype=np.uint16)
    raw("la16.png", png_bytes(w, h, 4, 16, [r.astype(">u2").tobytes() for r in l16]))
    for depth in (1, 2, 4):
        v = RNG.integers(0, 1 << depth, (h, w), dtype=np.uint8)
        raw(f"gray{depth}.png", png_bytes(w, h, 0, depth, [pack_bits(r, depth) for r in v]))
        p = RNG.integers(0, 1 << depth, (h, w), dtype=np.uint8)
        plte = RNG.integers(0, 256, 3 * (1 << depth), dtype=np.uint8).tobytes()
        raw(f"pal{depth}.png", png_bytes(w, h, 3, depth, [pack_bits(r, depth) for r in p], plte=plte))
    raw("adam7.png", png_adam7_rgb(photo_like(37, 29, 8)))
    raw("adam7_tiny.png", png_adam7_rgb(photo_like(3, 2, 9)))
    # real photographs shipped with scikit-learn
    import sklearn.datasets
    imgdir = os.path.join(os.path.dirname(sklearn.datasets.__file__), "images")
    for n in ("china.jpg", "flower.jpg"):
        files[n] = os.path.join(imgdir, n)
    return files


def make_hostile(d, files):
    bad = {}

    def raw(name, data):
        p = os.path.join(d, name)
        with open(p, "wb") as f:
            f.write(data)
        bad[name] = p

    with open(files["china.jpg"], "rb") as f:
        china = f.read()
    with open(files["rgb_640x480.png"], "rb") as f:
        png = f.read()
    with open(files["progressive.jpg"], "rb") as f:
        prog = f.read()
    raw("trunc_half.jpg", china[: len(china) // 2])
    raw("trunc_noeoi.jpg", china[:-2])
    raw("trunc_prog.jpg", prog[: len(prog) * 2 // 3])
    raw("trunc_half.png", png[: len(png) // 2])
    raw("trunc_header.png", png[:20])
    raw("empty.jpg", b"")
    raw("text.png", b"this is not an image at all\n")
    raw("random.bin", RNG.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    raw("jpeg_garbage.jpg", b"\xff\xd8\xff" + RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    raw("png_garbage.png", png[:33] + RNG.integers(0, 256, 2000, dtype=np.uint8).tobytes())
    # header claims 100000 x 100000 (30 GB of RGB): must be refused before any allocation
    raw("huge_dims.png", png_bytes(100000, 100000, 2, 8, [b"\x00" * 3]))
    raw("zero_dims.png", png_bytes(0, 5, 2, 8, []))
    bad["missing.jpg"] = os.path.join(d, "does_not_exist.jpg")
    bad["a_directory.png"] = d
    return bad


# ---- Hugging Face processors, re-implemented with PIL (transformers 4.x PIL path) ---------------

def load_rgb(path):
    return Image.open(path).convert("RGB")


def short_edge_size(w, h, s):
    short, long = (w, h) if w <= h else (h, w)
    new_long = int(s * long / short)
    return (new_long, s) if w <= h else (s, new_long)  # (height, width)


def get_size_dict(size, square):
    if isinstance(size, int):
        return {"height": size, "width": size} if square else {"shortest_edge": size}
    if isinstance(size, (list, tuple)):
        return {"height": size[0], "width": size[1]}
    return size


def center_crop(a, ch, cw):
    """transformers image_transforms.center_crop on an HWC array."""
    oh, ow = a.shape[:2]
    top, left = (oh - ch) // 2, (ow - cw) // 2
    bottom, right = top + ch, left + cw
    if top >= 0 and bottom <= oh and left >= 0 and right <= ow:
        return a[top:bottom, left:right]
    nh, nw = max(ch, oh), max(cw, ow)
    new = np.zeros((nh, nw) + a.shape[2:], dtype=a.dtype)
    tp, lp = math.ceil((nh - oh) / 2), math.ceil((nw - ow) / 2)
    new[tp:tp + oh, lp:lp + ow] = a
    top, bottom, left, right = top + tp, bottom + tp, left + lp, right + lp
    return new[max(0, top):min(nh, bottom), max(0, left):min(nw, right)]


DEFAULTS = {
    "vit": dict(do_resize=True, size={"height": 224, "width": 224}, resample=2, do_rescale=True,
                rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3),
    "clip": dict(do_resize=True, size={"shortest_edge": 224}, resample=3, do_center_crop=True,
                 crop_size={"height": 224, "width": 224}, do_rescale=True, rescale_factor=1 / 255,
                 do_normalize=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
                 image_std=[0.26862954, 0.26130258, 0.27577711]),
    "convnext": dict(do_resize=True, size={"shortest_edge": 384}, crop_pct=224 / 256, resample=2,
                     do_rescale=True, rescale_factor=1 / 255, do_normalize=True,
                     image_mean=[0.5] * 3, image_std=[0.5] * 3),
}
KIND = {"ViTImageProcessor": "vit", "ViTFeatureExtractor": "vit", "CLIPImageProcessor": "clip",
        "CLIPFeatureExtractor": "clip", "ConvNextImageProcessor": "convnext",
        "ConvNextFeatureExtractor": "convnext"}


def hf_preprocess(cfg, img):
    kind = KIND[cfg.get("image_processor_type") or cfg.get("feature_extractor_type")]
    c = dict(DEFAULTS[kind])
    c.update({k: v for k, v in cfg.items() if v is not None})
    size = get_size_dict(c["size"], kind == "vit")
    w, h = img.size
    im = img
    if c["do_resize"]:
        if kind == "convnext":
            s = size["shortest_edge"]
            if s < 384:
                rh, rw = short_edge_size(w, h, int(s / c["crop_pct"]))
                im = im.resize((rw, rh), resample=c["resample"])
                a = center_crop(np.asarray(im), s, s)
            else:
                a = np.asarray(im.resize((s, s), resample=c["resample"]))
        else:
            if "shortest_edge" in size:
                rh, rw = short_edge_size(w, h, size["shortest_edge"])
            else:
                rh, rw = size["height"], size["width"]
            a = np.asarray(im.resize((rw, rh), resample=c["resample"]))
    else:
        a = np.asarray(im)
    if kind == "clip" and c["do_center_crop"]:
        cs = get_size_dict(c["crop_size"], True)
        a = center_crop(a, cs["height"], cs["width"])
    u8 = np.ascontiguousarray(a)
    x = u8
    if c["do_rescale"]:
        x = (x.astype(np.float64) * c["rescale_factor"]).astype(np.float32)
    if c["do_normalize"]:
        x = x.astype(np.float32) if x.dtype != np.float32 else x
        mean = np.array(c["image_mean"], dtype=np.float32)
        std = np.array(c["image_std"], dtype=np.float32)
        x = (x - mean) / std
    x = x.astype(np.float32).transpose(2, 0, 1)
    std = np.array(c["image_std"] if c["do_normalize"] else [1.0] * 3, dtype=np.float64)
    return u8, np.ascontiguousarray(x), std


# ---- driver ---------------------------------------------------------------------------------

def run(tool, *args):
    r = subprocess.run([tool] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stdout.strip(), r.stderr.strip()


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--write-corpus":
        write_corpus(sys.argv[2])
        return 0
    tool = os.path.abspath(sys.argv[1])
    work = os.path.abspath("image_work")
    files = make_inputs(work)
    ycck = os.path.join(work, "ycck.jpg")
    rc, so, se = run(tool, "ycck", ycck)
    check(rc == 0, f"writing the YCCK JPEG: {so} {se}")
    files["ycck.jpg"] = ycck
    plain = os.path.join(work, "cmyk_noadobe.jpg")
    rc, so, se = run(tool, "cmyk-noadobe", plain)
    check(rc == 0, f"writing the plain CMYK JPEG: {so} {se}")
    files["cmyk_noadobe.jpg"] = plain
    out = os.path.join(work, "out.bin")

    # 1. decoding
    for name, p in sorted(files.items()):
        rc, so, se = run(tool, "decode", p, out)
        ref = np.asarray(load_rgb(p))
        if rc != 0:
            check(False, f"decode {name}: {so} {se}")
            continue
        w, h = map(int, so.split())
        got = np.fromfile(out, dtype=np.uint8)
        ok = (w, h) == (ref.shape[1], ref.shape[0]) and got.size == ref.size
        diff = int(np.abs(got.reshape(ref.shape).astype(int) - ref).max()) if ok else -1
        print(f"decode {name:22s} {w}x{h} mode={Image.open(p).mode:5s} max|C-PIL| = {diff}")
        check(ok and diff == 0, f"decode {name} differs from PIL (max {diff})")

    # 2. resizing, every filter
    worst = 0
    cases = [("rgb_333x257.png", [(224, 224), (298, 224), (111, 86), (500, 400), (333, 100), (7, 257)]),
             ("rgb_1x1.png", [(224, 224), (3, 1)]),
             ("rgb_3x500.png", [(224, 224), (1, 37), (3, 499)]),
             ("rgb_500x3.png", [(224, 224), (250, 1)]),
             ("rgb_64x48.png", [(224, 224), (299, 224), (65, 47)]),
             ("rgb_640x480.png", [(224, 224), (298, 224), (384, 288)]),
             ("rgb_257x256.png", [(256, 255), (256, 256)]),
             ("china.jpg", [(336, 224), (224, 224), (1000, 667)]),
             ("flower.jpg", [(336, 224), (224, 224)])]
    for name, targets in cases:
        src = load_rgb(files[name])
        for (tw, th) in targets:
            for f in range(6):
                rc, so, se = run(tool, "resize", files[name], tw, th, f, out)
                if rc != 0:
                    check(False, f"resize {name} {tw}x{th} f{f}: {so} {se}")
                    continue
                ref = np.asarray(src.resize((tw, th), resample=f)).astype(int)
                got = np.fromfile(out, dtype=np.uint8).reshape(th, tw, 3).astype(int)
                d = int(np.abs(got - ref).max())
                worst = max(worst, d)
                check(d == 0, f"resize {name} -> {tw}x{th} filter {f}: max|C-PIL| = {d}")
    print(f"resize: {sum(len(t) for _, t in cases) * 6} cases, max|C-PIL| = {worst} levels")

    # 3. processors
    configs = {
        "vit_hub": {"do_normalize": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
                    "image_std": [0.5, 0.5, 0.5], "size": 224, "feature_extractor_type": "ViTFeatureExtractor"},
        "clip_hub": {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
                     "feature_extractor_type": "CLIPFeatureExtractor",
                     "image_mean": [0.48145466, 0.4578275, 0.40821073],
                     "image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224},
        "resnet_hub": {"crop_pct": 0.875, "do_normalize": True, "do_resize": True,
                       "feature_extractor_type": "ConvNextFeatureExtractor",
                       "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225],
                       "resample": 3, "size": 224},
        "clip_new": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 224},
                     "crop_size": {"height": 224, "width": 224}, "do_convert_rgb": True,
                     "rescale_factor": 0.00392156862745098},
        "clip_nocrop": {"image_processor_type": "CLIPImageProcessor", "do_center_crop": False,
                        "size": {"shortest_edge": 96}},
        "clip_bigcrop": {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 50},
                         "crop_size": {"height": 61, "width": 47}, "resample": 1},
        "clip_hw": {"image_processor_type": "CLIPImageProcessor", "size": {"height": 100, "width": 80},
                    "crop_size": 64, "resample": 5},
        "vit_nearest": {"image_processor_type": "ViTImageProcessor", "size": {"height": 97, "width": 131},
                        "resample": 0, "image_mean": 0.3, "image_std": [0.2, 0.25, 0.3]},
        "vit_box_norescale": {"image_processor_type": "ViTImageProcessor", "size": [50, 70], "resample": 4,
                              "do_rescale": False},
        "vit_default": {"image_processor_type": "ViTImageProcessor"},
        "convnext_384": {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 384}},
        "convnext_default_pct": {"image_processor_type": "ConvNextImageProcessor",
                                 "size": {"shortest_edge": 160}, "crop_pct": None, "resample": 2},
        "no_resize": {"image_processor_type": "CLIPImageProcessor", "do_resize": False,
                      "crop_size": 40, "do_normalize": False},
    }
    pimgs = ["china.jpg", "flower.jpg", "rgb_333x257.png", "rgb_3x500.png", "rgb_1x1.png", "cmyk.jpg",
             "palette_trns.png", "gray16.png", "rgb_17x301.png"]
    worst_u8, worst_rel = 0, 0.0
    for cname, cfg in configs.items():
        cpath = os.path.join(work, f"{cname}.json")
        with open(cpath, "w") as f:
            json.dump(cfg, f)
        for name in pimgs:
            rc, so, se = run(tool, "preproc", cpath, files[name], out, out + ".u8")
            if rc != 0:
                check(False, f"preproc {cname} {name}: {so} {se}")
                continue
            h, w = map(int, so.split())
            u8, ref, std = hf_preprocess(cfg, load_rgb(files[name]))
            if (h, w) != ref.shape[1:]:
                check(False, f"preproc {cname} {name}: size {h}x{w} vs HF {ref.shape[1:]}")
                continue
            got = np.fromfile(out, dtype=np.float32).reshape(3, h, w)
            gu8 = np.fromfile(out + ".u8", dtype=np.uint8).reshape(h, w, 3)
            du8 = int(np.abs(gu8.astype(int) - u8.astype(int)).max())
            rel = float((np.abs(got.astype(np.float64) - ref) * std[:, None, None] * 255).max())
            worst_u8, worst_rel = max(worst_u8, du8), max(worst_rel, rel)
            check(du8 == 0, f"preproc {cname} {name}: uint8 max diff {du8}")
            check(rel <= 1.0, f"preproc {cname} {name}: float diff {rel} levels (> 1/255/std)")
            check(np.array_equal(got, ref), f"preproc {cname} {name}: float tensor not bit-identical")
    print(f"processors: {len(configs)} configs x {len(pimgs)} images: uint8 max diff {worst_u8}, "
          f"float max diff {worst_rel:.3g} levels (x std/255)")

    # 4. batch helper, and speed
    cpath = os.path.join(work, "clip_hub.json")
    batch = [files["china.jpg"], files["flower.jpg"], files["q90_420.jpg"]]
    rc, so, se = run(tool, "batch", cpath, out, *batch)
    check(rc == 0 and so == "3 224 224", f"batch: {so} {se}")
    if rc == 0:
        got = np.fromfile(out, dtype=np.float32).reshape(3, 3, 224, 224)
        for i, p in enumerate(batch):
            check(np.array_equal(got[i], hf_preprocess(configs["clip_hub"], load_rgb(p))[1]),
                  f"batch item {i} differs")
    for cname in ("clip_hub", "vit_hub", "resnet_hub"):
        rc, so, se = run(tool, "bench", files["china.jpg"], os.path.join(work, cname + ".json"), 20)
        check(rc == 0, f"bench: {so} {se}")
        if rc == 0:
            td, tp = map(float, so.split())
            print(f"speed ({cname}): china.jpg 640x427 decode {td:.2f} ms, preprocess {tp:.2f} ms")

    # 5. hostile inputs
    bad = make_hostile(work, files)
    for name, p in sorted(bad.items()):
        rc, so, se = run(tool, "decode", p, out)
        print(f"hostile {name:18s} -> rc={rc} {so[:150]}")
        check(rc == 3 and so.startswith("ERROR") and p in so and "\n" not in so,
              f"hostile {name}: expected one error naming the file, got rc={rc} {so!r} {se!r}")
        if name not in ("missing.jpg", "a_directory.png"):
            try:
                load_rgb(p)
                pil_ok = True
            except Exception:
                pil_ok = False
            check(not pil_ok, f"hostile {name}: PIL decodes it but miclip does not")
    st = {n: run(tool, "decode", p, out)[1].split(":")[0] for n, p in bad.items()}
    check(st["huge_dims.png"] == "ERROR unsupported", "huge dims must be 'unsupported' (cap)")
    check(st["missing.jpg"] == "ERROR io", "missing file must be an io error")
    check(st["trunc_half.jpg"] == "ERROR format", "truncated JPEG must be a format error")
    check(st["random.bin"] == "ERROR unsupported", "unknown format must be 'unsupported'")
    # the caps
    rc, so, _ = run(tool, "decode", files["china.jpg"], out, 640 * 427 - 1)
    check(rc == 3 and "cap" in so, f"pixel cap: {so}")
    rc, so, _ = run(tool, "decode", files["china.jpg"], out, 640 * 427)
    check(rc == 0, f"pixel cap (exact): {so}")
    rc, so, _ = run(tool, "decode", files["progressive.jpg"], out, 0, 2)
    check(rc == 3 and "scans" in so, f"scan cap: {so}")
    # the huge PNG is refused before allocation even with 200 MB of address space
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (200 << 20, 200 << 20))
    def limited(path, cap):
        return subprocess.run([tool, "decode", path, out, str(cap)], capture_output=True, text=True,
                              preexec_fn=limit)
    if limited(files["rgb_1x1.png"], 0).returncode != 0:
        print("address-space limit check skipped (sanitizer build reserves more than 200 MB)")
    else:
        r = limited(bad["huge_dims.png"], 10 ** 11)
        print("huge dims with the cap raised to 1e11 pixels under a 200 MB address-space limit:",
              r.stdout.strip())
        check(r.returncode == 3 and "ERROR" in r.stdout, "huge PNG with a raised cap must still fail cleanly")

    print(f"{len(FAILS)} failures")
    return 1 if FAILS else 0


def write_corpus(d):
    """Small seed files for the fuzzer (committed in tests/image/corpus)."""
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, "_tmp")
    os.makedirs(tmp, exist_ok=True)
    files = {}
    small = Image.fromarray(photo_like(19, 13, 3))
    for name, kw, im in [("baseline.jpg", dict(quality=80), small),
                         ("progressive.jpg", dict(quality=80, progressive=True), small),
                         ("gray.jpg", dict(quality=80), small.convert("L")),
                         ("cmyk.jpg", dict(quality=80), small.convert("CMYK")),
                         ("rgb.png", {}, small), ("la.png", {}, small.convert("LA")),
                         ("rgba.png", {}, small.convert("RGBA")),
                         ("palette.png", {}, small.convert("P", palette=Image.ADAPTIVE, colors=8))]:
        im.save(os.path.join(d, name), **kw)
        files[name] = os.path.join(d, name)
    w, h = 9, 7
    open(os.path.join(d, "gray16.png"), "wb").write(
        png_bytes(w, h, 0, 16, [RNG.integers(0, 65536, w, dtype=np.uint16).astype(">u2").tobytes() for _ in range(h)]))
    open(os.path.join(d, "pal2.png"), "wb").write(
        png_bytes(w, h, 3, 2, [pack_bits(RNG.integers(0, 4, w, dtype=np.uint8), 2) for _ in range(h)],
                  plte=bytes(range(12))))
    open(os.path.join(d, "huge_dims.png"), "wb").write(png_bytes(100000, 100000, 2, 8, [b"\x00" * 3]))
    b = open(files["baseline.jpg"], "rb").read()
    open(os.path.join(d, "trunc.jpg"), "wb").write(b[: len(b) // 2])
    p = open(files["rgb.png"], "rb").read()
    open(os.path.join(d, "trunc.png"), "wb").write(p[: len(p) // 2])
    os.rmdir(tmp)


if __name__ == "__main__":
    sys.exit(main())
