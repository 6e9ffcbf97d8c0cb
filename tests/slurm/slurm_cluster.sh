#!/usr/bin/env bash
# slurm_cluster.sh - a private one-node Slurm cluster for tests (Debian 12, as root).
#
# Source it:  . tests/slurm/slurm_cluster.sh
#             slurm_cluster_up      # munged + slurmctld + slurmd in a fresh temp directory
#             ... sbatch/squeue/scontrol with SLURM_CONF exported ...
#             slurm_cluster_down    # cancels jobs, stops the daemons by PID, removes the dir
#
# Facts this relies on (measured on this kind of machine, ../shared/specs/slurm-local.md):
# munged runs as root with its own key and socket in a 0755 directory; every client and daemon
# finds it through AuthInfo=socket=; proctrack/cgroup cannot start steps here, linuxproc can;
# cons_tres + CR_Core lets jobs share the node; MpiDefault=pmix is the only launch that Debian's
# Open MPI understands under srun; cred_expire=10 and sched_interval=1 make a requeued job
# restart in ~11 s instead of ~2 min. Daemons run in the foreground (-D / -F) as children of
# this shell, so $! is their PID and they are stopped by PID, never by name.
#
# Env: SLURM_TEST_KEEP=1 keeps the directory; SLURM_TEST_PORT=N uses ports N and N+1
# (default: a free pair below the ephemeral port range, probed at start);
# SLURM_TEST_CPUS=N declares N CPUs on the node (default 4, oversubscribing the 2 cores, so
# 4-rank jobs fit; correctness only, never timing).

slurm_log() { ( trap '' PIPE; printf '[slurm-test %s] %s\n' "$(date +%T)" "$*" ) >&2 2>/dev/null; }

# True when PID has exited (or is a zombie waiting to be reaped).
slurm_pid_gone() {
    local st
    st=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
    [[ $st == Z* ]]
}

# slurm_stop_pid PID NAME SECONDS: wait for PID, then SIGTERM, then SIGKILL; reap it.
slurm_stop_pid() {
    local pid=$1 name=$2 secs=$3 i
    [ -n "$pid" ] || return 0
    for ((i = 0; i < secs * 10; i++)); do slurm_pid_gone "$pid" && break; sleep 0.1; done
    slurm_pid_gone "$pid" || { slurm_log "$name ($pid): SIGTERM"; kill -TERM "$pid" 2>/dev/null; }
    for ((i = 0; i < 50; i++)); do slurm_pid_gone "$pid" && break; sleep 0.1; done
    slurm_pid_gone "$pid" || { slurm_log "$name ($pid): SIGKILL"; kill -KILL "$pid" 2>/dev/null; }
    wait "$pid" 2>/dev/null
    return 0
}

# A pair of free TCP ports (N, N+1) on 127.0.0.1, below the kernel's ephemeral range (32768+),
# where the TCP connections of MPI jobs could otherwise take them; probed by binding both.
slurm_free_ports() {
    /usr/bin/python3 - "$$" <<'PY'
import socket, sys
base = 20000 + (int(sys.argv[1]) % 5000) * 2
for k in range(2000):
    p = 20000 + (base - 20000 + 2 * k) % 12000
    socks = []
    try:
        for q in (p, p + 1):
            s = socket.socket()
            socks.append(s)
            s.bind(("127.0.0.1", q))
        print(p)
        break
    except OSError:
        pass
    finally:
        for s in socks:
            s.close()
PY
}

slurm_cluster_up() {
    local i host node port cpus
    for cmd in munged mungekey slurmctld slurmd sbatch; do
        command -v $cmd >/dev/null || { slurm_log "missing $cmd: run scripts/install-deps.sh"; return 1; }
    done
    SLURM_TEST_DIR=$(mktemp -d /tmp/miclip-slurm.XXXXXX) || return 1
    chmod 755 "$SLURM_TEST_DIR"   # munged refuses a socket directory that is not a+x
    mkdir -p "$SLURM_TEST_DIR"/{munge,state,spool,log,tmp}
    chmod 755 "$SLURM_TEST_DIR/munge"
    chmod 1777 "$SLURM_TEST_DIR/tmp"
    local m=$SLURM_TEST_DIR/munge
    mungekey --create --keyfile="$m/munge.key" 2>/dev/null || return 1
    munged -F --socket="$m/munge.socket" --key-file="$m/munge.key" --log-file="$m/munged.log" \
        --pid-file="$m/munged.pid" --seed-file="$m/munged.seed" >"$SLURM_TEST_DIR/log/munged.out" 2>&1 &
    SLURM_MUNGED_PID=$!
    for ((i = 0; i < 100; i++)); do
        munge -n -S "$m/munge.socket" </dev/null >/dev/null 2>&1 && break
        slurm_pid_gone "$SLURM_MUNGED_PID" && { cat "$SLURM_TEST_DIR/log/munged.out" >&2; return 1; }
        sleep 0.1
    done

    host=$(hostname -s)
    port=${SLURM_TEST_PORT:-$(slurm_free_ports)}
    cpus=${SLURM_TEST_CPUS:-4}
    # The real topology line from slurmd -C, with the CPU count raised for oversubscription.
    node=$(slurmd -C | head -n 1 | sed -E "s/CPUs=[0-9]+/CPUs=$cpus/; s/ Boards=[0-9]+//; s/ SocketsPerBoard=[0-9]+//; s/ CoresPerSocket=[0-9]+//; s/ ThreadsPerCore=[0-9]+//")
    cat >"$SLURM_TEST_DIR/slurm.conf" <<CONF
ClusterName=miclip-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$m/munge.socket,cred_expire=10
StateSaveLocation=$SLURM_TEST_DIR/state
SlurmdSpoolDir=$SLURM_TEST_DIR/spool
SlurmctldPidFile=$SLURM_TEST_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_TEST_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_TEST_DIR/log/slurmctld.log
SlurmdLogFile=$SLURM_TEST_DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=pmix
MailProg=/usr/bin/true
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_TEST_DIR/log/jobcomp.txt
DependencyParameters=kill_invalid_depend
KillWait=5
# Finished jobs stay visible to scontrol for an hour, not Slurm's 300 s: test_submit reads every
# array task's state after the last stage, which on a loaded machine ends long after the first.
MinJobAge=3600
SchedulerParameters=sched_interval=1
TmpFS=$SLURM_TEST_DIR/tmp
$node NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    export SLURM_CONF=$SLURM_TEST_DIR/slurm.conf
    export TMPDIR=$SLURM_TEST_DIR/tmp
    slurmctld -D >"$SLURM_TEST_DIR/log/slurmctld.out" 2>&1 &
    SLURM_CTLD_PID=$!
    slurmd -D >"$SLURM_TEST_DIR/log/slurmd.out" 2>&1 &
    SLURM_D_PID=$!
    for ((i = 0; i < 300; i++)); do
        [ "$(sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ] && break
        if slurm_pid_gone "$SLURM_CTLD_PID" || slurm_pid_gone "$SLURM_D_PID"; then
            tail -n 20 "$SLURM_TEST_DIR"/log/*.out "$SLURM_TEST_DIR"/log/*.log >&2 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
    [ "$(sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ] || { slurm_log "node never became idle"; return 1; }
    slurm_log "cluster up in $SLURM_TEST_DIR (ports $port-$((port + 1)))"
}

slurm_cluster_down() {
    [ -n "${SLURM_TEST_DIR:-}" ] || return 0
    local ids i
    if [ -n "${SLURM_CTLD_PID:-}" ] && ! slurm_pid_gone "$SLURM_CTLD_PID"; then
        ids=$(squeue -h -o %A 2>/dev/null | tr '\n' ' ')
        if [ -n "${ids// /}" ]; then
            scancel $ids 2>/dev/null
            for ((i = 0; i < 300; i++)); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.1; done
        fi
        scontrol shutdown >/dev/null 2>&1
    fi
    slurm_stop_pid "${SLURM_D_PID:-}" slurmd 15
    slurm_stop_pid "${SLURM_CTLD_PID:-}" slurmctld 15
    [ -n "${SLURM_MUNGED_PID:-}" ] && ! slurm_pid_gone "$SLURM_MUNGED_PID" && kill -TERM "$SLURM_MUNGED_PID" 2>/dev/null
    slurm_stop_pid "${SLURM_MUNGED_PID:-}" munged 5
    if [ -z "${SLURM_TEST_KEEP:-}" ]; then rm -rf "$SLURM_TEST_DIR"; else slurm_log "kept $SLURM_TEST_DIR"; fi
    SLURM_TEST_DIR= SLURM_CTLD_PID= SLURM_D_PID= SLURM_MUNGED_PID=
}

# slurm_job_field JOBID FIELD: one field of 'scontrol show job -o' (no sacct without slurmdbd).
slurm_job_field() { scontrol show job -o "$1" 2>/dev/null | grep -oE "(^| )$2=[^ ]*" | head -n1 | cut -d= -f2-; }

# slurm_wait_gone JOBID [SECONDS]: until the job (or whole array) has left the queue.
slurm_wait_gone() {
    local j=$1 s=${2:-120} i
    for ((i = 0; i < s * 10; i++)); do
        [ -z "$(squeue -h -j "$j" 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    return 1
}
