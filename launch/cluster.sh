#!/usr/bin/env bash
# Runs finetune-dist across the hosts of an Open MPI hostfile ("node01 slots=16" lines).
#   launch/cluster.sh HOSTFILE [-n RANKS] [-t THREADS] train --model ... --train ... --output ...
# RANKS defaults to the sum of the hostfile's slots. With -t, each rank is bound to THREADS cores
# of its own (--map-by slot:PE=THREADS) and runs that many OpenBLAS threads; give each host
# slots = cores / THREADS. The binary, model folder and data must be at
# the same paths on every host (a shared file system, or copies); only rank 0's host writes output.
# FINETUNE_DIST_IFACE=eth1 (or a CIDR such as 10.1.0.0/16) limits MPI traffic to that network;
# FINETUNE_DIST_RSH_AGENT replaces ssh for starting the remote daemons; every host is first tried with
# it (ssh: BatchMode, ConnectTimeout=FINETUNE_DIST_CONNECT_TIMEOUT, default 5 s) so a wrong or
# unreachable host is an error within seconds, naming it.
set -euo pipefail
hostfile=${1:?usage: launch/cluster.sh HOSTFILE [-n RANKS] finetune-dist-arguments...}
shift
[ -r "$hostfile" ] || { echo "launch/cluster.sh: cannot read hostfile $hostfile" >&2; exit 2; }
# Validate the hostfile before mpirun sees it: "host [slots=N] [max_slots=N]" lines, comments and
# blank lines; every mistake named with its line (mpirun's own messages are 40 lines of ORTE text).
slots=0
lineno=0
declare -A first_line=()
hosts=()
while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    if [[ "$line" == *$'\r'* ]]; then
        echo "launch/cluster.sh: $hostfile:$lineno: Windows line ending (CR LF); mpirun would read the CR as part of the line: convert the file (dos2unix $hostfile, or sed -i 's/\\r\$//' $hostfile)" >&2
        exit 2
    fi
    line=${line%%#*}
    [ -z "${line//[[:space:]]/}" ] && continue
    read -r host rest <<<"$line"
    where="launch/cluster.sh: $hostfile:$lineno"
    if [[ "$host" == *:* ]]; then
        echo "$where: \"$host\" is MPICH's host:N syntax; an Open MPI hostfile says \"${host%%:*} slots=${host##*:}\"" >&2; exit 2
    fi
    n=1
    max=""
    for field in $rest; do
        case "$field" in
            slots=*) n=${field#slots=} ;;
            max_slots=*|max-slots=*) max=${field#*=} ;;
            *) echo "$where: unexpected \"$field\" (expected slots=N or max_slots=N)" >&2; exit 2 ;;
        esac
    done
    [[ "$n" =~ ^[0-9]+$ ]] || { echo "$where: slots=$n is not a whole number" >&2; exit 2; }
    [ "$n" -gt 0 ] || { echo "$where: slots=0 gives $host no ranks; remove the line or give it slots=1 or more" >&2; exit 2; }
    if [ -n "$max" ]; then
        [[ "$max" =~ ^[0-9]+$ ]] || { echo "$where: max_slots=$max is not a whole number" >&2; exit 2; }
        [ "$max" -ge "$n" ] || { echo "$where: max_slots=$max is less than slots=$n" >&2; exit 2; }
    fi
    if [ -n "${first_line[$host]:-}" ]; then
        echo "$where: $host is listed again (first on line ${first_line[$host]}); give it one line with the sum of its slots" >&2; exit 2
    fi
    first_line[$host]=$lineno
    hosts+=("$host")
    slots=$((slots + n))
done <"$hostfile"
[ "$slots" -gt 0 ] || { echo "launch/cluster.sh: $hostfile lists no hosts (only comments or blank lines)" >&2; exit 2; }
# mpirun starts a daemon on every other host over ssh; an unreachable host would leave it (and an
# ssh) waiting for minutes. Each host is tried first, in parallel, with a short timeout and no
# password prompt, so the error comes within seconds and names the host.
connect_timeout=${FINETUNE_DIST_CONNECT_TIMEOUT:-5}
rsh_agent=${FINETUNE_DIST_RSH_AGENT:-ssh}
probe_args=()
[ "$rsh_agent" = ssh ] && probe_args=(-o BatchMode=yes -o ConnectTimeout="$connect_timeout" -o StrictHostKeyChecking=accept-new)
local_names=" localhost 127.0.0.1 ::1 $(hostname) $(hostname -f 2>/dev/null || true) $(hostname -I 2>/dev/null || true) "
probe_dir=$(mktemp -d)
trap 'rm -rf "$probe_dir"' EXIT
probes=()
for host in "${hosts[@]}"; do
    [[ "$local_names" == *" $host "* ]] && continue
    ( timeout -k 2 $((connect_timeout + 5)) $rsh_agent "${probe_args[@]}" "$host" true >"$probe_dir/$host" 2>&1 \
        || echo "exit $?" >>"$probe_dir/$host.failed" ) &
    probes+=("$host")
done
wait
unreachable=0
for host in "${probes[@]}"; do
    if [ -e "$probe_dir/$host.failed" ]; then
        why=$(grep -v '^\s*$' "$probe_dir/$host" | tail -1)
        echo "launch/cluster.sh: $hostfile: cannot reach $host with $rsh_agent within ${connect_timeout} s: ${why:-no answer} (mpirun starts its daemons there over $rsh_agent without a password)" >&2
        unreachable=1
    fi
done
[ "$unreachable" = 0 ] || exit 2
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
else
    # A host that stops answering between the check above and the launch fails fast too.
    mca+=(--mca plm_rsh_args "-o BatchMode=yes -o ConnectTimeout=$connect_timeout")
fi
forward=(-x HWLOC_COMPONENTS)
[ -n "${OPENBLAS_NUM_THREADS:-}" ] && forward+=(-x OPENBLAS_NUM_THREADS)
[ -n "${OMPI_ALLOW_RUN_AS_ROOT:-}" ] && forward+=(-x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM)
echo "launch/cluster.sh: $ranks rank(s) x $threads thread(s) over $hostfile ($slots slot(s)), each rank bound to its own core(s)" >&2
rm -rf "$probe_dir"; trap - EXIT
source "$(dirname "$0")/relay-signals.sh"
run_relaying_signals mpirun --hostfile "$hostfile" -n "$ranks" --map-by "slot:PE=$threads" --bind-to core "${mca[@]}" "${forward[@]}" \
    "$FINETUNE_DIST_BIN" "$@"
