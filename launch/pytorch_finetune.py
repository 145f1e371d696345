#!/usr/bin/env python3
"""The README's main job done in PyTorch, for a side-by-side comparison (not run in CI).

Same model (all-MiniLM-L6-v2 + mean pooling + a linear head), data (launch/make-debian-dataset.sh),
and settings as `launch/local.sh train ... --pooling mean`: global batch 32, 3 epochs, AdamW 5e-5 with
weight decay 0.01 except biases and LayerNorm weights, 6% linear warm-up then linear decay
(transformers' get_linear_schedule_with_warmup), at most 64 tokens with each batch padded to its
own longest sequence, dropout as the model's config says. Validation after each epoch; the test set
is evaluated once at the end with the best model by validation loss (as finetune-dist's --test).

usage: python launch/pytorch_finetune.py [--threads 2] [--seed 0] [--model models/all-MiniLM-L6-v2] [--data data/debian]
needs: torch, transformers (e.g. in a virtualenv outside the repository)
"""
import argparse
import copy
import json
import random
import time

import torch
from transformers import AutoModel, AutoTokenizer, get_linear_schedule_with_warmup

p = argparse.ArgumentParser()
p.add_argument("--threads", type=int, default=2)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--model", default="models/all-MiniLM-L6-v2")
p.add_argument("--data", default="data/debian")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--batch-size", type=int, default=32)
p.add_argument("--max-length", type=int, default=64)
a = p.parse_args()
torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)
random.seed(a.seed)


def read(split):
    with open(f"{a.data}/{split}.jsonl") as f:
        return [json.loads(line) for line in f if line.strip()]


train, valid, test = read("train"), read("valid"), read("test")
labels = sorted({r["label"] for r in train})
label_id = {l: i for i, l in enumerate(labels)}
tokenizer = AutoTokenizer.from_pretrained(a.model)


class Classifier(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = AutoModel.from_pretrained(a.model)
        self.head = torch.nn.Linear(self.encoder.config.hidden_size, len(labels))
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, batch):
        hidden = self.encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        return self.head((hidden * mask).sum(1) / mask.sum(1))


def batches(records, size, shuffle):
    order = list(range(len(records)))
    if shuffle:
        random.shuffle(order)
    for i in range(0, len(order), size):
        chunk = [records[j] for j in order[i:i + size]]
        enc = tokenizer([r["text"] for r in chunk], truncation=True, max_length=a.max_length, padding="longest",
                        return_tensors="pt")
        yield enc, torch.tensor([label_id[r["label"]] for r in chunk])


def evaluate(model, records):
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for enc, y in batches(records, 256, False):
            logits = model(enc)
            loss += torch.nn.functional.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(-1) == y).sum().item()
    model.train()
    return loss / len(records), correct / len(records)


model = Classifier()
decay = [p for n, p in model.named_parameters() if not (n.endswith("bias") or "LayerNorm" in n)]
no_decay = [p for n, p in model.named_parameters() if n.endswith("bias") or "LayerNorm" in n]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=5e-5)
steps = a.epochs * ((len(train) + a.batch_size - 1) // a.batch_size)
schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps + 0.999999), steps)
start = time.time()
best, best_state = float("inf"), None
model.train()
for epoch in range(a.epochs):
    for enc, y in batches(train, a.batch_size, True):
        loss = torch.nn.functional.cross_entropy(model(enc), y)
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
    val_loss, val_acc = evaluate(model, valid)
    print(json.dumps({"epoch": epoch + 1, "val_loss": round(val_loss, 4), "val_accuracy": round(val_acc, 4),
                      "elapsed_s": round(time.time() - start, 1)}), flush=True)
    if val_loss < best:
        best, best_state = val_loss, copy.deepcopy(model.state_dict())
train_seconds = time.time() - start
model.load_state_dict(best_state)
test_loss, test_acc = evaluate(model, test)
print(json.dumps({"test_loss": round(test_loss, 4), "test_accuracy": round(test_acc, 4), "train_seconds": round(train_seconds, 1),
                  "threads": a.threads, "seed": a.seed, "torch": torch.__version__}))
