#!/usr/bin/env python3
"""launch/finetune-debian-embeddings.sh's job done in sentence-transformers 6, for a side-by-side
comparison (Docs/embeddings.md; not run in CI).

Same model (all-MiniLM-L6-v2), data (launch/make-debian-retrieval.sh) and settings as
`finetune-dist train --task embedding`: MultipleNegativesRankingLoss (scale 20, cosine), global batch
32, 1 epoch, AdamW 5e-5 with weight decay 0.01, 10% linear warm-up then linear decay, at most 128
tokens, dropout as the model's config says; SentenceTransformerTrainer with its default batch
sampler. The wall time of trainer.train() is printed, then the model is saved (a sentence-transformers
folder that `finetune-dist eval` reads: the same retrieval figures as InformationRetrievalEvaluator).

usage: python launch/st_embedding_baseline.py --output DIR [--threads 2] [--seed 0] [--batch-size 32]
needs: torch, sentence-transformers, datasets (e.g. in a virtualenv outside the repository)
"""
import argparse
import json
import time

import torch
from datasets import Dataset
from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--model", default="models/all-MiniLM-L6-v2")
p.add_argument("--data", default="data/debian-retrieval")
p.add_argument("--epochs", type=int, default=1)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--max-length", type=int, default=128)
p.add_argument("--lr", type=float, default=5e-5)
p.add_argument("--output", required=True)
a = p.parse_args()
torch.set_num_threads(a.threads)

rows = [json.loads(l) for l in open(f"{a.data}/train.jsonl") if l.strip()]
columns = ["anchor", "positive"] + (["negative"] if "negative" in rows[0] else [])
train = Dataset.from_dict({c: [r[c] for r in rows] for c in columns})
model = SentenceTransformer(a.model, device="cpu")
model.max_seq_length = a.max_length
args = SentenceTransformerTrainingArguments(
    output_dir=a.output + "-trainer", num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
    weight_decay=0.01, warmup_ratio=0.1, lr_scheduler_type="linear", seed=a.seed, save_strategy="no", report_to=[],
    logging_steps=50, use_cpu=True, dataloader_drop_last=False)
trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train, loss=MultipleNegativesRankingLoss(model, scale=20.0))
start = time.time()
trainer.train()
seconds = time.time() - start
model.save(a.output)
print(json.dumps({"train_seconds": seconds, "steps": trainer.state.global_step, "threads": a.threads, "seed": a.seed, "batch_size": a.batch_size}))
