#!/usr/bin/env bash
# Prints apt's package records (`apt-cache dumpavail`), running `apt-get update` first when apt has
# no package lists (a fresh container). Read by make-debian-dataset.sh and make-debian-corpus.sh.
set -euo pipefail
if [ -z "$(apt-cache dumpavail 2>/dev/null | head -c1)" ]; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
fi
apt-cache dumpavail
