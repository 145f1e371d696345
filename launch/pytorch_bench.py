#!/usr/bin/env python3
"""PyTorch's side of launch/compare-pytorch.sh: training steps of the same model on random tokens.

--shape minilm: MiniLM's (BertModel: 6 layers, hidden 384, 12 heads, intermediate 1536, vocabulary
30522); --shape mpnet-base: all-mpnet-base-v2's (MPNetModel: 12 layers, hidden 768, 12 heads,
intermediate 3072, vocabulary 30527, relative position bias). Mean pooling, a linear head, cross-entropy, AdamW, BATCH sequences of SEQ tokens per process;
median step time over STEPS steps after a warm-up. With --ddp, run under torchrun: DistributedDataParallel
over gloo, BATCH per process. Prints one JSON object.
"""
import argparse
import json
import os
import time

import torch
from transformers import BertConfig, BertModel, MPNetConfig, MPNetModel

p = argparse.ArgumentParser()
p.add_argument("--batch", type=int, default=16)
p.add_argument("--seq", type=int, default=64)
p.add_argument("--steps", type=int, default=10)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--ddp", action="store_true")
p.add_argument("--shape", choices=["minilm", "mpnet-base"], default="minilm")
a = p.parse_args()
torch.set_num_threads(a.threads)
rank, world = 0, 1
if a.ddp:
    torch.distributed.init_process_group("gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
torch.manual_seed(rank)
if a.shape == "minilm":
    config = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=1536, max_position_embeddings=512, hidden_act="gelu")
    encoder_class = BertModel
else:
    config = MPNetConfig(vocab_size=30527, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514, hidden_act="gelu", layer_norm_eps=1e-5)
    encoder_class = MPNetModel


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = encoder_class(config, add_pooling_layer=False)
        self.head = torch.nn.Linear(config.hidden_size, 2)

    def forward(self, ids, mask):
        h = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        return self.head((h * m).sum(1) / m.sum(1))


model = Model().train()
if a.ddp:
    model = torch.nn.parallel.DistributedDataParallel(model)
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
ids = torch.randint(4, config.vocab_size, (a.batch, a.seq))
mask = torch.ones(a.batch, a.seq, dtype=torch.long)
y = torch.randint(0, 2, (a.batch,))
times = []
for step in range(a.steps + 2):
    t = time.perf_counter()
    loss = torch.nn.functional.cross_entropy(model(ids, mask), y)
    loss.backward()
    opt.step()
    opt.zero_grad()
    if step >= 2:
        times.append(time.perf_counter() - t)
times.sort()
step_s = times[len(times) // 2]
if rank == 0:
    print(json.dumps({"step_s": step_s, "examples_per_s": a.batch * world / step_s, "processes": world, "threads": a.threads,
                      "torch": torch.__version__}))
if a.ddp:
    torch.distributed.destroy_process_group()
