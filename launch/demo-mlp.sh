#!/usr/bin/env bash
# A quick tabular demo: installs what is missing, makes a small deterministic tabular data set,
# creates an MLP and fine-tunes it on one rank per core with early stopping, then evaluates the
# best model on the held-out test split.
#   launch/demo-mlp.sh [-n RANKS]
set -euo pipefail
cd "$(dirname "$0")/.."
launch/setup.sh
ranks=()
if [ "${1:-}" = "-n" ]; then ranks=(-n "$2"); fi
source launch/env.sh
[ -f data/demo/train.jsonl ] || python3 launch/make-tabular-dataset.py data/demo
[ -f models/mlp-demo/model.safetensors ] || "$FINETUNE_DIST_BIN" init --type mlp --input-size 16 --hidden 64,64 \
    --labels a,b,c,d --dropout 0.1 --seed 0 --output models/mlp-demo
run=runs/demo-$(date +%Y%m%d-%H%M%S)
launch/local.sh "${ranks[@]}" train --model models/mlp-demo --train data/demo/train.jsonl --valid data/demo/valid.jsonl \
    --output "$run" --epochs 200 --batch-size 64 --lr 3e-3 --weight-decay 0.01 --patience 5 --log-every 20
"$FINETUNE_DIST_BIN" eval --model "$run/best" --data data/demo/test.jsonl
echo "demo: outputs in $run (metrics.jsonl, best/, final/, checkpoints/)"
