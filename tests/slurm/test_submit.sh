#!/usr/bin/env bash
# test_submit.sh PART: the scripts `miclip slurm` generates, run through a real private Slurm
# cluster (slurm_cluster.sh), on a tiny generated world with the committed tiny models.
#
#   submit  `miclip slurm --submit` (srun --mpi=pmix launcher) of the main job
#           experiments/world.yaml (smaller world, two seeds, one training epoch): every stage is
#           an array over its tasks (the seeds for extract), each stage pends with
#           Reason=Dependency until the previous array ended, every task completes, and every
#           store, table and report equals a direct `mpirun -n 2 miclip run` bitwise; the stores
#           record the Slurm job ids
#   deps    (mpirun launcher) the stage submitted --after a running job pends with
#           Reason=Dependency and starts only after it ended; --after a failing job it is
#           cancelled (--kill-on-invalid-dep=yes) and writes nothing; in a chain, a failing first
#           stage cancels the next
#   signal  `scancel --signal=USR1 --batch` to a running stage: miclip exits 75, the batch script
#           requeues the job, the restarted run resumes and the final store equals an
#           uninterrupted run's; requeueing the finished task again exits 0 at once and leaves
#           the store untouched
#   train   the same for a training stage (SAE, mpirun launcher): USR1 mid-training -> exit 75,
#           requeue, resume from the checkpoint -> the same SAE store as an uninterrupted run
#
# Prints PASS/FAIL lines and 'N passed, N failed'; exit 0 only when all pass.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/slurm_cluster.sh"
MICLIP=${MICLIP:?set MICLIP to the miclip binary}
SRC=${MICLIP_SOURCE_DIR:-$(cd "$here/../.." && pwd)}
PY=${MICLIP_PYTHON:-/usr/bin/python3}
part=${1:?usage: test_submit.sh submit|deps|signal|train}
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
finish() { echo "$pass passed, $fail failed"; [ $fail -eq 0 ]; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
trap 'slurm_cluster_down' EXIT
trap 'exit 130' INT TERM
slurm_cluster_up || { bad "cluster start"; finish; exit 1; }
W=$SLURM_TEST_DIR/jobs
mkdir -p "$W" && cd "$W" || exit 1

# --- the tiny world and models ----------------------------------------------------------------
VIT=$SRC/experiments/world/vit CLIP=$SRC/experiments/world/clip
if [ ! -f "$VIT/model.safetensors" ] || [ ! -f "$CLIP/vocab.json" ]; then
    # Not committed yet: random tiny models with a vocabulary learned from the world's classes.
    "$PY" -c "import sys; sys.path.insert(0, '$SRC/tests/stages'); import fixture; fixture.make('$W/fx', 2)" >/dev/null ||
        { bad "fixture"; finish; exit 1; }
    VIT=$W/fx/vit CLIP=$W/fx/clip
fi
PER_CLASS=2
[ "$part" = signal ] && PER_CLASS=16  # ~580 images at batch 1 (one flush per image): long enough to be interrupted even on an idle machine
"$MICLIP" --quiet world make --out "$W/world" --seed 1 --per-class $PER_CLASS --val-per-class 1 \
    --unseen-per-class 1 --hard-per-class 1 || { bad "world make"; finish; exit 1; }

# write_cfg FILE OUTPUT_DIR SEEDS BATCH
write_cfg() {
    cat >"$1" <<EOF
name: slurmtest
output_dir: $2
seeds: $3
models: {target: $VIT, clip: $CLIP}
datasets:
  train: {kind: world, root: $W/world, split: train}
extract: {layers: ["1", "2", "logits"], batch_size: $4}
stages: [extract]
EOF
}
# direct OUTPUT_DIR CONFIG: the reference run, no Slurm involved
direct() { mpirun --oversubscribe -n 2 "$MICLIP" --quiet run "$1" >"$W/direct.log" 2>&1; }
# tasks_state ID: '<count> JobState=<state>;' per state over the array's tasks (scontrol keeps them MinJobAge)
tasks_state() { scontrol show job -o "$1" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | sort | uniq -c | sed 's/^ *//' | tr '\n' ';'; }
wait_log() {   # wait_log FILE REGEX SECONDS
    local i
    for ((i = 0; i < $3 * 10; i++)); do grep -qE "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
    return 1
}

case $part in
submit)
    # The main job, experiments/world.yaml, on a smaller world: its own stages, layers, models
    # and settings, except the image folder, 48 training images, two seeds (an array over two
    # seeds), one epoch of SAE and E_n training and the output folder. The oracle's tasks share
    # one scores store and the tasks of a seed one prefix store: they run at once here.
    world_cfg() {
        sed -e "s#^output_dir:.*#output_dir: $1#" -e "s#\.\./results/world-data#$W/world#g" \
            -e "s#n_samples: [0-9]*#n_samples: 48#" -e "s#: world/#: $SRC/experiments/world/#g" \
            -e "s#^seeds:.*#seeds: [0, 1]#" -e "s#epochs: [0-9]*#epochs: 1#g" \
            "$SRC/experiments/world.yaml" >"$2"
    }
    world_cfg "$W/out-slurm" "$W/a.yaml"
    world_cfg "$W/out-direct" "$W/ref.yaml"
    if [ ! -f "$SRC/experiments/world.yaml" ] || ! "$MICLIP" --quiet config "$W/a.yaml" >/dev/null; then
        bad "experiments/world.yaml missing or invalid after the substitutions; using a small config"
        write_cfg "$W/a.yaml" "$W/out-slurm" "[0, 1]" 4
        write_cfg "$W/ref.yaml" "$W/out-direct" "[0, 1]" 4
    fi
    out=$("$MICLIP" slurm "$W/a.yaml" --out "$W/scripts" --ntasks-per-node 2 --submit 2>"$W/slurm.err")
    mapfile -t ids < <(awk '{print $2}' <<<"$out")
    mapfile -t names < <(awk '{print $1}' <<<"$out")
    n=${#ids[@]}
    A=${ids[0]:-}
    check "miclip slurm --submit printed one job id per stage: $(tr '\n' ' ' <<<"$out")" \
        bash -c "[ -n '$A' ] && [ '${names[0]:-}' = extract ] && [ $n -eq \$(ls '$W/scripts/'*.sbatch | wc -l) ]"
    check "script has the array, signal, requeue, append and dependency-kill lines" \
        bash -c "grep -q '^#SBATCH --array=0-1' '$W/scripts/01-extract.sbatch' && grep -q '^#SBATCH --signal=B:USR1@120' '$W/scripts/01-extract.sbatch' && grep -q '^#SBATCH --requeue' '$W/scripts/01-extract.sbatch' && grep -q '^#SBATCH --open-mode=append' '$W/scripts/01-extract.sbatch' && grep -q '^#SBATCH --kill-on-invalid-dep=yes' '$W/scripts/01-extract.sbatch' && grep -q 'srun --mpi=pmix' '$W/scripts/01-extract.sbatch'"
    if ((n > 1)); then
        # The scheduler sets the reason at its next pass: poll while the first stage is queued.
        for ((i = 0; i < 100; i++)); do
            r=$(slurm_job_field "${ids[1]}" Reason) q=$(squeue -h -j "$A" 2>/dev/null | wc -l)
            [ "$r" = Dependency ] && break
            sleep 0.1
        done
        check "stage ${names[1]} held while ${names[0]} is queued ($q task(s)): $(slurm_job_field "${ids[1]}" JobState) $r" \
            test "$r" = Dependency -a "$q" -gt 0
    fi
    slurm_wait_gone "${ids[n - 1]}" 1350
    for ((k = 0; k < n; k++)); do
        nt=$("$MICLIP" --quiet config "$W/a.yaml" --tasks | grep -c "^${names[k]} ")
        st=$(tasks_state "${ids[k]}")
        check "${names[k]}: all $nt array task(s) COMPLETED ($st)" test "$st" = "$nt JobState=COMPLETED;"
        if ((k > 0)); then
            end=$(scontrol show job -o "${ids[k - 1]}" | grep -oE 'EndTime=[^ ]+' | cut -d= -f2 | sort | tail -n 1)
            start=$(scontrol show job -o "${ids[k]}" | grep -oE 'StartTime=[^ ]+' | cut -d= -f2 | sort | head -n 1)
            check "${names[k]} started ($start) after every ${names[k - 1]} task ended ($end)" bash -c "[[ ! '$start' < '$end' ]]"
        fi
    done
    check "every task log ends with 'miclip exited 0'" \
        test "$(grep -L 'miclip exited 0' "$W/scripts/logs/"*.out 2>/dev/null | wc -l)" -eq 0
    # A failed task's own words, for whoever reads this log.
    for f in $(grep -L 'miclip exited 0' "$W/scripts/logs/"*.out 2>/dev/null | head -3); do
        echo "--- $f"; grep -E 'error|exited' "$f" | tail -5
    done
    check "array over two seeds: one train extraction store per seed" test "$(ls "$W/out-slurm/extract/"train-*.h5 2>/dev/null | wc -l)" -eq 2
    direct "$W/ref.yaml" || bad "direct mpirun run: $(tail -3 "$W/direct.log")"
    check "every store, table and report equals a direct mpirun -n 2 run's (bitwise) and carries slurm_job_id" \
        "$PY" "$here/compare_stores.py" "$W/out-slurm" "$W/out-direct" --slurm
    ;;
deps)
    write_cfg "$W/d.yaml" "$W/out-dep" "[0]" 8
    write_cfg "$W/f.yaml" "$W/out-never" "[0]" 8
    J1=$(sbatch --parsable -o /dev/null --wrap 'sleep 6')
    out=$("$MICLIP" slurm "$W/d.yaml" --out "$W/sd" --launcher mpirun --ntasks-per-node 2 --submit --after "$J1" 2>"$W/slurm.err")
    A=$(awk '$1 == "extract" {print $2}' <<<"$out")
    check "submitted after job $J1 as $A" test -n "$A"
    check "mpirun launcher in the script" grep -q '^mpirun -n "$SLURM_NTASKS"' "$W/sd/01-extract.sbatch"
    sleep 1.5
    r=$(slurm_job_field "$A" Reason) s1=$(slurm_job_field "$J1" JobState)
    check "held while $J1 runs: state $(slurm_job_field "$A" JobState), reason $r (prerequisite $s1)" \
        bash -c "[ '$r' = Dependency ] && [ '$s1' = RUNNING ] && [ ! -e '$W/out-dep/extract' ]"
    slurm_wait_gone "$A" 240
    e1=$(slurm_job_field "$J1" EndTime) s2=$(slurm_job_field "$A" StartTime)
    check "started ($s2) after the prerequisite ended ($e1), COMPLETED" \
        bash -c "[[ ! '$s2' < '$e1' ]] && [ '$(slurm_job_field "$A" JobState)' = COMPLETED ]"
    check "its store is complete" bash -c "grep -q 'miclip exited 0' '$W/sd/logs/extract-${A}_0.out' && ls '$W/out-dep/extract/'*.h5 >/dev/null"
    F=$(sbatch --parsable -o /dev/null --wrap 'exit 3')
    out=$("$MICLIP" slurm "$W/f.yaml" --out "$W/sf" --launcher mpirun --ntasks-per-node 2 --submit --after "$F" 2>>"$W/slurm.err")
    B=$(awk '$1 == "extract" {print $2}' <<<"$out")
    slurm_wait_gone "$B" 120
    check "after a failed prerequisite: $(slurm_job_field "$B" JobState) ($(slurm_job_field "$B" Reason)), nothing written" \
        bash -c "[ '$(slurm_job_field "$B" JobState)' = CANCELLED ] && [ ! -e '$W/out-never' ]"
    # Inside a chain: a failing first stage (its images are missing) cancels the next one.
    sed -e "s#$W/world#$W/no-such-world#" -e "s#$W/out-never#$W/out-bad#" -e "s#stages: .*#stages: [extract, sae]#" \
        -e "s#^extract: .*#&\nsae: {layer: \"2\", features: 64, k: 4}#" "$W/f.yaml" >"$W/bad.yaml"
    out=$("$MICLIP" slurm "$W/bad.yaml" --out "$W/sb" --launcher mpirun --ntasks-per-node 2 --submit 2>>"$W/slurm.err")
    mapfile -t ids < <(awk '{print $2}' <<<"$out")
    check "chain of two stages submitted ($(tr '\n' ' ' <<<"$out"))" test "${#ids[@]}" -eq 2
    slurm_wait_gone "${ids[1]:-0}" 120
    check "failed first stage ($(tasks_state "${ids[0]}")) cancels the next ($(slurm_job_field "${ids[1]:-0}" JobState))" \
        bash -c "[[ '$(tasks_state "${ids[0]}")' == *FAILED* ]] && [ '$(slurm_job_field "${ids[1]:-0}" JobState)' = CANCELLED ]"
    ;;
signal)
    write_cfg "$W/s.yaml" "$W/out-sig" "[0]" 1
    write_cfg "$W/sref.yaml" "$W/out-sigref" "[0]" 1
    out=$("$MICLIP" slurm "$W/s.yaml" --out "$W/ss" --ntasks-per-node 2 --submit 2>"$W/slurm.err")
    A=$(awk '$1 == "extract" {print $2}' <<<"$out")
    log=$W/ss/logs/extract-${A}_0.out
    check "submitted ($A)" test -n "$A"
    wait_log "$log" 'stage extract: task' 120 || bad "the stage never started: $(cat "$log" 2>/dev/null)"
    # The moment comes from the run's progress: its store exists (made before the first unit).
    for ((i = 0; i < 1200; i++)); do compgen -G "$W/out-sig/extract/*.h5" >/dev/null && break; sleep 0.1; done
    scancel --signal=USR1 --batch "${A}_0"
    wait_log "$log" 'restart 1 ' 120
    slurm_wait_gone "$A" 240
    check "USR1 forwarded, miclip exited 75 after a checkpoint, the job requeued itself" \
        bash -c "grep -q 'got SIGUSR1' '$log' && grep -q 'miclip exited 75' '$log' && grep -q 'requeueing job' '$log'"
    check "the restarted run (SLURM_RESTART_COUNT=1) finished: $(slurm_job_field "${A}_0" JobState), Restarts=$(slurm_job_field "${A}_0" Restarts)" \
        bash -c "grep -q 'restart 1 ' '$log' && [ \$(grep -c 'miclip exited 0' '$log') -eq 1 ] && [ '$(slurm_job_field "${A}_0" JobState)' = COMPLETED ] && [ '$(slurm_job_field "${A}_0" Restarts)' = 1 ]"
    direct "$W/sref.yaml" || bad "direct mpirun run: $(tail -3 "$W/direct.log")"
    check "store after USR1 + requeue equals an uninterrupted run's (bitwise)" \
        "$PY" "$here/compare_stores.py" "$W/out-sig" "$W/out-sigref" --slurm
    check "the store records the requeued run that completed it (completed_slurm_restart_count = 1)" \
        "$PY" -c "import glob, h5py, sys; f = h5py.File(glob.glob('$W/out-sig/extract/*.h5')[0], 'r'); sys.exit(0 if f.attrs.get('completed_slurm_restart_count') == '1' and f.attrs.get('completed_slurm_job_id') else 1)"
    # A finished task that runs again (requeue of a completed job) exits 0 at once.
    sum0=$(sha256sum "$W"/out-sig/extract/*.h5 | cut -c1-64)
    t0=$(date +%s)
    scontrol requeue "${A}_0" || bad "scontrol requeue of the finished task"
    wait_log "$log" 'restart 2 ' 120
    slurm_wait_gone "$A" 120
    took=$(sed -n '/restart 2 /,$p' "$log" | grep -E 'stage extract: task .* done in|miclip exited' | tr '\n' ' ')
    check "requeued finished task: exit 0, store untouched ($took)" \
        bash -c "[ \$(sed -n '/restart 2 /,\$p' '$log' | grep -c 'miclip exited 0') -eq 1 ] && [ '$(sha256sum "$W"/out-sig/extract/*.h5 | cut -c1-64)' = '$sum0' ]"
    echo "note: second requeue round trip took $(( $(date +%s) - t0 )) s (Slurm's cred_expire wait included)"
    ;;
train)
    # The same through a training stage (SAE: weights, Adam state and data position are
    # checkpointed), with the mpirun launcher forwarding USR1.
    cat >"$W/t.yaml" <<EOF
name: traintest
output_dir: $W/out-train
seeds: [0]
models: {target: $VIT, clip: $CLIP}
datasets:
  train: {kind: world, root: $W/world, split: train}
extract: {layers: ["3"], batch_size: 8}
sae: {layer: "3", features: 64, k: 4, batch_size: 16, epochs: 6000, checkpoint_every: 500}
stages: [extract, sae]
EOF
    sed "s#$W/out-train#$W/out-trainref#" "$W/t.yaml" >"$W/tref.yaml"
    if ! "$MICLIP" --quiet plan "$W/t.yaml" --json | "$PY" -c 'import json, sys
sys.exit(0 if any(s["stage"] == "sae" and s["implemented"] for s in json.load(sys.stdin)["stages"]) else 1)'; then
        bad "the sae stage is not implemented in this build"
    else
        out=$("$MICLIP" slurm "$W/t.yaml" --out "$W/st" --launcher mpirun --ntasks-per-node 2 --submit 2>"$W/slurm.err")
        S=$(awk '$1 == "sae" {print $2}' <<<"$out")
        log=$W/st/logs/sae-${S}_0.out
        check "extract + sae submitted ($(tr '\n' ' ' <<<"$out"))" test -n "$S"
        wait_log "$log" 'stage sae: task' 180 || bad "the sae stage never started: $(cat "$log" 2>/dev/null)"
        sleep 1
        scancel --signal=USR1 --batch "${S}_0"
        wait_log "$log" 'restart 1 ' 120
        slurm_wait_gone "$S" 240
        check "sae: USR1 through mpirun, exit 75 after a checkpoint, self-requeue" \
            bash -c "grep -q 'got SIGUSR1' '$log' && grep -q 'miclip exited 75' '$log' && grep -q 'requeueing job' '$log'"
        check "sae: restarted run finished: $(slurm_job_field "${S}_0" JobState), Restarts=$(slurm_job_field "${S}_0" Restarts)" \
            bash -c "[ \$(grep -c 'miclip exited 0' '$log') -eq 1 ] && [ '$(slurm_job_field "${S}_0" JobState)' = COMPLETED ] && [ '$(slurm_job_field "${S}_0" Restarts)' = 1 ]"
        direct "$W/tref.yaml" || bad "direct mpirun run: $(tail -3 "$W/direct.log")"
        check "SAE store (weights, curves) after USR1 + requeue equals an uninterrupted run's" \
            "$PY" "$here/compare_stores.py" "$W/out-train" "$W/out-trainref"
    fi
    ;;
*) bad "unknown part $part" ;;
esac
finish
