#!/usr/bin/env bash
# Runs finetune-dist on N ranks on this machine (default: one per core).
#   launch/local.sh [-n RANKS] [-t THREADS] train --model ... --train ... --output ...
# When RANKS x THREADS fit the cores, each rank is bound to THREADS cores of its own
# (--map-by slot:PE=THREADS) and runs that many OpenBLAS threads (its affinity mask decides);
# with more ranks than cores they are not bound and Open MPI is told to oversubscribe
# (correct, but slower: use it for testing).
set -euo pipefail
cores=$(nproc)
ranks=$cores
threads=1
source "$(dirname "$0")/rank-options.sh"
parse_rank_options "$@"
set -- "${rest[@]}"
[ "$#" -gt 0 ] || { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
source "$(dirname "$0")/env.sh"
if [ $((ranks * threads)) -le "$cores" ]; then
    placement=(--map-by "slot:PE=$threads" --bind-to core)
    echo "launch/local.sh: $ranks rank(s) x $threads thread(s) on $cores core(s), each rank bound to its own core(s)" >&2
else
    placement=(--oversubscribe --bind-to none)
    echo "launch/local.sh: $ranks rank(s) on $cores core(s): oversubscribed, not bound (for correctness, not speed)" >&2
fi
source "$(dirname "$0")/relay-signals.sh"
run_relaying_signals mpirun -n "$ranks" "${placement[@]}" "$FINETUNE_DIST_BIN" "$@"
