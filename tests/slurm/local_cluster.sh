#!/usr/bin/env bash
# A throw-away single-node SLURM cluster on this machine, for the SLURM profile's test:
#
#   tests/slurm/local_cluster.sh -- COMMAND [ARGS...]
#
# installs SLURM and munge from the distribution's packages where they are missing (Debian or
# Ubuntu, as root), starts a private munged, slurmctld and slurmd (their own key, socket, ports,
# state and logs in one temporary directory), waits until `sinfo` shows the node idle, runs
# COMMAND, and stops exactly the daemons it started, whatever happens (EXIT trap; Ctrl-C and
# kill included). Its exit status is COMMAND's; 77 when this machine cannot have the cluster
# (not root, no apt-get, the packages cannot be installed, a SLURM config of its own): callers
# report a skip, not a failure (.ci/run).
#
# The one file written outside that directory is the config, /etc/slurm/slurm.conf (only where
# there is none; removed on the way out): SLURM_CONF alone is not enough, because
# snakemake-executor-plugin-slurm-jobstep (0.6.1) removes it from the environment of the srun
# it starts inside each job, and that srun then finds no configuration.
#
# No cgroups (proctrack/linuxproc, task/none: works in containers), no accounting database
# (accounting_storage/none, so sacct answers "accounting storage is disabled" and the profile's
# `slurm-status-command: squeue` is what makes runs work). The node gets this machine's CPUs and
# memory (`slurmd -C`); SZMASS_SLURM_CPUS=N gives it fewer CPUs, and then no more than N
# one-CPU jobs run at once. The daemons, and so the jobs, run under `nice -n 19`.
#
# COMMAND sees SLURM_CONF, SZMASS_SLURM_PARTITION (the one partition, the default) and
# SZMASS_SLURM_CPUS (the node's CPUs). SZMASS_SLURM_PORT (default 6817) is slurmctld's port;
# slurmd takes the next one.
set -euo pipefail

SKIP=77
if [[ ${1:-} != "--" || $# -lt 2 ]]; then
    echo "usage: $0 -- COMMAND [ARGS...]" >&2
    exit 2
fi
shift

skip() {
    echo "local_cluster.sh: SKIP: no local SLURM cluster here: $*" >&2
    exit "$SKIP"
}

# --- install ---------------------------------------------------------------------------------
PACKAGES=(slurmctld slurmd slurm-client munge)
have_slurm() {
    command -v slurmctld && command -v slurmd && command -v sbatch && command -v munged
} >/dev/null

if ! have_slurm; then
    [[ $(id -u) == 0 ]] || skip "SLURM is not installed and this is not root"
    command -v apt-get >/dev/null || skip "SLURM is not installed and there is no apt-get"
    # policy-rc.d (exit 101) keeps the packages' scripts from starting the system's own
    # munge/slurm services: the only daemons running afterwards are the ones started below.
    added_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        added_policy=1
    fi
    echo "local_cluster.sh: installing ${PACKAGES[*]} (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    install() { nice -n 19 apt-get install -y -q --no-install-recommends "${PACKAGES[@]}"; }
    ok=1
    install >/tmp/szmass-slurm-apt.log 2>&1 ||
        { nice -n 19 apt-get update -q && install; } >>/tmp/szmass-slurm-apt.log 2>&1 || ok=
    [[ -n $added_policy ]] && rm -f /usr/sbin/policy-rc.d
    if [[ -z $ok ]] || ! have_slurm; then
        tail -5 /tmp/szmass-slurm-apt.log >&2 || true
        skip "apt-get could not install ${PACKAGES[*]} (log: /tmp/szmass-slurm-apt.log)"
    fi
fi
[[ $(id -u) == 0 ]] || skip "the daemons need root (SlurmdUser=root)"

# --- configure -------------------------------------------------------------------------------
DIR=$(mktemp -d /tmp/szmass-slurm.XXXXXX)
chmod 700 "$DIR"
STARTED=()  # "name:pidfile", in start order

stop() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ ${#STARTED[@]} -gt 0 ]] && command -v scancel >/dev/null; then
        # jobs still queued or running (COMMAND killed): their slurmstepd would outlive slurmd
        scancel --quiet --user="$(id -un)" 2>/dev/null
        for _ in $(seq 30); do
            [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
            sleep 1
        done
    fi
    local i entry name pid
    for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do
        entry=${STARTED[i]}
        name=${entry%%:*}
        pid=$(cat "${entry#*:}" 2>/dev/null)
        [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || continue
        kill -TERM "$pid"
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
        echo "local_cluster.sh: stopped $name (pid $pid)" >&2
    done
    if [[ $rc != 0 && $rc != "$SKIP" && -d $DIR ]]; then
        for log in munged slurmctld slurmd; do
            [[ -s $DIR/$log.log ]] || continue
            echo "--- last lines of $log.log" >&2
            tail -15 "$DIR/$log.log" >&2
        done
    fi
    rm -rf "$DIR"
    [[ -n ${WROTE_CONF:-} ]] && rm -f "$WROTE_CONF"
    exit "$rc"
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge"
chmod 700 "$DIR/munge"
HOST=$(hostname -s)
# slurmd -C: what slurmd itself detects (CPUs=2 ... RealMemory=24105).
HW=$(slurmd -C | head -1)
HW_CPUS=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$HW")
MEM=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$HW")
CPUS=${SZMASS_SLURM_CPUS:-$HW_CPUS}
((CPUS >= 1 && CPUS <= HW_CPUS)) || { echo "SZMASS_SLURM_CPUS=$CPUS: 1..$HW_CPUS" >&2; exit 2; }
PARTITION=debug
PORT=${SZMASS_SLURM_PORT:-6817}
SOCKET=$DIR/munge/munge.socket
export SLURM_CONF=/etc/slurm/slurm.conf
HEADER="# Written by tests/slurm/local_cluster.sh"
# a config left by a run that was killed -9 is ours to replace; any other one is not
if [[ -e $SLURM_CONF ]] && [[ $(head -c ${#HEADER} "$SLURM_CONF") != "$HEADER" ]]; then
    skip "$SLURM_CONF exists: this machine has a SLURM of its own"
fi
mkdir -p /etc/slurm
WROTE_CONF=$SLURM_CONF

cat >"$SLURM_CONF" <<EOF
$HEADER (its state in $DIR); removed when it stops.
ClusterName=szmass-test
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/slurmctld.log
SlurmdLogFile=$DIR/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
ReturnToService=2
# How long a finished job stays visible to squeue (the default): the plugin uses squeue for
# status only while this is at least 3 x slurm-init-seconds-before-status-checks.
MinJobAge=300
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# --- start ---------------------------------------------------------------------------------

start() {  # start NAME PIDFILE COMMAND...: a daemon that forks and writes PIDFILE
    local name=$1 pidfile=$2
    shift 2
    STARTED+=("$name:$pidfile")
    nice -n 19 "$@" || { echo "local_cluster.sh: $name did not start" >&2; exit 1; }
    for _ in $(seq 50); do
        [[ -s $pidfile ]] && return
        sleep 0.2
    done
    echo "local_cluster.sh: $name wrote no pid file" >&2
    exit 1
}

# A key of its own: this munged shares nothing with a system munge (if there is one).
head -c 1024 /dev/urandom >"$DIR/munge/munge.key"
chmod 400 "$DIR/munge/munge.key"
start munged "$DIR/munged.pid" munged --force --socket="$SOCKET" \
    --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/munged.log" --seed-file="$DIR/munge/munged.seed"
start slurmctld "$DIR/slurmctld.pid" slurmctld -f "$SLURM_CONF"
start slurmd "$DIR/slurmd.pid" slurmd -f "$SLURM_CONF" -N "$HOST"

state=
for _ in $(seq 60); do
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
    [[ $state == idle ]] && break
    sleep 1
done
if [[ $state != idle ]]; then
    echo "local_cluster.sh: node $HOST is '${state:-not listed}' after 60 s, not idle" >&2
    sinfo -R >&2 || true
    exit 1
fi
echo "local_cluster.sh: SLURM $(sinfo -V | cut -d' ' -f2) up: node $HOST idle," \
    "$CPUS CPUs, $MEM MB, partition $PARTITION (SLURM_CONF=$SLURM_CONF)" >&2

export SZMASS_SLURM_PARTITION=$PARTITION SZMASS_SLURM_CPUS=$CPUS
set +e
"$@"
rc=$?
set -e
exit "$rc"
