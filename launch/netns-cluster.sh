#!/usr/bin/env bash
# Simulated hosts on one machine, for real multi-host runs in tests (needs root and iproute2).
#   launch/netns-cluster.sh up K     # K hosts fdh-1..fdh-K at 10.77.0.1..K, hostfile hostfiles/netns-cluster
#   launch/netns-cluster.sh down K   # removes every namespace and the route
# Each host is a network namespace with lo and one veth whose peer sits on a bridge in a separate
# "switch" namespace (fdsw). 10.77.0.0/24 exists only on those veths: no default route anywhere,
# and in the root namespace an "unreachable" route for the /24, so nothing leaks towards a real
# network. Start mpirun inside a host namespace, with launch/netns-rsh as Open MPI's rsh agent:
#   ip netns exec fdh-1 unshare --uts sh -c 'hostname fdh-1; \
#       FINETUNE_DIST_RSH_AGENT=launch/netns-rsh FINETUNE_DIST_IFACE=10.77.0.0/24 \
#       launch/cluster.sh hostfiles/netns-cluster train ...'
set -euo pipefail
cd "$(dirname "$0")/.."
action=${1:?usage: launch/netns-cluster.sh up|down K}
hosts=${2:?usage: launch/netns-cluster.sh up|down K}
net=10.77.0
hostfile=hostfiles/netns-cluster

down() {
    for i in $(seq 1 "$hosts"); do ip netns del "fdh-$i" 2>/dev/null || true; done
    ip netns del fdsw 2>/dev/null || true
    ip route del unreachable "$net.0/24" 2>/dev/null || true
    rm -f "$hostfile"
}

case "$action" in
    up)
        down
        ip route add unreachable "$net.0/24"
        ip netns add fdsw
        ip -n fdsw link add br0 type bridge
        ip -n fdsw link set br0 up
        : >"$hostfile"
        for i in $(seq 1 "$hosts"); do
            ip netns add "fdh-$i"
            ip link add "fdv-$i" type veth peer name "fds-$i"
            ip link set "fdv-$i" netns "fdh-$i"
            ip link set "fds-$i" netns fdsw
            ip -n fdsw link set "fds-$i" master br0 up
            ip -n "fdh-$i" link set lo up
            ip -n "fdh-$i" addr add "$net.$i/24" dev "fdv-$i"
            ip -n "fdh-$i" link set "fdv-$i" up
            echo "$net.$i slots=2" >>"$hostfile"
        done
        echo "netns-cluster: $hosts host(s) fdh-1..fdh-$hosts at $net.1..$hosts; hostfile $hostfile"
        ;;
    down)
        down
        echo "netns-cluster: removed"
        ;;
    *) echo "usage: launch/netns-cluster.sh up|down K" >&2; exit 2 ;;
esac
