#!/usr/bin/env bash
# Through the token cache and through memory, the same weights (Docs/data.md): the README's main
# job and a masked-language-model run on the Debian corpus, 50 steps each, on 1 and 2 ranks, and the
# 2-rank cached run stopped after 20 steps and resumed. Prints one line per comparison; exits 1 on a
# difference.
#
#   launch/check-token-cache.sh [STEPS]      (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/env.sh
steps=${1:-50}
model=models/all-MiniLM-L6-v2
[ -d "$model" ] || launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian/train.jsonl ] || launch/make-debian-dataset.sh data/debian
[ -f data/debian-corpus/domain.txt ] || launch/make-debian-corpus.sh
out=runs/check-token-cache
mkdir -p "$out"
# The main job's options (launch/finetune-debian.sh), cut to $steps steps; the MLM run of Docs/domain-adaptation.md.
main=(train --model "$model" --train data/debian/train.jsonl --valid data/debian/valid.jsonl --pooling mean --max-length 64
      --batch-size 32 --lr 5e-5 --weight-decay 0.01 --lr-schedule linear --warmup-ratio 0.06 --max-steps "$steps" --eval-every 25
      --save-every 10 --progress none --overwrite)
mlm=(train --task mlm --model "$model" --train data/debian-corpus/domain.txt --max-length 128 --batch-size 16 --lr 5e-5
     --max-steps "$steps" --save-every 10 --progress none --overwrite)
status=0
same() {  # label, folder a, folder b
    if cmp -s "$2/final/model.safetensors" "$3/final/model.safetensors"; then echo "$1: bitwise equal"; else echo "$1: DIFFERENT"; status=1; fi
}
for job in main mlm; do
    declare -n args=$job
    for ranks in 1 2; do
        mpirun --oversubscribe -n "$ranks" "$FINETUNE_DIST_BIN" "${args[@]}" --output "$out/$job-$ranks-memory" --no-token-cache > "$out/$job-$ranks-memory.log" 2>&1
        mpirun --oversubscribe -n "$ranks" "$FINETUNE_DIST_BIN" "${args[@]}" --output "$out/$job-$ranks-cache" > "$out/$job-$ranks-cache.log" 2>&1
        same "$job, $ranks rank(s), $steps steps: token cache vs --no-token-cache" "$out/$job-$ranks-cache" "$out/$job-$ranks-memory"
    done
    # Stopped after 20 steps and resumed through the cache, against the uninterrupted in-memory run.
    rm -rf "$out/$job-resumed"
    mpirun --oversubscribe -n 2 "$FINETUNE_DIST_BIN" "${args[@]}" --output "$out/$job-resumed" --cache-dir "$out/$job-2-cache/token-cache" \
        --stop-after-steps 20 > "$out/$job-resumed.log" 2>&1
    mpirun --oversubscribe -n 2 "$FINETUNE_DIST_BIN" "${args[@]/--overwrite/--resume}" --output "$out/$job-resumed" \
        --cache-dir "$out/$job-2-cache/token-cache" >> "$out/$job-resumed.log" 2>&1
    same "$job, 2 ranks, stopped at step 20 and resumed through the cache vs uninterrupted --no-token-cache" "$out/$job-resumed" "$out/$job-2-memory"
done
exit $status
