# Sourced by local.sh and cluster.sh: run_relaying_signals CMD... runs mpirun so that stopping it
# loses no work. mpirun answers a Ctrl-C (SIGINT) or SIGTERM of its own by sending the ranks
# SIGTERM and SIGKILLing them about a second later, too soon for a checkpoint, and it refuses to
# forward SIGINT/SIGTERM; it does forward SIGUSR1 and SIGUSR2. So mpirun runs in a session of its
# own (a terminal's Ctrl-C reaches only this script), and this script turns:
#   the first Ctrl-C or SIGTERM  into SIGUSR1 to mpirun: every rank writes a checkpoint at the end
#                                of the current step and exits with status 75 (continue with --resume);
#   a second one                 into SIGUSR2 to mpirun: every rank ends at once (SIGUSR2's default
#                                action), and mpirun with them;
#   any further one              into SIGTERM to mpirun (in case a rank hangs).
# (A SIGTERM to an mpirun that is already ending its job can crash Open MPI 4.1's mpirun in
# PMIx_Finalize, hence SIGUSR2 first.) The script exits with mpirun's status.
relay_pid=""
relay_count=0

relay_signal() {
    # Before mpirun has started there is nothing to checkpoint: stop at once.
    [ -n "$relay_pid" ] || { echo "launch: $1 before mpirun started" >&2; exit 130; }
    relay_count=$((relay_count + 1))
    if [ "$relay_count" -eq 1 ]; then
        echo "launch: $1: every rank writes a checkpoint at the end of its current step, then the run exits with status 75 (continue it with --resume); $1 again aborts at once" >&2
        kill -USR1 "$relay_pid" 2>/dev/null || true
    elif [ "$relay_count" -eq 2 ]; then
        echo "launch: $1 again: aborting every rank now (the last complete checkpoint stays)" >&2
        kill -USR2 "$relay_pid" 2>/dev/null || true
    else
        echo "launch: $1 again: ending mpirun" >&2
        kill -TERM "$relay_pid" 2>/dev/null || true
    fi
}

run_relaying_signals() {
    trap 'relay_signal Ctrl-C' INT
    trap 'relay_signal SIGTERM' TERM
    setsid "$@" </dev/null &
    relay_pid=$!
    # `wait` returns early when a trapped signal arrives: wait again until mpirun has ended.
    while kill -0 "$relay_pid" 2>/dev/null; do wait "$relay_pid" || true; done
    local status=0
    wait "$relay_pid" || status=$?
    trap - INT TERM
    return "$status"
}
