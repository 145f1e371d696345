#!/usr/bin/env bash
# Base vs LoRA-tuned vs fully tuned SmolLM2-135M-Instruct on the Debian instruction task
# (launch/make-debian-instructions.sh), over seeds: held-out loss (eval on test.jsonl: the
# assistant answers' tokens) and exact-match accuracy of greedy answers (predict, then the answer
# compared after trimming spaces), by question kind. Writes RUNS/table.md (Docs/decoders.md).
#   launch/decoder-instructions.sh [RUNS] [SEEDS]        (defaults runs/decoder-instructions, "1 2 3")
# Options through the environment: RANKS (2), EPOCHS (1), BATCH (16), LORA_LR (1e-3), FULL_LR (5e-5).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs/decoder-instructions}
seeds=${2:-1 2 3}
ranks=${RANKS:-2} epochs=${EPOCHS:-1} batch=${BATCH:-16}
launch/fetch-model.sh smollm2-135m-instruct >/dev/null
model=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
data=data/debian-instructions
[ -f "$data/test.jsonl" ] || launch/make-debian-instructions.sh "$data" 1000
source launch/env.sh
bin=$FINETUNE_DIST_BIN
mkdir -p "$runs"
# The questions without their answers, for predict.
python3 - "$data/test.jsonl" "$runs/prompts.jsonl" <<'PY'
import json, sys
with open(sys.argv[2], "w") as out:
    for line in open(sys.argv[1]):
        m = json.loads(line)["messages"]
        out.write(json.dumps({"messages": m[:-1]}) + "\n")
PY
score() {  # name folder: eval loss and exact match -> a TSV line
    local name=$1 folder=$2
    local loss
    loss=$("$bin" eval --model "$folder" --data "$data/test.jsonl" --json --progress none | python3 -c 'import json,sys; print(json.load(sys.stdin)["eval_loss"])')
    mpirun -n "$ranks" "$bin" predict --model "$folder" --input "$runs/prompts.jsonl" --output "$runs/$name.predictions.jsonl" --max-new-tokens 32 --progress none >/dev/null
    python3 - "$data/test.jsonl" "$runs/$name.predictions.jsonl" "$name" "$loss" >> "$runs/scores.tsv" <<'PY'
import json, sys
gold = [json.loads(l)["messages"] for l in open(sys.argv[1])]
pred = [json.loads(l)["completion"] for l in open(sys.argv[2])]
hits = {"section": [0, 0], "synopsis": [0, 0]}
for m, p in zip(gold, pred):
    kind = "section" if m[0]["content"].startswith("Which section") else "synopsis"
    hits[kind][0] += p.strip() == m[1]["content"].strip()
    hits[kind][1] += 1
print("\t".join([sys.argv[3], sys.argv[4]] + [f"{h[0] / h[1]:.4f}" for h in hits.values()]))
PY
}
: > "$runs/scores.tsv"
score base "$model"
for seed in $seeds; do
    for method in lora full; do
        out="$runs/$method-seed$seed"
        if [ "$method" = lora ]; then extra=(--lora-rank 16 --lora-alpha 32 --lora-targets all --lr "${LORA_LR:-1e-3}"); else extra=(--lr "${FULL_LR:-5e-5}"); fi
        mpirun -n "$ranks" "$bin" train --model "$model" --train "$data/train.jsonl" --valid "$data/valid.jsonl" --output "$out" --overwrite \
            --epochs "$epochs" --batch-size "$batch" --seed "$seed" --warmup-ratio 0.1 --progress none "${extra[@]}" | tail -1
        score "$method-seed$seed" "$out/best"
    done
done
python3 - "$runs/scores.tsv" > "$runs/table.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1])]
def summary(prefix):
    picked = [r for r in rows if r[0] == prefix or r[0].startswith(prefix + "-")]
    cols = list(zip(*[[float(x) for x in r[1:]] for r in picked]))
    fmt = lambda c, d: f"{statistics.mean(c):.{d}f}" + (f" ± {statistics.stdev(c):.{d}f}" if len(c) > 1 else "")
    return f"| {prefix} | {len(picked)} | {fmt(cols[0], 3)} | {fmt(cols[1], 3)} | {fmt(cols[2], 3)} |"
print("| model | runs | held-out loss | exact match: section | exact match: synopsis |")
print("|---|---|---|---|---|")
for p in ("base", "lora", "full"): print(summary(p))
PY
cat "$runs/table.md"
