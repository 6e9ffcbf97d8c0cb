#!/bin/sh
# bench/text.sh - concepts/s embedding a 20k-word concept set with the CLIP B/16 text tower and
# the MPNet sentence encoder (full-size random weights), miclip beside PyTorch on the same
# threads (docs/performance.md, text section, records the figures).
#
#   bench/text.sh [BUILD_DIR] [THREADS] [N_WORDS]
#
# miclip's figure is the `miclip embed-text` wall (and CPU) time minus the same command on one
# word (loading the weights), so both sides count the forward passes; miclip's also includes
# its tokenization and the HDF5 write, PyTorch's does not. On a shared machine compare the CPU
# seconds as well as the wall clock. CLIP uses the template "a photo of a {}." (CLIP-Dissect's
# concept prompts are the bare words; the template is the design default), MPNet the words.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=${1:-build}
threads=${2:-1}
nwords=${3:-20000}
miclip="$build/miclip"
work="$build/bench_text"
[ -x "$miclip" ] || { echo "bench/text.sh: $miclip not found; build the miclip target" >&2; exit 2; }
mkdir -p "$work"
export OPENBLAS_NUM_THREADS="$threads" OMP_NUM_THREADS="$threads"
echo "threads: $threads   machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
if [ ! -f "$work/clip/model.safetensors" ] || [ ! -f "$work/mpnet/model.safetensors" ]; then
  /usr/bin/python3 "$src/tests/text/test_text_models_ref.py" --build-only "$work"
fi
/usr/bin/python3 - "$work" "$nwords" <<'PY'
import json, random, sys
work, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(0)
syl = "ba be bi bo bu ca ce ci co cu da de di do du fa fe fi ga ge go la le li lo lu ma me mi mo mu na ne ni no nu pa pe pi po ra re ri ro ru sa se si so ta te ti to tu va ve vi zo str tr pl gr".split()
words = set()
while len(words) < n:
    w = "".join(rng.choice(syl) for _ in range(rng.randint(1, 4)))
    if rng.random() < 0.2:
        w += " " + "".join(rng.choice(syl) for _ in range(rng.randint(1, 3)))
    words.add(w)
json.dump(sorted(words), open(work + "/words.json", "w"))
json.dump(["warmup"], open(work + "/one.json", "w"))
PY
for fam in clip mpnet; do
  tmpl=""
  [ "$fam" = clip ] && tmpl="a photo of a {}."
  set -- "$miclip" --quiet --threads "$threads" embed-text "$work/$fam" --texts "$work/one.json" --out "$work/one_$fam.h5"
  [ -n "$tmpl" ] && set -- "$@" --template "$tmpl"
  /usr/bin/time -f "%e %U %S" -o "$work/t_one" "$@"
  set -- "$miclip" --quiet --threads "$threads" embed-text "$work/$fam" --texts "$work/words.json" --out "$work/words_$fam.h5"
  [ -n "$tmpl" ] && set -- "$@" --template "$tmpl"
  /usr/bin/time -f "%e %U %S" -o "$work/t_all" "$@"
  /usr/bin/python3 - "$fam" "$work" "$nwords" "$threads" <<'PY'
import sys
fam, work, n, th = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
one = [float(x) for x in open(work + "/t_one").read().split()[-3:]]
alln = [float(x) for x in open(work + "/t_all").read().split()[-3:]]
wall = alln[0] - one[0]
cpu = alln[1] + alln[2] - one[1] - one[2]
print("miclip  %-5s threads %d: %d concepts in %.2f s wall (%.2f s CPU; load %.2f s excluded): %.0f concepts/s" %
      (fam, th, n, wall, cpu, one[0], n / wall))
PY
  # the same token ids for PyTorch
  /usr/bin/python3 - "$fam" "$work" "$src" <<'PY'
import json, sys, h5py, numpy as np
fam, work, src = sys.argv[1], sys.argv[2], sys.argv[3]
if fam == "clip":
    ids = h5py.File(work + "/words_clip.h5", "r")["input_ids"][:]
else:
    import importlib.util
    spec = importlib.util.spec_from_file_location("R", src + "/tests/text/ref_tokenizers.py")
    R = importlib.util.module_from_spec(spec); spec.loader.exec_module(R)
    wp = R.WordPieceRef(work + "/mpnet", 384)
    rows = [wp.encode(w) for w in json.load(open(work + "/words.json"))]
    L = max(len(r) for r in rows)
    ids = np.array([r + [1] * (L - len(r)) for r in rows], dtype=np.int32)
np.save(work + "/ids_%s.npy" % fam, ids)
PY
  /usr/bin/python3 "$here/text_torch.py" "$fam" "$work/$fam" "$work/ids_$fam.npy" "$threads"
done
