#!/usr/bin/env bash
# The measured tables of Docs/embeddings.md, one run after the other on this machine:
#   base      all-MiniLM-L6-v2 as it ships: retrieval on the validation and test splits (finetune-dist eval)
#   b32       launch/finetune-debian-embeddings.sh: global batch 32 (seeds 0 1 2)
#   b256      the same with --batch-size 256 --mini-batch-size 32 (GradCache)
#   b1024     the same with --batch-size 1024 --mini-batch-size 32
#   st        sentence-transformers 6 (launch/st_embedding_baseline.py): batch 32, 2 threads (seeds 0 1 2)
#   launch/embedding-table.sh [OUT_FOLDER] [SEEDS_OF_LARGE_BATCHES]   (default runs/embedding-table, "0")
# Set FINETUNE_DIST_BIN to a built binary to keep working on the source meanwhile, and ST_PYTHON to
# a python with sentence-transformers (the st rows are skipped without it). Prints Markdown tables.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/embedding-table}
large_seeds=${2:-0}
mkdir -p "$out"
launch/setup.sh
launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian-retrieval/train.jsonl ] || launch/make-debian-retrieval.sh data/debian-retrieval
source launch/env.sh
done_run() { [ -f "$1/metrics.jsonl" ] && grep -q '"type":"test"' "$1/metrics.jsonl"; }
for split in valid test; do
    [ -f "$out/base-$split.json" ] || "$FINETUNE_DIST_BIN" eval --model models/all-MiniLM-L6-v2 --data "data/debian-retrieval/$split.jsonl" \
        --max-length 128 --json --report "$out/base-$split.json" --progress none > /dev/null
done
run_ours() {  # name seed extra...
    local run="$out/$1-seed$2"; shift; local seed=$1; shift
    done_run "$run" && return 0
    rm -rf "$run"
    local start; start=$(date +%s)
    launch/finetune-debian-embeddings.sh --output "$run" --seed "$seed" "$@" > "$run.log" 2>&1
    echo $(( $(date +%s) - start )) > "$run.seconds"
    echo "$run: $(cat "$run.seconds") s" >&2
}
for seed in 0 1 2; do run_ours b32 "$seed"; done
for seed in $large_seeds; do
    run_ours b256 "$seed" --batch-size 256 --mini-batch-size 32
    run_ours b1024 "$seed" --batch-size 1024 --mini-batch-size 32
done
if [ -n "${ST_PYTHON:-}" ]; then
    for seed in 0 1 2; do
        run="$out/st-seed$seed"
        [ -f "$run.test.json" ] && continue
        "$ST_PYTHON" launch/st_embedding_baseline.py --output "$run" --seed "$seed" --threads "$(nproc)" > "$run.log" 2>&1
        for split in valid test; do
            "$FINETUNE_DIST_BIN" eval --model "$run" --data "data/debian-retrieval/$split.jsonl" --max-length 128 --json --report "$run.$split.json" --progress none > /dev/null
        done
    done
fi
python3 - "$out" <<'PY'
import glob, json, os, statistics, sys
out = sys.argv[1]
def stats(values):
    return "%.4f ± %.4f" % (statistics.mean(values), statistics.stdev(values)) if len(values) > 1 else "%.4f" % values[0]
print("| model | seeds | test NDCG@10 | test MRR@10 | test recall@1 | validation NDCG@10 (best/) | steps | wall time of the command, s |")
print("|---|---|---|---|---|---|---|---|")
base = {s: json.load(open(f"{out}/base-{s}.json")) for s in ("valid", "test")}
print("| all-MiniLM-L6-v2 as it ships | - | %.4f | %.4f | %.4f | %.4f | - | - |" % (base["test"]["eval_ndcg@10"], base["test"]["eval_mrr@10"],
      base["test"]["eval_recall@1"], base["valid"]["eval_ndcg@10"]))
for name, label in (("b32", "finetune-dist, batch 32"), ("b256", "finetune-dist, batch 256 (mini-batches of 32)"), ("b1024", "finetune-dist, batch 1024 (mini-batches of 32)")):
    runs = sorted(glob.glob(f"{out}/{name}-seed*/"))
    if not runs: continue
    test, valid, seconds, steps = {"ndcg": [], "mrr": [], "r1": []}, [], [], []
    for run in runs:
        records = [json.loads(l) for l in open(run + "metrics.jsonl")]
        t = [r for r in records if r["type"] == "test"][-1]
        test["ndcg"].append(t["test_ndcg@10"]); test["mrr"].append(t["test_mrr@10"]); test["r1"].append(t["test_recall@1"])
        valid.append(max(r["val_ndcg@10"] for r in records if r["type"] == "eval"))
        steps.append([r for r in records if r["type"] == "end"][-1]["step"])
        seconds.append(int(open(run.rstrip("/") + ".seconds").read()))
    print("| %s | %d | %s | %s | %s | %s | %d | %s |" % (label, len(runs), stats(test["ndcg"]), stats(test["mrr"]), stats(test["r1"]), stats(valid),
          steps[0], " / ".join(map(str, seconds))))
st = sorted(glob.glob(f"{out}/st-seed*.test.json"))
if st:
    test = [json.load(open(p)) for p in st]
    valid = [json.load(open(p.replace(".test.", ".valid."))) for p in st]
    lines = [json.loads(l) for p in st for l in open(p.replace(".test.json", ".log")) if l.startswith('{"train_seconds"')]
    print("| sentence-transformers 6, batch 32 | %d | %s | %s | %s | %s | %d | %s (trainer.train() only) |" % (len(st), stats([t["eval_ndcg@10"] for t in test]),
          stats([t["eval_mrr@10"] for t in test]), stats([t["eval_recall@1"] for t in test]), stats([v["eval_ndcg@10"] for v in valid]),
          lines[0]["steps"] if lines else 0, " / ".join("%.0f" % l["train_seconds"] for l in lines)))
PY
