#!/usr/bin/env bash
# check_examples.sh MICLIP: the committed example scripts (slurm/world/, slurm/paper/ and
# slurm/paper/PLAN.txt) are what slurm/make-examples.sh writes with this build. Regenerates them
# into a temporary folder and compares; a difference means they are stale: run
#   slurm/make-examples.sh build/miclip
# and commit the result.
set -u
miclip=$1
src=${MICLIP_SOURCE_DIR:?}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bash "$src/slurm/make-examples.sh" "$miclip" "$tmp/slurm" >/dev/null || { echo "FAIL: make-examples.sh"; exit 1; }
status=0
diff -r "$src/slurm/world" "$tmp/slurm/world" || status=1
diff -r -x models -x calibration-dev.json "$src/slurm/paper" "$tmp/slurm/paper" || status=1
if [ $status -ne 0 ]; then
    echo "FAIL: the committed slurm/ examples are stale (lines with < are committed, > regenerated):"
    echo "      run 'slurm/make-examples.sh build/miclip' and commit slurm/"
fi
exit $status
