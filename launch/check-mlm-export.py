#!/usr/bin/env python3
"""Checks a `train --task mlm` export (best/ or final/) with the libraries users load it with:
transformers' BertForMaskedLM must take every tensor as written (no missing key, nothing
re-initialised: each parameter equal to the file's tensor), the decoder tied to the word
embeddings; sentence-transformers must load the folder when the run started from one; and the
model fills a [MASK] (a sanity look, printed).

    python3 -m venv /tmp/torch && /tmp/torch/bin/pip install torch transformers sentence-transformers
    /tmp/torch/bin/python launch/check-mlm-export.py runs/adapt/best

Not part of CI (tests must not need torch); its output is kept in Docs/domain-adaptation.md.
"""
import os
import sys

import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer, BertForMaskedLM

folder = sys.argv[1]
model, info = BertForMaskedLM.from_pretrained(folder, output_loading_info=True)
model.eval()
written = load_file(os.path.join(folder, "model.safetensors"))
state = model.state_dict()
compared, worst = 0, 0.0
for name, tensor in written.items():
    if name in state:
        worst = max(worst, (state[name] - tensor).abs().max().item())
        compared += 1
tied = model.cls.predictions.decoder.weight.data_ptr() == model.bert.embeddings.word_embeddings.weight.data_ptr()
print(f"{folder}: BertForMaskedLM loads {compared} tensors as written (largest difference {worst}); "
      f"missing {info['missing_keys']}, unexpected {info['unexpected_keys']}; decoder tied to the word embeddings: {tied}")
ok = worst == 0 and not info["missing_keys"] and tied
tokenizer = AutoTokenizer.from_pretrained(folder)
for text in ["a tool to [MASK] files over the network", "library for reading and writing [MASK] images"]:
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    position = (inputs["input_ids"][0] == tokenizer.mask_token_id).nonzero()[0].item()
    top = logits[0, position].topk(5).indices.tolist()
    print(f"  {text!r}: {tokenizer.convert_ids_to_tokens(top)}")
if os.path.exists(os.path.join(folder, "modules.json")):
    from sentence_transformers import SentenceTransformer
    embedding = SentenceTransformer(folder, device="cpu").encode(["converts audio files to mp3"])
    print(f"  sentence-transformers loads it: embedding of shape {embedding.shape}")
sys.exit(0 if ok else 1)
