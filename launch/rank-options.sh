# Sourced by local.sh and cluster.sh: reads -n RANKS and -t THREADS from the front of the arguments
# into $ranks and $threads (the caller's defaults stay otherwise) and leaves the rest in $rest.
parse_rank_options() {
    rest=("$@")
    while [ "${#rest[@]}" -gt 0 ]; do
        case "${rest[0]}" in
            -n|-t)
                local value=${rest[1]:-}
                [[ "$value" =~ ^[1-9][0-9]*$ ]] || { echo "launch/$(basename "$0"): ${rest[0]} needs a positive number, got \"$value\"" >&2; exit 2; }
                if [ "${rest[0]}" = -n ]; then ranks=$value; else threads=$value; fi
                rest=("${rest[@]:2}") ;;
            *) break ;;
        esac
    done
}
