#!/usr/bin/env bash
# The measured table of Docs/fine-tuning.md: the README main job (MiniLM on the Debian sections)
# fine-tuned four ways, each with 3 seeds, one run after the other on this machine:
#   full        every parameter trains (lr 5e-5)
#   lower-half  --freeze-layers 3: embeddings and layers 0-2 frozen (lr 5e-5)
#   head        --train-only head: a linear probe on frozen features (lr 1e-3)
#   unfreeze    --unfreeze-every 1: head, then one layer more each epoch (lr 5e-5)
#   lora        --lora-rank 8 --lora-alpha 16 on query,value (PEFT's default targets; lr 5e-4)
#   lora-all    --lora-rank 8 --lora-alpha 16 on all six linear layers of each layer (lr 1e-3)
#   launch/fine-tuning-table.sh [OUT_FOLDER]   (default runs/fine-tuning-table; ~45 min on 2 cores)
# Set FINETUNE_DIST_BIN to a built binary to keep working on the source meanwhile.
# Prints a Markdown table from the runs' metrics.jsonl, run.json and checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/fine-tuning-table}
mkdir -p "$out"
launch/setup.sh
launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian/train.jsonl ] || launch/make-debian-dataset.sh data/debian
declare -A extra=(
    [full]=""
    [lower-half]="--freeze-layers 3"
    [head]="--train-only head --lr 1e-3"
    [unfreeze]="--unfreeze-every 1"
    [lora]="--lora-rank 8 --lora-alpha 16 --lr 5e-4"
    [lora-all]="--lora-rank 8 --lora-alpha 16 --lr 1e-3 --lora-targets query,key,value,attention.output.dense,intermediate.dense,output.dense"
)
for config in full lower-half head unfreeze lora lora-all; do
    for seed in 0 1 2; do
        run="$out/$config-seed$seed"
        [ -f "$run/metrics.jsonl" ] && grep -q '"type":"end"' "$run/metrics.jsonl" && continue
        rm -rf "$run"
        start=$(date +%s)
        # shellcheck disable=SC2086
        launch/finetune-debian.sh --output "$run" --seed "$seed" ${extra[$config]} > "$run.log" 2>&1
        echo $(( $(date +%s) - start )) > "$run.seconds"
        echo "$config seed $seed: $(cat "$run.seconds") s" >&2
    done
done
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
print("| configuration | trainable parameters (at the start) | validation accuracy, epoch 1 / 2 / 3 (mean of 3 seeds) | test accuracy, best/ (mean ± sd) | bytes exchanged per step and rank (median) | optimizer state (last checkpoint) | checkpoint |")
print("|---|---|---|---|---|---|---|")
for config in ["full", "lower-half", "head", "unfreeze", "lora", "lora-all"]:
    runs = sorted(glob.glob(f"{out}/{config}-seed*/"))
    vals, tests, exchanged, state, checkpoint, trainable = [], [], [], [], [], None
    for run in runs:
        records = [json.loads(l) for l in open(run + "metrics.jsonl")]
        vals.append([r["val_accuracy"] for r in records if r["type"] == "eval"])
        tests.append(next(r["test_accuracy"] for r in records if r["type"] == "test"))
        trains = [r for r in records if r["type"] == "train"]
        exchanged.append(statistics.median(r["bytes_exchanged_per_step"] for r in trains))
        resolved = json.load(open(run + "training_config.json"))["resolved"]
        trainable = (resolved["trainable_parameters"], resolved["parameters"])
        newest = sorted(glob.glob(run + "checkpoints/*/"))[-1]
        state.append(os.path.getsize(newest + "optimizer.safetensors"))
        checkpoint.append(sum(os.path.getsize(f) for f in glob.glob(newest + "*")))
    if not runs:
        continue
    epochs = " / ".join(f"{100 * statistics.mean(v[i] for v in vals):.1f}" for i in range(len(vals[0])))
    spread = lambda xs: f"{100 * statistics.mean(xs):.1f} % (±{100 * statistics.pstdev(xs):.1f})"
    count = lambda n: f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} K"
    megabytes = lambda n: f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} KB"
    print(f"| {config} | {count(trainable[0])} of {count(trainable[1])} | {epochs} % | {spread(tests)} | "
          f"{megabytes(statistics.mean(exchanged))} | {megabytes(statistics.mean(state))} | {megabytes(statistics.mean(checkpoint))} |")
PY
