# Sourced by the launch scripts: the environment Open MPI needs here, and the binary to run.
# FINETUNE_DIST_BIN overrides the binary (default: a release build of this checkout, built on demand).
root_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ "$(id -u)" -eq 0 ]; then
    # Open MPI refuses to run as root without both of these (CI and containers run as root).
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# hwloc would otherwise probe for X displays (slow, noisy warnings on servers).
export HWLOC_COMPONENTS=${HWLOC_COMPONENTS:--gl}
if [ -z "${FINETUNE_DIST_BIN:-}" ]; then
    (cd "$root_dir" && swift build -c release --product finetune-dist >&2)
    FINETUNE_DIST_BIN="$root_dir/.build/release/finetune-dist"
fi
