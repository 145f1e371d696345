#!/usr/bin/env bash
# The README's test command: installs what is missing, then runs the whole test suite
# (unit tests and real multi-rank mpirun runs).
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
exec swift test --disable-swift-testing "$@"
