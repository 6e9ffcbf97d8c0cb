#!/usr/bin/env bash
# check_threads.sh MIclip MPIEXEC: the default thread count (comm.h, mc_threads_default) and
# the precedence of the explicit settings, read from `miclip version`'s "threads per rank" line.
# Pins CPUs with taskset, so the answers do not depend on this machine's core count (needs 2).
set -u
miclip=$1; mpiexec=$2
fail=0; pass=0
bad() { echo "FAIL: $*"; fail=$((fail+1)); }
# threads WANT [env/taskset prefix...] -- ARGS: every "threads per rank" line must say WANT
threads() {
    local want=$1; shift
    local out; out=$(env -u OMP_NUM_THREADS -u MICLIP_THREADS -u SLURM_CPUS_PER_TASK "$@" 2>&1)
    local got; got=$(grep -o 'threads per rank: [0-9]*' <<<"$out" | awk '{print $4}' | sort -u)
    if [ "$got" = "$want" ]; then pass=$((pass+1)); else bad "want $want: $* -> $out"; fi
}
if ! taskset -c 0,1 true 2>/dev/null; then echo "SKIP: needs 2 CPUs"; exit 0; fi
threads 1 taskset -c 0 "$miclip" version
threads 2 taskset -c 0,1 "$miclip" version
threads 1 taskset -c 0,1 env OMP_NUM_THREADS=1 "$miclip" version
threads 1 taskset -c 0,1 env SLURM_CPUS_PER_TASK=1 "$miclip" version
threads 1 taskset -c 0,1 env OMP_NUM_THREADS=4,2 SLURM_CPUS_PER_TASK=1 "$miclip" version
# explicit settings win over the detected default, --threads over MICLIP_THREADS
threads 3 taskset -c 0 env MICLIP_THREADS=3 "$miclip" version
threads 4 taskset -c 0 env MICLIP_THREADS=3 OMP_NUM_THREADS=1 "$miclip" --threads 4 version
# two ranks sharing two CPUs (no binding): one thread each; bound to a core each: one each
threads 1 taskset -c 0,1 "$mpiexec" --oversubscribe --bind-to none -n 2 "$miclip" version
threads 1 taskset -c 0,1 "$mpiexec" --oversubscribe --bind-to none -n 2 -x SLURM_CPUS_PER_TASK=2 "$miclip" version
# the reasoning is printed
out=$(env -u OMP_NUM_THREADS taskset -c 0,1 "$mpiexec" --oversubscribe --bind-to none -n 2 "$miclip" version 2>&1)
grep -q 'shared by 2 rank(s) of 2 on this node' <<<"$out" && pass=$((pass+1)) || bad "reason missing: $out"
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
