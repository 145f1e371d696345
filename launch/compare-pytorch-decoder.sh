#!/usr/bin/env bash
# finetune-dist against transformers + PEFT on SmolLM2-135M-Instruct (dequantized from its GGUF),
# causal-LM training at SEQ tokens (default 256), LoRA (r 16 on all seven projections) and full
# fine-tuning, one after the other in this one invocation, with the ratios (not run in CI):
# (a) 1 process x 1 thread, BATCH sequences (default 4); (b) 2 cores: finetune-dist 2 ranks x 1
# thread against PyTorch's better of 1 process x 2 threads and DDP over gloo, 2 x 1 thread, the
# same global batch.
#   launch/compare-pytorch-decoder.sh [VENV]    # VENV with torch, transformers, peft, gguf (default ~/.venv-finetune-compare)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$HOME/.venv-finetune-compare}
seq=${SEQ:-256} batch=${BATCH:-4} steps=${STEPS:-3}
if [ ! -x "$venv/bin/python" ]; then
    echo "compare-pytorch-decoder: installing torch, transformers, peft and gguf into $venv (several GB, a few minutes)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers peft gguf
fi
launch/fetch-model.sh smollm2-135m-instruct >/dev/null
model=models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
source launch/env.sh
py="$venv/bin/python"
half=$((batch / 2))
for method in lora full; do
    if [ "$method" = lora ]; then ours=(--lora-rank 16 --lora-alpha 32 --lora-targets all); theirs=(--lora 16); else ours=(); theirs=(); fi
    o1=$(OPENBLAS_NUM_THREADS=1 "$FINETUNE_DIST_BIN" bench --model "$model" --per-rank-batch "$batch" --seq-len "$seq" --steps "$steps" --warmup 1 --json "${ours[@]}" | tail -1)
    o2=$(launch/local.sh -n 2 bench --model "$model" --per-rank-batch "$half" --seq-len "$seq" --steps "$steps" --warmup 1 --json "${ours[@]}" 2>/dev/null | tail -1)
    t1=$("$py" launch/pytorch_decoder_bench.py "$model" --batch "$batch" --seq "$seq" --threads 1 --steps "$steps" "${theirs[@]}" 2>/dev/null | tail -1)
    t2=$("$py" launch/pytorch_decoder_bench.py "$model" --batch "$batch" --seq "$seq" --threads 2 --steps "$steps" "${theirs[@]}" 2>/dev/null | tail -1)
    td=$(OMP_NUM_THREADS=1 "$venv/bin/torchrun" --nproc-per-node 2 launch/pytorch_decoder_bench.py "$model" --ddp --batch "$half" --seq "$seq" --threads 1 --steps "$steps" "${theirs[@]}" 2>/dev/null | tail -1)
    python3 - "$method" "$o1" "$o2" "$t1" "$t2" "$td" "$seq" "$batch" <<'PY'
import json, sys
method = sys.argv[1]
o1, o2, t1, t2, td = (json.loads(x) for x in sys.argv[2:7])
seq, batch = sys.argv[7:]
best = max(t2, td, key=lambda r: r["tokens_per_s"])
print(f"{method}: {batch} x {seq} tokens per step; tokens/s (higher is better)")
print(f"  (a) 1 process x 1 thread: finetune-dist {o1['tokens_per_s']:.0f}  PyTorch {t1['tokens_per_s']:.0f}  ratio {o1['tokens_per_s'] / t1['tokens_per_s']:.2f}x"
      f"  (finetune-dist at {100 * o1['fraction_of_sgemm']:.1f}% of sgemm {o1['sgemm_gflops']:.0f} GFLOP/s)")
print(f"  (b) 2 cores: finetune-dist {o2['tokens_per_s']:.0f} (2 ranks)  PyTorch {t2['tokens_per_s']:.0f} (2 threads) / {td['tokens_per_s']:.0f} (DDP 2x1)"
      f"  ratio to the better {o2['tokens_per_s'] / best['tokens_per_s']:.2f}x  (finetune-dist at {100 * o2['fraction_of_sgemm']:.1f}% of sgemm)")
PY
done
