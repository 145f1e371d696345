#!/usr/bin/env python3
"""Loads a LoRA run's adapter with PEFT on its base model and compares logits with finetune-dist.

  python launch/check-peft.py RUN_FOLDER/final TEXTS.jsonl [--binary .build/release/finetune-dist]

FOLDER is a best/ or final/ of a --pooling cls LoRA run: the merged BertForSequenceClassification
folder with the adapter in FOLDER/adapter (adapter_config.json, adapter_model.safetensors). The
script loads adapter_config.json's base_model_name_or_path with transformers, puts the adapter on
it with peft.PeftModel.from_pretrained, and compares its logits on the texts with
`finetune-dist predict --with-logits` on FOLDER (the merged model) and on FOLDER/adapter (the
adapter on its base, read by finetune-dist). A base without a classification head is loaded with
the run's labels (num_labels, id2label from FOLDER/config.json): the adapter brings the trained head.
Exits non-zero above 1e-4 relative. Not run in CI.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import peft
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

p = argparse.ArgumentParser()
p.add_argument("model")
p.add_argument("texts")
p.add_argument("--binary", default=".build/release/finetune-dist")
p.add_argument("--max-length", type=int, default=64)
a = p.parse_args()

adapter = os.path.join(a.model, "adapter")
base = json.load(open(os.path.join(adapter, "adapter_config.json")))["base_model_name_or_path"]
texts = [json.loads(l)["text"] for l in open(a.texts) if l.strip()]

def ours(folder):
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "predictions.jsonl")
        subprocess.run([a.binary, "predict", "--model", folder, "--input", a.texts, "--output", out, "--with-logits",
                        "--max-length", str(a.max_length)], check=True)
        return torch.tensor([json.loads(l)["logits"] for l in open(out)])

tokenizer = AutoTokenizer.from_pretrained(a.model)
# A base without a head gets transformers' default 2 labels: give it the run's labels (the merged
# folder's config), as a user of the adapter would.
labels = json.load(open(os.path.join(a.model, "config.json")))["id2label"]
base_model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=len(labels), id2label=labels,
                                                                label2id={v: int(k) for k, v in labels.items()})
model = peft.PeftModel.from_pretrained(base_model, adapter).eval()
with torch.no_grad():
    enc = tokenizer(texts, truncation=True, max_length=a.max_length, padding=True, return_tensors="pt")
    theirs = model(**enc).logits
report = {"folder": a.model, "base": base, "loaded_with": "peft.PeftModel.from_pretrained(base, folder/adapter)",
          "peft": peft.__version__, "texts": len(texts), "logits_shape": list(theirs.shape)}
worst = 0.0
for name, folder in [("merged", a.model), ("adapter_on_base", adapter)]:
    mine = ours(folder)
    diff = (mine - theirs).abs()
    relative = (diff.max() / theirs.abs().max()).item()
    worst = max(worst, relative)
    report[name] = {"max_abs_diff": diff.max().item(), "max_rel_diff": relative,
                    "same_argmax": bool((mine.argmax(-1) == theirs.argmax(-1)).all())}
print(json.dumps(report, indent=1))
sys.exit(0 if worst <= 1e-4 else 1)
