#!/usr/bin/env bash
# Fuzzes the readers of untrusted files with libFuzzer: JSON, JSON Lines, CSV, safetensors, model
# configs, tokenizers (Sources/finetune-fuzz).
#   launch/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      default: 60 s each, every target
# Builds with -sanitize=fuzzer into .build/fuzz (apart from the normal build), seeds each target's
# corpus from the test fixtures, and runs it for the given time. A crash stops with the input that
# caused it (fuzz-crashes/<target>-...); copy it to Tests/Fixtures/fuzz/<target>/ once fixed, where
# the tests replay it (FuzzRegressionTests).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json jsonl csv safetensors gguf config tokenizer)
scratch=.build/fuzz
echo "fuzz.sh: building finetune-fuzz with -sanitize=fuzzer" >&2
swift build --scratch-path "$scratch" --product finetune-fuzz -Xswiftc -sanitize=fuzzer -Xswiftc -parse-as-library \
    -Xswiftc -DFUZZING >/dev/null
binary="$scratch/debug/finetune-fuzz"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p fuzz-crashes
fixtures=Tests/Fixtures
for target in "${targets[@]}"; do
    corpus="$work/corpus-$target"
    mkdir -p "$corpus"
    # Seeds: the committed regression inputs and fixtures of the target's kind.
    [ -d "$fixtures/fuzz/$target" ] && cp "$fixtures/fuzz/$target"/* "$corpus"/ 2>/dev/null || true
    case "$target" in
        json|config) for f in "$fixtures"/tiny-bert/*/config.json; do cp "$f" "$corpus/$(basename "$(dirname "$f")")-config.json"; done ;;
        jsonl) printf '{"features": [0.5, NaN, 1e999], "label": "a"}\n{"text": "x", "label": 1}\n' > "$corpus/seed.jsonl" ;;
        csv) printf 'text,label\n"a, ""quoted"" text",x\nplain,y\n' > "$corpus/seed.csv" ;;
        safetensors) cp "$fixtures"/tiny-bert/base/model.safetensors "$corpus/base.safetensors" ;;
        gguf) cp "$fixtures"/gguf/tiny.gguf "$corpus/tiny.gguf" ;;
        tokenizer) printf 'Hello, wörld! 中文 running datas\n' > "$corpus/seed.txt"
                   printf '{"model": {"type": "WordPiece", "unk_token": "[UNK]", "vocab": {"[UNK]": 0, "a": 1, "##b": 2}}, "normalizer": {"type": "BertNormalizer", "lowercase": true}}' > "$corpus/tokenizer.json" ;;
    esac
    echo "fuzz.sh: $target for $seconds s" >&2
    if ! FINETUNE_FUZZ_TARGET="$target" "$binary" "$corpus" -max_total_time="$seconds" -max_len=65536 -timeout=10 \
            -rss_limit_mb=4096 -artifact_prefix="fuzz-crashes/$target-" -print_final_stats=1 >"$work/$target.log" 2>&1; then
        tail -40 "$work/$target.log" >&2
        echo "fuzz.sh: $target FAILED; the input is in fuzz-crashes/" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units|cov:" "$work/$target.log" | tail -2 | sed "s/^/fuzz.sh: $target: /" >&2
done
rmdir fuzz-crashes 2>/dev/null || true
echo "fuzz.sh: ${targets[*]}: no crash in $seconds s each" >&2
