#!/usr/bin/env python3
"""Loads finetune-dist's exported model folders with the Python ecosystem and compares logits.

  python launch/check-export.py MODEL_DIR TEXTS.jsonl [--binary .build/release/finetune-dist]

MODEL_DIR is a best/ or final/ folder of a BERT run:
- --pooling cls  runs write a BertForSequenceClassification folder: loaded with
  transformers.AutoModelForSequenceClassification;
- --pooling mean runs write a sentence-transformers folder: loaded with
  sentence_transformers.SentenceTransformer, whose encode() returns the head's logits.
The same texts go through `finetune-dist predict --with-logits`; the script prints the largest
absolute and relative differences and exits non-zero above 1e-4 relative. Not run in CI (needs torch).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("texts")
p.add_argument("--binary", default=".build/release/finetune-dist")
p.add_argument("--max-length", type=int, default=64)
a = p.parse_args()

records = [json.loads(l) for l in open(a.texts) if l.strip()]
texts = [r["text"] for r in records]
with tempfile.TemporaryDirectory() as d:
    out = os.path.join(d, "predictions.jsonl")
    subprocess.run([a.binary, "predict", "--model", a.model, "--input", a.texts, "--output", out, "--with-logits",
                    "--max-length", str(a.max_length)], check=True)
    ours = torch.tensor([json.loads(l)["logits"] for l in open(out)])

if os.path.exists(os.path.join(a.model, "modules.json")):
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(a.model, device="cpu")
    model.max_seq_length = a.max_length
    theirs = torch.tensor(model.encode(texts, convert_to_numpy=True, batch_size=64))
    loader = "sentence_transformers.SentenceTransformer(folder).encode(texts)"
else:
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(a.model)
    model = AutoModelForSequenceClassification.from_pretrained(a.model).eval()
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=a.max_length, padding=True, return_tensors="pt")
        theirs = model(**enc).logits
    loader = "transformers.AutoModelForSequenceClassification.from_pretrained(folder)"

diff = (ours - theirs).abs()
relative = (diff.max() / theirs.abs().max()).item()
print(json.dumps({"folder": a.model, "loaded_with": loader, "texts": len(texts), "logits_shape": list(theirs.shape),
                  "max_abs_diff": diff.max().item(), "max_rel_diff": relative,
                  "same_argmax": bool((ours.argmax(-1) == theirs.argmax(-1)).all())}, indent=1))
sys.exit(0 if relative <= 1e-4 else 1)
