#!/usr/bin/env bash
# One row of Docs/domain-adaptation.md: adapts all-MiniLM-L6-v2 to the Debian descriptions outside
# the task (masked-language modelling on launch/make-debian-corpus.sh's corpus, or on another
# corpus given with --train), then fine-tunes the adapted encoder exactly as the README main job
# does, with seeds 0, 1 and 2.
#   launch/domain-adaptation.sh NAME [train --task mlm options...]
#   e.g. launch/domain-adaptation.sh lr2e-5-freeze3 --lr 2e-5 --freeze-layers 3
# Defaults for the adaptation: 1 epoch, global batch 64, lr 1e-4, 15% masking, --max-length 64.
# Outputs in runs/domain-adaptation/NAME/{adapt,task-seed0,...}; prints the row.
# The unadapted baseline is the table of Docs/fine-tuning.md ("full", launch/fine-tuning-table.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${1:?usage: launch/domain-adaptation.sh NAME [train --task mlm options...]}
shift
out=runs/domain-adaptation/$name
mkdir -p "$out"
launch/setup.sh
launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian/train.jsonl ] || launch/make-debian-dataset.sh data/debian
[ -f data/debian-corpus/domain.txt ] || launch/make-debian-corpus.sh data/debian-corpus
source launch/env.sh
export FINETUNE_DIST_BIN
# "Before": the same set-up trained one step at a learning rate too small to move anything, so its
# evaluation is the base encoder's (with the head as the folder has it, or freshly initialised).
if [ ! -f "$out/before/metrics.jsonl" ]; then
    rm -rf "$out/before"
    launch/local.sh train --task mlm --model models/all-MiniLM-L6-v2 --train data/debian-corpus/domain.txt \
        --valid data/debian-corpus/domain-valid.txt --output "$out/before" --batch-size 64 --max-length 64 --progress none \
        "$@" --max-steps 1 --lr 1e-12 --no-tensorboard > "$out/before.log" 2>&1
fi
if [ ! -f "$out/adapt/final/model.safetensors" ]; then
    rm -rf "$out/adapt"
    start=$(date +%s)
    launch/local.sh train --task mlm --model models/all-MiniLM-L6-v2 --train data/debian-corpus/domain.txt \
        --valid data/debian-corpus/domain-valid.txt --output "$out/adapt" --epochs 1 --batch-size 64 --lr 1e-4 \
        --max-length 64 --log-every 100 --progress lines "$@" > "$out/adapt.log" 2>&1
    echo $(( $(date +%s) - start )) > "$out/adapt.seconds"
fi
for seed in 0 1 2; do
    run="$out/task-seed$seed"
    [ -f "$run/metrics.jsonl" ] && grep -q '"type":"end"' "$run/metrics.jsonl" && continue
    rm -rf "$run"
    launch/finetune-debian.sh --model "$out/adapt/best" --output "$run" --seed "$seed" > "$run.log" 2>&1
done
python3 - "$out" <<'PY'
import json, statistics, sys
out = sys.argv[1]
def records(path):
    return [json.loads(l) for l in open(path)]
adapt = records(f"{out}/adapt/metrics.jsonl")
evals = [r for r in adapt if r.get("type") == "eval"]
before = [r for r in records(f"{out}/before/metrics.jsonl") if r.get("type") == "eval"][-1]
val, test = [], []
for seed in (0, 1, 2):
    rs = records(f"{out}/task-seed{seed}/metrics.jsonl")
    val.append(max(r["val_accuracy"] for r in rs if r.get("type") == "eval"))
    test.append([r for r in rs if r.get("type") == "test"][-1]["test_accuracy"])
fmt = lambda xs: f"{100 * statistics.mean(xs):.1f} ± {100 * statistics.stdev(xs):.1f} %"
print(f"{out}: adaptation {open(out + '/adapt.seconds').read().strip()} s, validation perplexity "
      f"{before['val_perplexity']:.1f} before -> {evals[-1]['val_perplexity']:.1f} after (best {min(e['val_perplexity'] for e in evals):.1f}); "
      f"task best validation accuracy {fmt(val)}, test accuracy {fmt(test)} (3 seeds: {', '.join(f'{100*t:.1f}' for t in test)})")
PY
