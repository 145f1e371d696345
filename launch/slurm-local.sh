#!/usr/bin/env bash
# A single-node Slurm on this machine, to try launch/slurm.sbatch and to run the Slurm tests (CI).
#   launch/slurm-local.sh up       install Debian's Slurm 22.05 (slurm-wlm, slurmdbd, munge, MariaDB for
#                                  sacct) if missing, write the configuration, start the daemons
#   launch/slurm-local.sh down     stop every daemon `up` started (nothing is left running)
#   launch/slurm-local.sh status   what is running, and sinfo
# Everything runs as root (as in CI). The node is this machine with its cores and memory, one
# partition "local"; Slurm's defaults are kept where a stock installation has them (MpiDefault=none,
# so plain `srun` does not give Open MPI its peers: the batch script says --mpi=pmix).
# /etc/slurm/slurm.conf and slurmdbd.conf are written only when absent or written by this script
# (marker line), so a real cluster's configuration is never overwritten.
set -euo pipefail
marker="# written by finetune-dist launch/slurm-local.sh"
conf=/etc/slurm/slurm.conf
dbd_conf=/etc/slurm/slurmdbd.conf
logs=/var/log/slurm
db_password=finetune-dist-local   # only reachable from this machine's MariaDB socket and loopback

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "slurm-local: run as root (it installs packages and starts daemons)" >&2; exit 1; }

ours() { [ ! -e "$1" ] || head -1 "$1" | grep -qxF "$marker"; }

install_packages() {
    local packages=(slurm-wlm slurmdbd munge mariadb-server mariadb-client) missing=()
    for p in "${packages[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        echo "slurm-local: installing ${missing[*]}" >&2
        apt-get update -qq
        # policy-rc.d keeps the packages' own service starts from running half-configured daemons.
        local policy=/usr/sbin/policy-rc.d created_policy=0
        if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        [ "$created_policy" -eq 0 ] || rm -f "$policy"
    fi
}

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2; shift 2
    for _ in $(seq $((seconds * 4))); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    echo "slurm-local: $what did not come up within $seconds s; see $logs/" >&2
    return 1
}

start_munge() {
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    if ! pgrep -x munged >/dev/null; then runuser -u munge -- /usr/sbin/munged; fi
    wait_for 10 munged sh -c 'munge -n | unmunge'
}

start_mariadb() {
    install -d -o mysql -g mysql /run/mysqld
    if ! pgrep -x mariadbd >/dev/null; then
        (setsid mysqld_safe --user=mysql >/dev/null 2>&1 &)
    fi
    wait_for 30 MariaDB mysqladmin ping
    mysql <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$db_password';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
SQL
}

write_configs() {
    ours "$conf" || { echo "slurm-local: $conf exists and was not written by this script; not touching it" >&2; exit 1; }
    ours "$dbd_conf" || { echo "slurm-local: $dbd_conf exists and was not written by this script; not touching it" >&2; exit 1; }
    local host node
    host=$(hostname -s)
    # slurmd -C prints this machine's NodeName line (CPUs, sockets, cores, threads, RealMemory).
    node=$(slurmd -C | head -1)
    install -d "$logs" /var/spool/slurmctld /var/spool/slurmd /etc/slurm
    cat >"$conf" <<EOF
$marker
ClusterName=finetune-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
# No cgroup hierarchy is assumed (containers): processes tracked by parentage, tasks bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$logs/slurmctld.log
SlurmdLogFile=$logs/slurmd.log
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# Short waits so that a test cluster reacts in seconds (the defaults are for real clusters):
# KillWait between SIGTERM and SIGKILL (30 s by default); cred_expire is also how long a requeued
# job waits before it may start again (120 s by default).
KillWait=10
MinJobAge=60
AuthInfo=cred_expire=10
# Look at pending jobs every 2 s (60 s and 30 s by default), so a requeued job starts when it may.
SchedulerParameters=sched_interval=2,bf_interval=2
$node State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
    cat >"$dbd_conf" <<EOF
$marker
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$db_password
StorageLoc=slurm_acct_db
LogFile=$logs/slurmdbd.log
PidFile=/run/slurmdbd.pid
EOF
    chmod 600 "$dbd_conf"
}

up() {
    install_packages
    write_configs
    start_munge
    start_mariadb
    pgrep -x slurmdbd >/dev/null || slurmdbd
    wait_for 30 slurmdbd sacctmgr --noheader list cluster
    sacctmgr --noheader --parsable2 list cluster format=cluster | grep -qx finetune-local || sacctmgr -i add cluster finetune-local >/dev/null
    # Already running (a second `up`): read the configuration written above.
    if pgrep -x slurmctld >/dev/null; then scontrol reconfigure; else slurmctld; fi
    wait_for 30 slurmctld scontrol ping
    pgrep -x slurmd >/dev/null || slurmd
    wait_for 30 "the node" sh -c "sinfo --noheader -o %t | grep -qE '^(idle|mix|alloc)'"
    sinfo
}

stop_daemon() {  # stop_daemon NAME: TERM, then KILL after 10 s
    pgrep -x "$1" >/dev/null || return 0
    pkill -x "$1"
    for _ in $(seq 40); do pgrep -x "$1" >/dev/null || return 0; sleep 0.25; done
    pkill -9 -x "$1" || true
}

daemons=(slurmd slurmctld slurmdbd slurmstepd munged mariadbd)
running() { local d; for d in "${daemons[@]}"; do pgrep -a -x "$d" || true; done; }

down() {
    # Jobs first, so that no slurmstepd outlives its daemon.
    if command -v scancel >/dev/null && scontrol ping >/dev/null 2>&1; then scancel --full --quiet --user=root || true; fi
    for d in slurmd slurmctld slurmdbd; do stop_daemon "$d"; done
    stop_daemon slurmstepd
    if pgrep -x mariadbd >/dev/null; then mysqladmin shutdown 2>/dev/null || true; fi
    stop_daemon mysqld_safe
    stop_daemon mariadbd
    stop_daemon munged
    local left
    left=$(running)
    if [ -n "$left" ]; then echo "slurm-local: still running: $left" >&2; exit 1; fi
    echo "slurm-local: stopped"
}

status() {
    local now
    now=$(running)
    echo "${now:-slurm-local: no daemon running}"
    if scontrol ping >/dev/null 2>&1; then sinfo; fi
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *) usage ;;
esac
