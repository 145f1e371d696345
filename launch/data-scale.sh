#!/usr/bin/env bash
# The token cache at corpus scale (Docs/data.md): corpora of 100 MB, 1 GB and 5 GB made by
# repeating the Debian corpus; for each, the cache built by `tokenize` on 1 and on 2 ranks, then
# `train --task mlm --max-steps 2` on 2 ranks from the built cache (median of 3 runs): seconds to the end of step 1
# and peak RSS per rank. The 2.5 MB corpus itself, and --no-token-cache (every rank tokenizes into
# memory) up to 100 MB, are the comparison rows. Last, tokenizing throughput per core against
# Hugging Face `tokenizers` (encode_batch, one thread) on the same 100 MB of text.
#
#   launch/data-scale.sh [SIZE_MB...]       (default: 100 1000 5000; needs ~3x the largest size on disk)
#   HF_PYTHON=/path/to/python launch/data-scale.sh   (a python with `tokenizers`; else that row is skipped)
set -euo pipefail
cd "$(dirname "$0")/.."
. launch/env.sh
bin=$FINETUNE_DIST_BIN
model=models/all-MiniLM-L6-v2
[ -d "$model" ] || launch/fetch-model.sh all-MiniLM-L6-v2
[ -f data/debian-corpus/domain.txt ] || launch/make-debian-corpus.sh
command -v /usr/bin/time >/dev/null || { echo "data-scale: needs GNU time (apt-get install time)" >&2; exit 1; }
sizes=("$@"); [ ${#sizes[@]} -gt 0 ] || sizes=(100 1000 5000)
out=runs/data-scale
mkdir -p "$out" data/scale
base=data/debian-corpus/domain.txt
mpi=(mpirun --oversubscribe -n)
train_args=(train --task mlm --model "$model" --max-steps 2 --batch-size 16 --max-length 128 --log-every 1 --progress lines --overwrite)

# A corpus of at least SIZE MB: the Debian corpus repeated.
corpus() {
    local size=$1 file=data/scale/corpus-${1}MB.txt
    if [ ! -f "$file" ]; then
        local copies=$(( (size * 1000000 + $(stat -c %s "$base") - 1) / $(stat -c %s "$base") ))
        echo "making $file ($copies copies of $base)" >&2
        for ((i = 0; i < copies; i++)); do cat "$base"; done > "$file.tmp" && mv "$file.tmp" "$file"
    fi
    echo "$file"
}

# Seconds from launch to the end of step 1, the whole run, and the peak RSS (MB) of the two ranks
# (smaller / larger) of a 2-rank run: the median of 3 runs (rank 0's export of final/ at the end
# makes its peak vary by some 50 MB from run to run).
train_row() {
    local name=$1; shift
    local log=$out/$name.log runs=$out/$name.runs start
    : > "$runs"
    for rep in 1 2 3; do
        start=$(date +%s.%N)
        "${mpi[@]}" 2 /usr/bin/time -f "peak-rss-kb %M" "$bin" "${train_args[@]}" --output "$out/run-$name" "$@" 2>&1 \
            | while IFS= read -r line; do printf '%s %s\n' "$(date +%s.%N)" "$line"; done > "$log"
        grep -q "finished: completed" "$log" || { echo "data-scale: the run failed, see $log" >&2; exit 1; }
        awk -v s="$start" '/ step 1\/2 /{ if (!f) first = $1 - s; f = 1 } /peak-rss-kb/{ r[n++] = $3 / 1024 } { t = $1 }
            END { lo = r[0] < r[1] ? r[0] : r[1]; hi = r[0] < r[1] ? r[1] : r[0]; printf "%.1f %.1f %.0f %.0f\n", first, t - s, lo, hi }' "$log" >> "$runs"
    done
    # The median of each column.
    for col in 1 2 3 4; do sort -n -k$col,$col "$runs" | sed -n 2p | cut -d' ' -f$col; done | paste -sd' ' \
        | awk '{ printf "%s|%s|%s / %s\n", $1, $2, $3, $4 }'
}

# Seconds to build the cache of FILE on N ranks (a fresh cache folder), and its size.
build_row() {
    local file=$1 ranks=$2 cache=$3
    rm -rf "$cache"
    local start end
    start=$(date +%s.%N)
    "${mpi[@]}" "$ranks" "$bin" tokenize --model "$model" --data "$file" --task mlm --max-length 128 --cache-dir "$cache" > "$out/tokenize.log" 2>&1 \
        || { cat "$out/tokenize.log" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" 'BEGIN { printf "%.1f", e - s }'
}

echo "machine: $(lscpu | awk -F: '/Model name/ { gsub(/^ +/, "", $2); print $2 }') (family $(awk '/cpu family/ { print $4; exit }' /proc/cpuinfo), model $(awk '/^model\t/ { print $3; exit }' /proc/cpuinfo)), $(nproc) cores, $(free -g | awk '/Mem:/ { print $2 }') GiB; $(date -u +%Y-%m-%d)"
echo
echo "| corpus | cache build, 1 rank | 2 ranks | speed-up | cache on disk | end of step 1 (2 ranks) | whole 2-step run | peak RSS of the 2 ranks (MB) |"
echo "|---|---|---|---|---|---|---|---|"
row() {
    local label=$1 file=$2
    local b1 b2 cache=$out/cache-$(basename "$file" .txt)
    b1=$(build_row "$file" 1 "$cache")
    b2=$(build_row "$file" 2 "$cache")
    local disk; disk=$(du -sm "$cache" | cut -f1)
    IFS='|' read -r first total rss <<< "$(train_row "cached-$(basename "$file" .txt)" --train "$file" --cache-dir "$cache")"
    local speedup; speedup=$(awk -v a="$b1" -v b="$b2" 'BEGIN { printf "%.2fx", a / b }')
    echo "| $label, token cache | $b1 s | $b2 s | $speedup | $disk MB | $first s | $total s | $rss |"
}
IFS='|' read -r first total rss <<< "$(train_row memory-base --train "$base" --no-token-cache)"
echo "| 2.5 MB, --no-token-cache | | | | | $first s | $total s | $rss |"
row "2.5 MB" "$base"
for size in "${sizes[@]}"; do
    file=$(corpus "$size")
    if [ "$size" -le 100 ]; then
        IFS='|' read -r first total rss <<< "$(train_row "memory-$size" --train "$file" --no-token-cache)"
        echo "| $size MB, --no-token-cache | | | | | $first s | $total s | $rss |"
    fi
    row "$size MB" "$file"
done

# Tokenizing throughput per core on the same 100 MB: ours (tokenize on 1 rank, cache written) and
# Hugging Face tokenizers' encode_batch on one thread (text already in memory, nothing written).
file=$(corpus 100)
python=${HF_PYTHON:-python3}
echo
if "$python" -c "import tokenizers" 2>/dev/null; then
    ours=$(build_row "$file" 1 "$out/cache-throughput")
    rm -rf "$out/cache-throughput"
    mb=$(awk -v b="$(stat -c %s "$file")" 'BEGIN { printf "%.1f", b / 1e6 }')
    hf=$(RAYON_NUM_THREADS=1 "$python" launch/hf_tokenize_rate.py "$model/tokenizer.json" "$file")
    echo "tokenizing $file ($mb MB) on one core: finetune-dist tokenize $ours s ($(awk -v m="$mb" -v s="$ours" 'BEGIN { printf "%.1f", m / s }') MB/s, cache written); $hf"
else
    echo "(no \`tokenizers\` in $python: set HF_PYTHON to a python with it for the side-by-side throughput)"
fi
