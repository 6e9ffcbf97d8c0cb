#!/usr/bin/python3
"""Issue 16 end to end, on the stage fixture (tiny world, random tiny models), at 2 ranks:

  datasets  a README.txt and a hidden file in a class folder: extraction runs, warns once with
            the count and names, records dataset_n_skipped = 2; a FIFO named like an image makes
            extraction fail on every rank with one error naming it (it used to vanish silently)
  concepts  a concept list with invalid UTF-8, then one with a NUL byte: localize fails with
            FILE:LINE: invalid UTF-8 at byte N / NUL byte at byte N (they used to be stored raw)
  checksums the complete extraction store carries a sha256 on every dataset; `miclip store
            verify` passes it; after one byte of acts/2 is flipped in the file, verify exits 1
            with one line naming the dataset, and the next stage (sae, reading the activations
            whole) fails on every rank with the checksum message
Prints 'N passed, N failed'; exit 0 only when all pass."""
import glob
import os
import shutil
import sys

import h5py

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixture  # noqa: E402
from fixture import check  # noqa: E402
from test_method import write_config  # noqa: E402


def run(np_, args, **kw):
    return fixture.mpirun(np_, args, capture_output=True, text=True, timeout=300, **kw)


def world_copy(src, dst):
    shutil.copytree(src, dst, symlinks=True)
    return dst


def main():
    what = sys.argv[1]
    tmp = os.path.abspath("issue16_" + what)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    world, vit, clip = fixture.make(os.path.abspath("fixture"))
    if what == "datasets":
        w = world_copy(world, os.path.join(tmp, "world"))
        cls = sorted(d for d in glob.glob(os.path.join(w, "train", "*")) if os.path.isdir(d))[0]
        open(os.path.join(cls, "README.txt"), "w").write("not an image\n")
        open(os.path.join(cls, ".notes"), "w").write("hidden\n")
        out = os.path.join(tmp, "out")
        cfg = os.path.join(tmp, "c.yaml")
        write_config(cfg, w, vit, clip, out, n=0, stages="[extract]")
        r = run(2, ["run", cfg])
        check(r.returncode == 0, "extract with a README and a hidden file exits 0 (%s)" % r.stderr[-300:])
        warn = [l for l in r.stderr.splitlines() if "skipped 2 folder entries that are not images" in l]
        check(len(warn) == 1 and "README.txt (not an image file name)" in warn[0] and ".notes (hidden)" in warn[0],
              "one warning with the count and the names: %s" % warn)
        stores = glob.glob(os.path.join(out, "extract", "*.h5"))
        with h5py.File(stores[0], "r") as f:
            check(f.attrs.get("dataset_n_skipped") == 2, "dataset_n_skipped = 2 in the extraction store")
        # a FIFO named like an image: an error naming it, on every rank, no hang
        os.mkfifo(os.path.join(cls, "zz_pipe.png"))
        out2 = os.path.join(tmp, "out2")
        write_config(cfg, w, vit, clip, out2, n=0, stages="[extract]")
        r = run(2, ["run", cfg])
        msg = "%s: is a FIFO, not an image file" % os.path.join(cls, "zz_pipe.png")
        check(r.returncode != 0 and msg in r.stderr and r.stderr.count(msg) == 1,
              "a FIFO in a class folder fails with one message naming it (%s)" % r.stderr[-400:])
    elif what == "concepts":
        w = world_copy(world, os.path.join(tmp, "world"))
        out = os.path.join(tmp, "out")
        cfg = os.path.join(tmp, "c.yaml")
        path = os.path.join(w, "concepts.txt")
        good = open(path, "rb").read()
        write_config(cfg, w, vit, clip, out, stages="[extract, sae, align]")
        r = run(2, ["run", cfg])
        check(r.returncode == 0, "extract, sae, align exit 0 (%s)" % r.stderr[-300:])
        lines = good.split(b"\n")
        for bad, want in [(b"caf\xc3 au lait", "concepts.txt:2: invalid UTF-8 at byte 4 (0xC3)"),
                          (b"ca\x00t", "concepts.txt:2: NUL byte at byte 3")]:
            open(path, "wb").write(b"\n".join([lines[0], bad] + lines[1:]))
            write_config(cfg, w, vit, clip, out, stages="[extract, sae, align, localize]")
            r = run(2, ["run", cfg])
            check(r.returncode != 0 and want in r.stderr, "localize refuses the concept list: %s (%s)" % (
                want, r.stderr.strip()[-300:]))
            check(not glob.glob(os.path.join(out, "concepts", "world-*.h5")), "no concept store was written")
    elif what == "checksums":
        out = os.path.join(tmp, "out")
        cfg = os.path.join(tmp, "c.yaml")
        write_config(cfg, world, vit, clip, out, stages="[extract]")
        r = run(2, ["run", cfg])
        check(r.returncode == 0, "extract exits 0 (%s)" % r.stderr[-300:])
        store = glob.glob(os.path.join(out, "extract", "*.h5"))[0]
        with h5py.File(store, "r") as f:
            names = []
            f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
            check(names and all("sha256" in f[n].attrs for n in names), "every dataset has a sha256 (%d)" % len(names))
            off = f["acts/2"].id.get_offset()
        r = run(2, ["store", "verify", store])
        check(r.returncode == 0 and ": ok, %d dataset(s) match" % len(names) in r.stdout, "verify passes: " + r.stdout)
        if off is None:  # chunked: find the first chunk's address
            with h5py.File(store, "r") as f:
                off = f["acts/2"].id.get_chunk_info(0).byte_offset
        with open(store, "r+b") as g:
            g.seek(off + 100)
            b = g.read(1)
            g.seek(off + 100)
            g.write(bytes([b[0] ^ 0x01]))
        r = run(2, ["store", "verify", store])
        lines = [l for l in r.stdout.splitlines() if "checksum mismatch" in l]
        check(r.returncode == 1 and len(lines) == 1 and "dataset '/acts/2'" in lines[0],
              "verify finds the flipped byte: %s" % r.stdout)
        write_config(cfg, world, vit, clip, out, stages="[extract, sae]")
        r = run(2, ["run", cfg])
        want = "dataset '/acts/2' does not match the checksum recorded when its stage completed"
        check(r.returncode != 0 and want in r.stderr, "sae fails reading the damaged activations (%s)" %
              r.stderr.strip()[-400:])
    return fixture.summary()


if __name__ == "__main__":
    sys.exit(main())
