#!/usr/bin/env bash
# check_script_values.sh MICLIP: values that enter the scripts `miclip slurm` writes (issue 16).
# No cluster: generation only, and the scripts run under bash with a fake srun.
#  1. Hostile option values (a newline and a command, $(...), backticks, quotes, spaces, '%'
#     where Slurm reads them) are refused with exit 2 and one line naming the option and the
#     character; nothing is written and nothing is run.
#  2. Paths that are legal but hostile to a shell (spaces, $(...), backticks, quotes) are quoted:
#     the #SBATCH block stays whole, and the script hands the launcher exactly those paths.
set -u
MICLIP=$1
SRC=${MICLIP_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
export MICLIP_CALIBRATION=/nonexistent OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$PWD/script_values_work
rm -rf "$W"; mkdir -p "$W"; cd "$W" || exit 2
fail=0; pass=0
ok() { pass=$((pass+1)); }
bad() { echo "FAIL: $*"; fail=$((fail+1)); }

# The main job's config, with absolute model paths, in a folder whose name is hostile to a shell.
weird="$W/we ird \$(touch PWNED1) \`touch PWNED2\` 'q' \"dq\""
mkdir -p "$weird"
sed -e "s#: world/#: $SRC/experiments/world/#" -e "s#\.\./results#$W/results#" \
    "$SRC/experiments/world.yaml" > "$weird/w.yaml"
cp "$weird/w.yaml" "$W/plain.yaml"

# 1. refused: OPTION VALUE WHAT-THE-MESSAGE-NAMES
refuse() {
    local what=$1; shift
    rm -rf "$W/out"
    out=$("$MICLIP" --quiet slurm "$@" 2>&1); rc=$?
    [ $rc -eq 2 ] && ok || bad "$what: exit $rc, expected 2: $out"
    first=$(head -n 1 <<<"$out")
    grep -qF -- "$what" <<<"$first" && ok || bad "$what: the message does not name it: $out"
    [ ! -e "$W/out" ] && ok || bad "$what: scripts were written anyway: $(ls "$W/out")"
}
refuse "--partition 'gpu?echo PWNED3': a newline" "$W/plain.yaml" --out "$W/out" --partition $'gpu\necho PWNED3'
refuse "--account 'a\$(touch PWNED4)': '\$'" "$W/plain.yaml" --out "$W/out" --account 'a$(touch PWNED4)'
refuse "--partition 'a\`touch PWNED5\`': '\`'" "$W/plain.yaml" --out "$W/out" --partition 'a`touch PWNED5`'
refuse "--account 'a'b': '''" "$W/plain.yaml" --out "$W/out" --account "a'b"
refuse "--account 'a\"b': '\"'" "$W/plain.yaml" --out "$W/out" --account 'a"b'
refuse "--partition 'a b': a space" "$W/plain.yaml" --out "$W/out" --partition 'a b'
refuse "--partition 'a;b': ';'" "$W/plain.yaml" --out "$W/out" --partition 'a;b'
refuse "--account 'a?b': byte 0x09" "$W/plain.yaml" --out "$W/out" --account $'a\tb'
refuse "--out '$W/out dir': a space" "$W/plain.yaml" --out "$W/out dir"
refuse "--out '$W/out%j': '%'" "$W/plain.yaml" --out "$W/out%j"
refuse "--out '$W/out#x': '#'" "$W/plain.yaml" --out "$W/out#x"
refuse "--out 'o?echo PWNED6': a newline" "$W/plain.yaml" --out $'o\necho PWNED6'
refuse "--miclip '/bin/m?touch PWNED7': a newline" "$W/plain.yaml" --out "$W/out" --miclip $'/bin/m\ntouch PWNED7'
refuse "CONFIG 'pl?in.yaml': a newline" $'pl\nin.yaml' --out "$W/out"
refuse "--partition: empty value" "$W/plain.yaml" --out "$W/out" --partition ''
# A directory named with a space above --out is caught on the absolute path (exit 1).
mkdir -p "$W/sp ace"
out=$(cd "$W/sp ace" && "$MICLIP" --quiet slurm "$W/plain.yaml" --out rel 2>&1); rc=$?
[ $rc -ne 0 ] && grep -qF -- "--out (absolute) '$W/sp ace/rel': a space" <<<"$out" && ok \
    || bad "relative --out under a folder with a space: exit $rc: $out"

# 2. accepted, and quoted
bin="$W/bin dir/it's \$(touch PWNED8) \`x\`"
mkdir -p "$bin"
out=$("$MICLIP" --quiet slurm "$weird/w.yaml" --out "$W/scripts" --miclip "$bin/miclip" \
      --partition gpu,cpu.small --account proj_1-a 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "generation with legal values: exit $rc: $out"
n=0
for f in "$W"/scripts/*.sbatch "$W/scripts/submit.sh"; do
    [ -f "$f" ] || continue
    n=$((n+1))
    bash -n "$f" && ok || bad "$f: not valid bash"
done
[ $n -ge 2 ] && ok || bad "no scripts written"
f=$W/scripts/01-extract.sbatch
# sbatch reads directives until the first command: every #SBATCH line must come before it.
last=$(grep -n '^#SBATCH' "$f" | tail -n 1 | cut -d: -f1)
cmd1=$(grep -nvE '^(#|$)' "$f" | head -n 1 | cut -d: -f1)
[ -n "$last" ] && [ -n "$cmd1" ] && [ "$last" -lt "$cmd1" ] && ok || bad "an #SBATCH line after a command in $f"
grep -qx '#SBATCH --partition=gpu,cpu.small' "$f" && ok || bad "partition line: $(grep partition "$f")"
grep -qx '#SBATCH --account=proj_1-a' "$f" && ok || bad "account line: $(grep account "$f")"
grep -qx "#SBATCH --output=$W/scripts/logs/extract-%A_%a.out" "$f" && ok || bad "output line: $(grep output= "$f")"

# Run the script with a fake srun that records its arguments: they must be the paths, verbatim.
mkdir -p "$W/fakebin"
printf '#!/bin/bash\nprintf "%%s\\n" "$@" > "%s/srun.args"\n' "$W" > "$W/fakebin/srun"
chmod +x "$W/fakebin/srun"
(cd "$W" && env -u MICLIP PATH="$W/fakebin:$PATH" SLURM_ARRAY_TASK_ID=1 SLURM_CPUS_PER_TASK=1 \
    SLURM_JOB_ID=7 bash "$f" > "$W/job.log" 2>&1)
rc=$?
[ $rc -eq 0 ] && ok || bad "the script under a fake srun exited $rc: $(cat "$W/job.log")"
args=$(cat "$W/srun.args" 2>/dev/null)
expect=$(printf '%s\n' --mpi=pmix --cpus-per-task=1 --kill-on-bad-exit=1 "$bin/miclip" run "$weird/w.yaml" \
    --stage extract --task 1)
[ "$args" = "$expect" ] && ok || bad "srun got other arguments:
$args
expected:
$expect"
# $MICLIP at run time still overrides the binary.
(cd "$W" && MICLIP=/other/miclip PATH="$W/fakebin:$PATH" SLURM_ARRAY_TASK_ID=0 bash "$f" > "$W/job2.log" 2>&1)
grep -qx /other/miclip "$W/srun.args" && ok || bad "\$MICLIP did not override: $(cat "$W/srun.args")"

found=$(find "$W" "$SRC" -maxdepth 3 -name 'PWNED*' 2>/dev/null)
[ -z "$found" ] && ok || bad "a value was run as a command: $found"

echo "check_script_values: $pass passed, $fail failed"
[ $fail -eq 0 ]
