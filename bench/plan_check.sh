#!/usr/bin/env bash
# plan_check.sh [BUILD_DIR] [options]: is `miclip plan` right on this machine? (issue 17, item 4)
#
# 1. writes full-size random ViT-B/16 and CLIP-B/16 folders (`miclip model random`), random JPEGs
#    in the ImageNet and DTD layouts (tools/imagenet_like.py) and the bundled concept sets cut to
#    --concepts lines each;
# 2. writes a copy of experiments/paper/vit_b16_imagenet.yaml pointed at them: the paper's model
#    shapes, layers, SAE width, methods and sweeps, with the rows scaled down (images, concepts,
#    seeds) and the changes a check needs: `align.stop: epochs` (the default `converged`
#    is planned at its cap, max_epochs, an upper bound a measurement cannot match), no
#    `models.mpnet` (there is no random MPNet writer; the report skips that score), no V-Interp
#    in the methods (the config's explainer is a placeholder) and, in older configs, the
#    ImageNet concept set as `source: classes` (intervene's miclip method needs one; the word
#    file of the paper config stops the run at intervene);
# 3. calibrates (`miclip plan CONFIG --calibrate`), plans that exact config with that calibration
#    (`miclip plan --json`), runs it (`miclip run`) and calibrates again, back to back, so the
#    run sits between two calibrations (on a shared machine the load moves: both are shown);
# 4. prints, per stage, the plan's time for the stage inside one `miclip run` (run_seconds: all
#    tasks in sequence, the job start-up once) from each calibration against the measured one,
#    and the load average during the run.
#
# Options (defaults in brackets): --ranks R [1] --threads T [1] (the run is `mpiexec -n R`),
# --seeds LIST ["0"] (e.g. "0, 1, 2" as the paper), --classes C [8] --train N [12] --val N [5]
# (images per class), --textures C [4] --dtd N [4] (DTD images per texture), --concepts K [100],
# --work DIR [BUILD_DIR/plan_check]. The data and models are reused when present; the run's output
# folder is cleared every time. Exit status 0 whatever the ratios (it reports, it does not judge).
# On a cluster: run it on a compute node (srun -N1 -n R -c T bash bench/plan_check.sh ...).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
build=build
[ $# -gt 0 ] && [ "${1#--}" = "$1" ] && { build=$1; shift; }
ranks=1 threads=1 seeds="0" classes=8 train=12 val=5 textures=4 dtd=4 concepts=100 work=""
while [ $# -gt 0 ]; do
    case $1 in
    --ranks) ranks=$2 ;; --threads) threads=$2 ;; --seeds) seeds=$2 ;;
    --classes) classes=$2 ;; --train) train=$2 ;; --val) val=$2 ;;
    --textures) textures=$2 ;; --dtd) dtd=$2 ;; --concepts) concepts=$2 ;; --work) work=$2 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "plan_check.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
    shift 2
done
for v in ranks threads classes train val textures dtd concepts; do
    [[ ${!v} =~ ^[1-9][0-9]*$ ]] || { echo "plan_check.sh: --$v wants a positive count" >&2; exit 2; }
done
miclip=$(cd "$(dirname "$build/miclip")" && pwd)/miclip
[ -x "$miclip" ] || { echo "plan_check.sh: $build/miclip not found; build the miclip target" >&2; exit 2; }
work=${work:-$build/plan_check}
mkdir -p "$work"
work=$(cd "$work" && pwd)
py=/usr/bin/python3
[ -x $py ] || py=python3
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads MICLIP_LOG_TASKS=1

# 1. models, images, concepts
for a in vit-b16 clip-b16; do
    [ -f "$work/$a/model.safetensors" ] ||
        "$miclip" --quiet model random --arch "$a" --seed 1 --out "$work/$a" >/dev/null
done
stamp="classes $classes train $train val $val textures $textures dtd $dtd"
if [ "$(cat "$work/data/.stamp" 2>/dev/null)" != "$stamp" ]; then
    rm -rf "$work/data"
    $py "$src/tools/imagenet_like.py" "$work/data" --classes "$classes" --train "$train" \
        --val "$val" --dtd-classes "$textures" --dtd "$dtd" >/dev/null
    echo "$stamp" >"$work/data/.stamp"
fi
mkdir -p "$work/concepts"
for f in common3k common10k common20k; do
    awk -v k="$concepts" 'NF && !/^[[:space:]]*#/ && n++ < k' "$src/data/concepts/$f.txt" \
        >"$work/concepts/$f.txt"
done
# The CLIP tokenizer: a CLIP-layout BPE learned from the concept words (1000 merges), so common
# words are one or two tokens as with the published vocabulary (the random writer leaves none).
MICLIP_SOURCE_DIR=$src $py - "$work" <<'PY'
import glob, os, sys
sys.path.insert(0, os.path.join(os.environ["MICLIP_SOURCE_DIR"], "tests", "text"))
import ref_tokenizers as R
work = sys.argv[1]
texts = ["a photo of a %s." % l.strip() for f in sorted(glob.glob(work + "/concepts/*.txt"))
         for l in open(f) if l.strip()]
vocab, merges = R.train_bpe(texts, 1000)
R.write_clip_vocab(work + "/clip-b16", vocab, merges)
PY

# 2. the paper config, pointed at them and scaled down in rows (every edit is checked)
n_train=$((classes * train))
n_samples=$((n_train * 3 / 4)) # a sample of the split, as the paper's 100k of 1.28M
cfg=$work/paper_scaled.yaml
names=$work/data/imagenet/class_names.txt # wnid -> the random ViT's id2label, as ImageNet's
sed -e "s#^output_dir: .*#output_dir: $work/out#" \
    -e "s#^seeds: .*#seeds: [$seeds]#" \
    -e "s#^  target: .*#  target: $work/vit-b16#" \
    -e "s#^  clip: .*#  clip: $work/clip-b16#" \
    -e "/^  mpnet: /d" \
    -e "s#root: /data/imagenet, split: train, n_samples: 100000}#root: $work/data/imagenet, split: train, n_samples: $n_samples, class_names: $names}#" \
    -e "s#root: /data/imagenet, split: val}#root: $work/data/imagenet, split: val, class_names: $names}#" \
    -e "s#root: /data/dtd#root: $work/data/dtd#" \
    -e "s#{name: imagenet, file: \.\./\.\./data/concepts/imagenet_labels.txt}#{name: imagenet, source: classes}#" \
    -e "s#file: \.\./\.\./data/concepts/#file: $work/concepts/#" \
    -e "s#^align:#align:\n  stop: epochs#" \
    -e "s#methods: \[act_values, clip_dissect, vinterp\]#methods: [act_values, clip_dissect]#" \
    -e "s#methods: \[miclip, act_values, clip_dissect, vinterp\]#methods: [miclip, act_values, clip_dissect]#" \
    "$src/experiments/paper/vit_b16_imagenet.yaml" >"$cfg"
for want in "output_dir: $work/out" "target: $work/vit-b16" "clip: $work/clip-b16" \
    "n_samples: $n_samples, class_names" "split: val, class_names" "stop: epochs"; do
    grep -qF "$want" "$cfg" || { echo "plan_check.sh: the paper config changed; '$want' not set" >&2; exit 1; }
done
! grep -q " /data/\|mpnet:\|vinterp\]" "$cfg" || { echo "plan_check.sh: $cfg still names /data, mpnet or vinterp" >&2; exit 1; }
[ "$(grep -c "file: $work/concepts/" "$cfg")" = 3 ] && grep -q "source: classes" "$cfg" || { echo "plan_check.sh: concept sets not replaced" >&2; exit 1; }

# 3. calibrate, plan, run: back to back, under the same load
load() { cut -d' ' -f1 /proc/loadavg; }
l0=$(load)
"$miclip" --quiet plan "$cfg" --calibrate --threads "$threads" --out "$work/calibration.json"
l1=$(load)
"$miclip" --quiet plan "$cfg" --ranks "$ranks" --threads "$threads" \
    --calibration "$work/calibration.json" --json >"$work/plan.json"
"$miclip" --quiet plan "$cfg" --ranks "$ranks" --threads "$threads" \
    --calibration "$work/calibration.json" >"$work/plan.txt"
rm -rf "$work/out"
echo "plan_check.sh: running $cfg at $ranks rank(s) x $threads thread(s) (log: $work/run.log)" >&2
(while :; do echo "$(date -u +%H:%M:%S) $(cut -d' ' -f1-3 /proc/loadavg)"; sleep 15; done) \
    >"$work/load.log" &
sampler=$!
trap 'kill $sampler 2>/dev/null || true' EXIT
t0=$(date +%s)
rc=0
mpiexec --oversubscribe -n "$ranks" "$miclip" --threads "$threads" run "$cfg" >"$work/run.log" 2>&1 || rc=$?
t1=$(date +%s)
kill $sampler 2>/dev/null || true
[ $rc = 0 ] || { tail -20 "$work/run.log" >&2; echo "plan_check.sh: the run failed (rc $rc)" >&2; exit $rc; }
l2=$(load)
"$miclip" --quiet plan "$cfg" --calibrate --threads "$threads" --out "$work/calibration-after.json"
l3=$(load)
"$miclip" --quiet plan "$cfg" --ranks "$ranks" --threads "$threads" \
    --calibration "$work/calibration-after.json" --json >"$work/plan-after.json"

# 4. the table
$py - "$work" "$l0 -> $l1" "$l2 -> $l3" $((t1 - t0)) <<'PY'
import json, re, sys
work, lb, la, total = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
plan = json.load(open(work + "/plan.json"))
after = {s["stage"]: s for s in json.load(open(work + "/plan-after.json"))["stages"]}
log = open(work + "/run.log").read()
meas, tasks = {}, {}
for m in re.finditer(r"stage \d+/\d+ (\w+): (\d+) task\(s\) done in ([\d.]+) s", log):
    meas[m.group(1)] = float(m.group(3))
for m in re.finditer(r"stage (\w+): task \S+ done in ([\d.]+) s", log):
    tasks.setdefault(m.group(1), []).append(float(m.group(2)))
loads = [float(l.split()[1]) for l in open(work + "/load.log") if len(l.split()) > 1]
for name, f, l in (("before", "calibration.json", lb), ("after", "calibration-after.json", la)):
    cal = json.load(open(work + "/" + f))
    fw = cal.get("forward", {})
    print("calibration %s the run (%s, load %s): sgemm %.1f GFLOP/s, memory %.1f GB/s, decode "
          "%.0f img/s, forward %.2f img/s of a %.2f GMAC model, at %d thread(s)" % (
              name, cal["created_utc"], l, cal["sgemm_gflops"], cal["mem_gbps"],
              cal["decode_images_per_s"], fw.get("images_per_s", 0), fw.get("gmac_per_image", 0),
              cal["threads"]))
print("run: %d rank(s) x %d thread(s), %d s in all; images per seed train %d, eval %d, unseen %d"
      % (plan["ranks"], plan["threads"], total, plan["images"]["train"], plan["images"]["eval"],
         plan["images"]["unseen"]))
if loads:
    print("load average (1 min) during the run: min %.1f, mean %.1f, max %.1f (%d samples)"
          % (min(loads), sum(loads) / len(loads), max(loads), len(loads)))
print()
print("| stage | tasks | predicted (before) | predicted (after) | measured | "
      "measured / predicted (before, after) |")
print("|---|---|---|---|---|---|")
ratio = lambda a, b: "%.2f" % (a / b) if b > 0 else "-"
for s in plan["stages"]:
    name, pb, pa = s["stage"], s["run_seconds"], after[s["stage"]]["run_seconds"]
    got = meas.get(name, sum(tasks.get(name, [])) if name in tasks else None)
    if got is None:
        print("| %s | %d | %.1f s | %.1f s | (not run) | |" % (name, s["tasks"], pb, pa))
        continue
    print("| %s | %d | %.1f s | %.1f s | %.1f s | %s, %s |" % (name, s["tasks"], pb, pa, got,
                                                             ratio(got, pb), ratio(got, pa)))
PY
