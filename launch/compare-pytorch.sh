#!/usr/bin/env bash
# finetune-dist against PyTorch on the same model, batch, sequence length and cores, one after
# the other in this one invocation, with the ratios (not run in CI).
#   launch/compare-pytorch.sh [VENV]     # VENV: a virtualenv for torch + transformers (default ~/.venv-finetune-compare)
#   SHAPE=mpnet-base SEQ=128 RANK_BATCH=16 launch/compare-pytorch.sh [VENV]
# (a) 1 process x 1 thread each, 16 sequences; (b) 2 cores, RANK_BATCH sequences per rank
# (default 8: a global batch of 16 as in (a)): PyTorch's better of 1 process x 2 threads and DDP
# over gloo on 2 processes x 1 thread, against finetune-dist on 2 ranks x 1 thread.
# SHAPE: minilm (default) or mpnet-base; SEQ tokens per sequence (default 64); AdamW.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-$HOME/.venv-finetune-compare}
steps=${STEPS:-10}
shape=${SHAPE:-minilm}
seq=${SEQ:-64}
per_rank=${RANK_BATCH:-8}
launch/setup.sh
if [ ! -x "$venv/bin/python" ]; then
    echo "compare-pytorch: installing torch and transformers into $venv (several GB, a few minutes)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch transformers
fi
source launch/env.sh
py="$venv/bin/python"
ours_1=$(OPENBLAS_NUM_THREADS=1 "$FINETUNE_DIST_BIN" bench --shape "$shape" --per-rank-batch 16 --seq-len "$seq" --steps "$steps" --json | tail -1)
ours_2=$(launch/local.sh -n 2 bench --shape "$shape" --per-rank-batch "$per_rank" --seq-len "$seq" --steps "$steps" --json 2>/dev/null | tail -1)
torch_1=$("$py" launch/pytorch_bench.py --shape "$shape" --batch 16 --seq "$seq" --threads 1 --steps "$steps" 2>/dev/null | tail -1)
torch_2t=$("$py" launch/pytorch_bench.py --shape "$shape" --batch $((2 * per_rank)) --seq "$seq" --threads 2 --steps "$steps" 2>/dev/null | tail -1)
torch_ddp=$(OMP_NUM_THREADS=1 "$venv/bin/torchrun" --nproc-per-node 2 launch/pytorch_bench.py --shape "$shape" --ddp --batch "$per_rank" --seq "$seq" --threads 1 --steps "$steps" 2>/dev/null | tail -1)
python3 - "$ours_1" "$ours_2" "$torch_1" "$torch_2t" "$torch_ddp" "$shape" "$seq" "$per_rank" <<'PY'
import json, sys
o1, o2, t1, t2, td = (json.loads(x) for x in sys.argv[1:6])
shape, seq, per_rank = sys.argv[6:]
best = max(t2, td, key=lambda r: r["examples_per_s"])
print(f"{shape} shape, {seq} tokens per sequence, AdamW; (a) 16 sequences, (b) {per_rank} per rank; examples/s (higher is better)")
print(f"(a) 1 process x 1 thread:  finetune-dist {o1['examples_per_s']:.1f}  PyTorch {t1['examples_per_s']:.1f}  ratio {o1['examples_per_s'] / t1['examples_per_s']:.2f}x")
print(f"(b) 2 cores:               finetune-dist {o2['examples_per_s']:.1f} (2 ranks)  PyTorch {t2['examples_per_s']:.1f} (2 threads) / {td['examples_per_s']:.1f} (DDP gloo 2x1)  ratio to the better {o2['examples_per_s'] / best['examples_per_s']:.2f}x")
print(f"finetune-dist 1x1 reaches {100 * o1['fraction_of_sgemm']:.1f}% of the single-thread sgemm rate ({o1['sgemm_gflops']:.1f} GFLOP/s); torch {t1['torch']}")
print(f"finetune-dist peak RSS per rank: {o1.get('peak_rss_bytes', 0) / 2**30:.2f} GiB (1 rank), {o2.get('peak_rss_bytes', 0) / 2**30:.2f} GiB (2 ranks)")
PY
