#!/usr/bin/env bash
# Single-node Slurm cluster on localhost for the a0verify Slurm test (Debian; needs root).
#
#   tests/slurm/setup_cluster.sh start    install slurm-wlm + munge if missing (apt-get update
#                                         first), write slurm.conf, start munged, slurmctld and
#                                         slurmd, wait until the node is idle and srun works
#   tests/slurm/setup_cluster.sh status   exit 0 when the cluster answers and runs a job
#   tests/slurm/setup_cluster.sh stop     stop the daemons this script started
#
# State, logs and pid files: $A0V_SLURM_STATE (default /var/tmp/a0verify-slurm).
# Exit codes: 0 cluster up; 3 cannot install or start (reason on stderr, last line).
set -euo pipefail

STATE=${A0V_SLURM_STATE:-/var/tmp/a0verify-slurm}
ACTION=${1:-start}
HOST=$(hostname -s)
CONF=/etc/slurm/slurm.conf

die() { echo "setup_cluster: $*" >&2; exit 3; }
log() { echo "setup_cluster: $*" >&2; }

cluster_ok() {
    timeout 20 sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)' || return 1
    timeout 60 srun -N1 -n1 -t 1 true >/dev/null 2>&1
}

stop_slurm() {
    for d in slurmd slurmctld; do
        if [[ -f $STATE/$d.pid ]]; then
            pid=$(cat "$STATE/$d.pid" 2>/dev/null || true)
            [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true
            rm -f "$STATE/$d.pid"
        fi
    done
}

stop() {
    stop_slurm
    if [[ -f $STATE/munged.started ]]; then
        pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
        [[ -n ${pid:-} ]] && kill "$pid" 2>/dev/null || true
        rm -f "$STATE/munged.started"
    fi
}

case $ACTION in
    stop) stop; exit 0 ;;
    status) cluster_ok && { log "cluster up"; exit 0; } || die "cluster not answering" ;;
    start) ;;
    *) die "usage: $0 start|status|stop" ;;
esac

[[ $(id -u) -eq 0 ]] || die "needs root (apt-get install, daemons)"
if cluster_ok; then log "cluster already up"; exit 0; fi

# 1. packages
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
        || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
    log "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    timeout 600 apt-get update -q >"$STATE.apt.log" 2>&1 || die "apt-get update failed (see $STATE.apt.log)"
    timeout 900 apt-get install -y -q --no-install-recommends slurm-wlm munge >>"$STATE.apt.log" 2>&1 \
        || die "apt-get install slurm-wlm munge failed (see $STATE.apt.log)"
fi
mkdir -p "$STATE/ctld" "$STATE/d"

# 2. munge: key, runtime dir, daemon (runs as user munge)
if [[ ! -s /etc/munge/munge.key ]]; then
    if command -v mungekey >/dev/null; then mungekey --create --force >/dev/null 2>&1 || true; fi
    [[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged || die "munged does not start (see /var/log/munge/munged.log)"
    touch "$STATE/munged.started"
    for _ in $(seq 20); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.5; done
    munge -n | unmunge >/dev/null 2>&1 || die "munge does not answer"
fi

# 3. slurm.conf: one node = this machine, its cores and most of its memory
CPUS=$(nproc)
MEM=$(awk '/MemTotal/ {printf "%d", $2/1024*0.8}' /proc/meminfo)
mkdir -p /etc/slurm
cat >"$CONF" <<CONFEOF
# written by a0verify tests/slurm/setup_cluster.sh: single-node test cluster on localhost
ClusterName=a0verify
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/slurmctld.log
SlurmdLogFile=$STATE/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
# keep finished jobs visible to squeue/sacct long enough for Snakemake's status checks
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
CONFEOF
rm -f /etc/slurm/cgroup.conf  # no cgroup plugins configured (containers often lack cgroupfs)

# 4. daemons (they daemonise themselves)
stop_slurm
sleep 1
log "starting slurmctld and slurmd"
slurmctld -c || die "slurmctld does not start (see $STATE/slurmctld.log)"
sleep 1
slurmd -c || die "slurmd does not start (see $STATE/slurmd.log)"
for _ in $(seq 60); do
    st=$(timeout 10 sinfo -h -o '%T' 2>/dev/null | head -1 || true)
    case $st in
        idle*|mixed*|allocated*) break ;;
        down*|drain*) scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 1
done
cluster_ok || die "cluster started but the node is not usable: $(sinfo -h -o '%T %E' 2>&1 | head -1) (logs in $STATE)"
log "cluster up: node $HOST, $CPUS CPUs, ${MEM} MB, partition debug"
