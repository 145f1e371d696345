#!/usr/bin/env bash
# Runs finetune-dist on N ranks on this machine (default: one per core).
#   launch/local.sh [-n RANKS] train --model ... --train ... --output ...
# Ranks are bound to cores when they fit (each rank then gets its core's OpenBLAS thread budget);
# with more ranks than cores they are not bound and Open MPI is told to oversubscribe
# (correct, but slower: use it for testing).
set -euo pipefail
cores=$(nproc)
ranks=$cores
if [ "${1:-}" = "-n" ]; then ranks=$2; shift 2; fi
[ "$#" -gt 0 ] || { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
source "$(dirname "$0")/env.sh"
if [ "$ranks" -le "$cores" ]; then
    placement=(--map-by core --bind-to core)
    echo "launch/local.sh: $ranks rank(s) on $cores core(s), each bound to a core" >&2
else
    placement=(--oversubscribe --bind-to none)
    echo "launch/local.sh: $ranks rank(s) on $cores core(s): oversubscribed, not bound (for correctness, not speed)" >&2
fi
exec mpirun -n "$ranks" "${placement[@]}" "$FINETUNE_DIST_BIN" "$@"
