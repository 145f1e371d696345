#!/usr/bin/env python3
"""Checks a `train --task mlm` export (best/ or final/) with the libraries users load it with:
transformers' AutoModelForMaskedLM (BertForMaskedLM, MPNetForMaskedLM) must take every tensor as
written (no missing or unexpected key, nothing re-initialised: each parameter equal to the file's tensor), the
decoder tied to the word embeddings; sentence-transformers must load the folder when the run started from one; and
finetune-dist's own fill-mask (`predict --with-logits`) must give transformers' logits at every
mask (within 1e-4) and its top 5 tokens.

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch transformers sentence-transformers
    FINETUNE_DIST_BIN=.build/release/finetune-dist /tmp/torch/bin/python launch/check-mlm-export.py runs/adapt/best

Not part of CI (tests must not need torch); its output is kept in Docs/domain-adaptation.md.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch
from safetensors.torch import load_file
from transformers import AutoModelForMaskedLM, AutoTokenizer

folder = sys.argv[1]
model, info = AutoModelForMaskedLM.from_pretrained(folder, output_loading_info=True)
model.eval()
written = load_file(os.path.join(folder, "model.safetensors"))
state = model.state_dict()
compared, worst = 0, 0.0
for name, tensor in written.items():
    if name in state:
        worst = max(worst, (state[name] - tensor).abs().max().item())
        compared += 1
tied = model.get_output_embeddings().weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
print(f"{folder}: {type(model).__name__} loads {compared} tensors as written (largest difference {worst}); "
      f"missing {info['missing_keys']}, unexpected {info['unexpected_keys']}; decoder tied to the word embeddings: {tied}")
ok = worst == 0 and not info["missing_keys"] and not info["unexpected_keys"] and tied
tokenizer = AutoTokenizer.from_pretrained(folder)
texts = [t.replace("[MASK]", tokenizer.mask_token) for t in ["a tool to [MASK] files over the network", "library for reading and writing [MASK] images",
         "python 3 [MASK] for parsing yaml", "[MASK] server for the x window system", "fonts for [MASK] and [MASK] scripts",
         "documentation for the gnu c [MASK]", "transitional dummy [MASK]", "command line tool to [MASK] pdf files"]]
binary = os.environ.get("FINETUNE_DIST_BIN", os.path.join(os.path.dirname(__file__), "..", ".build", "release", "finetune-dist"))
with tempfile.TemporaryDirectory() as scratch:
    with open(os.path.join(scratch, "in.jsonl"), "w") as f:
        f.writelines(json.dumps({"text": t}) + "\n" for t in texts)
    subprocess.run([binary, "predict", "--model", folder, "--input", f"{scratch}/in.jsonl", "--output", f"{scratch}/out.jsonl",
                    "--with-logits", "--progress", "none"], check=True, stdout=subprocess.DEVNULL)
    ours = [json.loads(line) for line in open(os.path.join(scratch, "out.jsonl"))]
largest, same_top = 0.0, 0
masks = 0
for text, line in zip(texts, ours):
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    positions = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero().flatten().tolist()
    assert len(positions) == len(line["logits"]), (text, positions, len(line["logits"]))
    for position, our_logits, candidates in zip(positions, line["logits"], line["masks"]):
        theirs = logits[0, position]
        largest = max(largest, (theirs - torch.tensor(our_logits)).abs().max().item())
        top = theirs.topk(5).indices.tolist()
        same_top += top == [c["token"] for c in candidates]
        masks += 1
    print(f"  {text!r}: {[[c['token_str'] for c in m] for m in line['masks']]}")
print(f"  finetune-dist predict against transformers at {masks} masks: largest logit difference {largest:.2e}, "
      f"the same top 5 tokens at {same_top} of {masks}")
ok = ok and largest <= 1e-4 and same_top == masks
if os.path.exists(os.path.join(folder, "modules.json")):
    from sentence_transformers import SentenceTransformer
    embedding = SentenceTransformer(folder, device="cpu").encode(["converts audio files to mp3"])
    print(f"  sentence-transformers loads it: embedding of shape {embedding.shape}")
sys.exit(0 if ok else 1)
