#!/usr/bin/env python3
"""The reference for masked-language modelling: PyTorch + transformers' BertForMaskedLM with
DataCollatorForLanguageModeling (15 % masking, 80/10/10), AdamW, on the same corpus and machine.
Times STEPS steps after WARMUP and extrapolates one epoch; prints examples/s.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch transformers
    /tmp/torch/bin/python launch/pytorch_mlm.py --threads 2 [--steps 60]

Not run in CI (tests must not need torch). Its output is kept in Docs/domain-adaptation.md.
"""
import argparse
import time

import torch
from transformers import AutoTokenizer, BertForMaskedLM, DataCollatorForLanguageModeling

p = argparse.ArgumentParser()
p.add_argument("--model", default="models/all-MiniLM-L6-v2")
p.add_argument("--corpus", default="data/debian-corpus/domain.txt")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--batch-size", type=int, default=64)
p.add_argument("--max-length", type=int, default=64)
p.add_argument("--steps", type=int, default=60)
p.add_argument("--warmup", type=int, default=5)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(0)
tokenizer = AutoTokenizer.from_pretrained(a.model)
model = BertForMaskedLM.from_pretrained(a.model)
model.train()
texts = [l for l in open(a.corpus).read().splitlines() if l.strip()]
collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.15)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, weight_decay=0.01)
order = torch.randperm(len(texts)).tolist()
start = None
for step in range(a.warmup + a.steps):
    if step == a.warmup:
        start = time.perf_counter()
    batch_texts = [texts[i] for i in order[step * a.batch_size:(step + 1) * a.batch_size]]
    encoded = tokenizer(batch_texts, truncation=True, max_length=a.max_length)
    batch = collator([{k: encoded[k][i] for k in encoded} for i in range(len(batch_texts))])
    loss = model(**batch).loss
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
seconds = time.perf_counter() - start
rate = a.steps * a.batch_size / seconds
print(f"pytorch mlm: {a.steps} steps of {a.batch_size} in {seconds:.1f} s: {rate:.1f} examples/s; "
      f"one epoch of {len(texts)} texts: {len(texts) / rate:.0f} s (torch {torch.__version__}, {a.threads} threads)")
