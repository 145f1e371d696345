#!/usr/bin/env bash
# Renders a run's report.html in headless Chromium and saves a screenshot (for the docs; not CI).
#   launch/screenshot-report.sh RUN_DIR [OUTPUT.png] [WIDTHxHEIGHT]
# Installs Debian's chromium when it is missing. report.html needs no network: the page is
# self-contained (inline SVG, no scripts), so the screenshot shows exactly what a browser shows.
set -euo pipefail
run=${1:?usage: launch/screenshot-report.sh RUN_DIR [OUTPUT.png] [WIDTHxHEIGHT]}
output=$(realpath -m "${2:-$run/report.png}")
size=${3:-1200x1900}
if ! command -v chromium >/dev/null; then
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
[ -f "$run/report.html" ] || { echo "screenshot-report.sh: $run/report.html is missing (finetune-dist report $run writes it)" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
# --no-sandbox: Chromium's sandbox refuses to run as root (containers, CI machines).
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$profile" \
    --window-size="${size/x/,}" --screenshot="$output" "file://$(realpath "$run")/report.html" 2>/dev/null
[ -s "$output" ] || { echo "screenshot-report.sh: chromium wrote no screenshot" >&2; exit 1; }
echo "wrote $output" >&2
