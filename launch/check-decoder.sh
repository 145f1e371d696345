#!/usr/bin/env bash
# A real decoder against transformers: SmolLM2-135M-Instruct's GGUF, logits at every position of
# 50 prompts (max |Δ logit| / max |logit| ≤ 1e-4 each) and greedy generation of 32 tokens
# (token-identical), by DecoderReferenceTests. transformers' side comes from
# launch/decoder_reference.py, which needs torch, transformers and gguf: PYTHON names an
# interpreter that has them (default python3; e.g. a virtualenv's bin/python).
#   launch/check-decoder.sh [OUT]      (OUT: where the reference goes, default runs/check-decoder)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/check-decoder}
python=${PYTHON:-python3}
launch/fetch-model.sh smollm2-135m-instruct
gguf=$PWD/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$out"
[ -f "$out/reference.safetensors" ] || "$python" launch/decoder_reference.py "$gguf" "$out"
FINETUNE_DIST_DECODER_MODEL=$gguf FINETUNE_DIST_DECODER_REFERENCE=$PWD/$out \
    swift test --disable-swift-testing --filter DecoderReferenceTests 2>&1 | grep -E "decoder reference|error|passed|failed|skipped"
