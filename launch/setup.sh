#!/usr/bin/env bash
# Installs what finetune-dist needs to build and run on Debian/Ubuntu, if it is missing:
# Open MPI, OpenBLAS, pkg-config, python3 and pip (data-set scripts, model download), iproute2
# (the multi-host tests simulate hosts in network namespaces), openssh-client (mpirun and
# launch/cluster.sh reach other hosts over ssh). Needs root (or sudo) to install.
# The Swift toolchain itself (6.x) is expected on PATH.
set -euo pipefail
packages=(libopenmpi-dev openmpi-bin libopenblas-dev pkg-config python3 python3-pip iproute2 openssh-client)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install a Swift 6 toolchain)" >&2; exit 1; }
