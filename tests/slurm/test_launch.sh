#!/usr/bin/env bash
# test_launch.sh: miclip starts under both launchers inside a real Slurm allocation:
# `srun --mpi=pmix -n 2` and `mpirun -n 2` in a batch job, each rank seeing size 2.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/slurm_cluster.sh"
MICLIP=${MICLIP:?set MICLIP to the miclip binary}
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "PASS: $*"; }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
trap 'slurm_cluster_down' EXIT
trap 'exit 130' INT TERM
slurm_cluster_up || { echo "0 passed, 1 failed"; exit 1; }
work=$SLURM_TEST_DIR/jobs; mkdir -p "$work"; cd "$work"
cat > launch.sbatch <<SB
#!/bin/bash
#SBATCH -n 2
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "== srun"; srun --mpi=pmix -n 2 $MICLIP version; echo "srun rc=\$?"
echo "== mpirun"; mpirun -n 2 $MICLIP version; echo "mpirun rc=\$?"
SB
j=$(sbatch --parsable -o launch.out launch.sbatch)
slurm_wait_gone "$j" 120
grep -q '^srun rc=0' launch.out && grep -A3 '== srun' launch.out | grep -q 'ranks: 2' \
    && ok "srun --mpi=pmix -n 2 miclip" || bad "srun launch: $(cat launch.out)"
grep -q '^mpirun rc=0' launch.out && grep -A3 '== mpirun' launch.out | grep -q 'ranks: 2' \
    && ok "mpirun -n 2 miclip inside the allocation" || bad "mpirun launch: $(cat launch.out)"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
