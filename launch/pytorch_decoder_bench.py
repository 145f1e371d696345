#!/usr/bin/env python3
"""PyTorch's side of launch/compare-pytorch-decoder.sh: causal-LM training steps of a GGUF decoder.

transformers dequantizes the GGUF into a float32 LlamaForCausalLM; --lora R wraps it with PEFT
(LoraConfig r=R, lora_alpha=2R, all seven projections, the base frozen), else every weight trains.
BATCH random sequences of SEQ tokens per process, labels = inputs (every position scored, the
same loss finetune-dist's bench computes), AdamW; median step time over STEPS steps after one
warm-up. With --ddp, run under torchrun: DistributedDataParallel over gloo. Prints one JSON object.
usage: python pytorch_decoder_bench.py MODEL.gguf [--lora R] [--batch B] [--seq T] [--threads N] [--ddp]
"""
import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("gguf")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=256)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--lora", type=int, default=0)
p.add_argument("--ddp", action="store_true")
a = p.parse_args()
torch.set_num_threads(a.threads)
rank, world = 0, 1
if a.ddp:
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
torch.manual_seed(rank)
model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(a.gguf)), gguf_file=os.path.basename(a.gguf), dtype=torch.float32)
if a.lora:
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=a.lora, lora_alpha=2 * a.lora, lora_dropout=0.0, task_type="CAUSAL_LM",
                                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.train()
if a.ddp:
    model = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=1e-5)
ids = torch.randint(0, 49152, (a.batch, a.seq))
times = []
for step in range(a.steps + 1):
    t = time.perf_counter()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    opt.step()
    opt.zero_grad()
    if step >= 1:
        times.append(time.perf_counter() - t)
times.sort()
step_s = times[len(times) // 2]
if rank == 0:
    print(json.dumps({"step_s": step_s, "tokens_per_s": a.batch * a.seq * world / step_s, "processes": world, "threads": a.threads,
                      "lora": a.lora, "torch": torch.__version__}))
if a.ddp:
    torch.distributed.destroy_process_group()
