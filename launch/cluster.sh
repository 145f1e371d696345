#!/usr/bin/env bash
# Runs finetune-dist across the hosts of an Open MPI hostfile ("node01 slots=16" lines).
#   launch/cluster.sh HOSTFILE [-n RANKS] [-t THREADS] train --model ... --train ... --output ...
# RANKS defaults to the sum of the hostfile's slots. With -t, each rank is bound to THREADS cores
# of its own (--map-by slot:PE=THREADS) and runs that many OpenBLAS threads; give each host
# slots = cores / THREADS. The binary, model folder and data must be at
# the same paths on every host (a shared file system, or copies); only rank 0's host writes output.
# FINETUNE_DIST_IFACE=eth1 (or a CIDR such as 10.1.0.0/16) limits MPI traffic to that network;
# FINETUNE_DIST_RSH_AGENT replaces ssh for starting the remote daemons.
set -euo pipefail
hostfile=${1:?usage: launch/cluster.sh HOSTFILE [-n RANKS] finetune-dist-arguments...}
shift
[ -r "$hostfile" ] || { echo "launch/cluster.sh: cannot read hostfile $hostfile" >&2; exit 2; }
# Validate the hostfile: "host [slots=N] [max_slots=N]" lines, comments and blank lines.
slots=0
lineno=0
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line%%#*}
    [ -z "${line//[[:space:]]/}" ] && continue
    read -r host rest <<<"$line"
    n=1
    for field in $rest; do
        case "$field" in
            slots=[0-9]*) n=${field#slots=} ;;
            max_slots=[0-9]*|max-slots=[0-9]*) ;;
            *) echo "launch/cluster.sh: $hostfile:$lineno: unexpected \"$field\" (expected slots=N)" >&2; exit 2 ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "launch/cluster.sh: $hostfile:$lineno: slots must be a number" >&2; exit 2; }
    slots=$((slots + n))
done <"$hostfile"
[ "$slots" -gt 0 ] || { echo "launch/cluster.sh: $hostfile lists no hosts" >&2; exit 2; }
ranks=$slots
threads=1
source "$(dirname "$0")/rank-options.sh"
parse_rank_options "$@"
set -- "${rest[@]}"
source "$(dirname "$0")/env.sh"
mca=(
    # Notice a lost host in ~15 s instead of Open MPI's default of ~8 minutes.
    --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 2 --mca oob_tcp_keepalive_probes 3
)
if [ -n "${FINETUNE_DIST_IFACE:-}" ]; then
    mca+=(--mca btl_tcp_if_include "$FINETUNE_DIST_IFACE" --mca oob_tcp_if_include "$FINETUNE_DIST_IFACE")
fi
if [ -n "${FINETUNE_DIST_RSH_AGENT:-}" ]; then
    # How mpirun starts its daemons on the other hosts (default: ssh).
    mca+=(--mca plm_rsh_agent "$FINETUNE_DIST_RSH_AGENT")
fi
forward=(-x HWLOC_COMPONENTS)
[ -n "${OPENBLAS_NUM_THREADS:-}" ] && forward+=(-x OPENBLAS_NUM_THREADS)
[ -n "${OMPI_ALLOW_RUN_AS_ROOT:-}" ] && forward+=(-x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM)
echo "launch/cluster.sh: $ranks rank(s) x $threads thread(s) over $hostfile ($slots slot(s)), each rank bound to its own core(s)" >&2
exec mpirun --hostfile "$hostfile" -n "$ranks" --map-by "slot:PE=$threads" --bind-to core "${mca[@]}" "${forward[@]}" \
    "$FINETUNE_DIST_BIN" "$@"
