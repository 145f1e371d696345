#!/usr/bin/env python3
"""A decoder run's export as transformers and PEFT load it (launch/check-decoder.sh's second part).

RUN/best (or RUN/final) is loaded with AutoModelForCausalLM and AutoTokenizer as it is; when it
holds adapter/, the PEFT adapter is put on BASE (the .gguf or folder the run started from) with
PeftModel.from_pretrained. Prints, for every line of DATA (prompts or conversations): the merged
folder's loss as transformers computes it on the scored tokens, and max |Δ logit| between the
merged folder and base + adapter (PEFT applies scale·B·A on the fly, the folder has it merged).
usage: python check-decoder-export.py RUN/best BASE DATA.jsonl      (needs torch, transformers, peft, gguf)
"""
import json
import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

folder, base, data = sys.argv[1], sys.argv[2], sys.argv[3]
tok = AutoTokenizer.from_pretrained(folder)
merged = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
adapted = None
if os.path.isdir(os.path.join(folder, "adapter")):
    from peft import PeftModel
    if base.endswith(".gguf"):
        base_model = AutoModelForCausalLM.from_pretrained(os.path.dirname(os.path.abspath(base)), gguf_file=os.path.basename(base), dtype=torch.float32)
    else:
        base_model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base_model, os.path.join(folder, "adapter")).eval()
worst, total, count = 0.0, 0.0, 0
for line in open(data, encoding="utf-8"):
    record = json.loads(line)
    if "messages" in record:
        prompt = tok.apply_chat_template(record["messages"][:-1], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(record["messages"], tokenize=False)
        full = full[: full.rindex("<|im_end|>") + len("<|im_end|>")]
    else:
        prompt, full = record["prompt"], record["prompt"] + record["completion"] + tok.eos_token
    p = tok(prompt, add_special_tokens=False).input_ids
    ids = torch.tensor([tok(full, add_special_tokens=False).input_ids])
    with torch.no_grad():
        logits = merged(ids).logits[0]
        if adapted is not None:
            worst = max(worst, (adapted(ids).logits[0] - logits).abs().max().item() / logits.abs().max().item())
    logp = torch.log_softmax(logits.double(), -1)
    for i in range(len(p), ids.shape[1]):
        total -= logp[i - 1, ids[0, i]].item()
        count += 1
print(f"transformers on {folder}: loss {total / count:.6f} over {count} scored tokens")
if adapted is not None:
    print(f"merged folder vs base + PEFT adapter: max |Δ logit| / max |logit| = {worst:.2e}")
