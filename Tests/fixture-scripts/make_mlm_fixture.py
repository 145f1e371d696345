#!/usr/bin/env python3
"""Golden values of masked-language modelling on the tiny BERT, from transformers' BertForMaskedLM.

Reads Tests/Fixtures/tiny-bert/base (the encoder of make_bert_fixtures.py) and writes into it:
  mlm/                     a BertForMaskedLM folder: the base encoder plus a random MLM head
                           (cls.predictions.*, decoder tied to the word embeddings)
  mlm_inputs.json          the 4 sequences of inputs.json with masked positions: the ids fed to the
                           model (80/10/10 applied by hand), the positions (per sequence) and targets
  golden_mlm.safetensors   logits at the masked positions [M, V], the summed cross-entropy over
                           them ("loss"), and the gradient of that loss for EVERY parameter
Dropout is off (eval mode); gradients still flow.

usage: python make_mlm_fixture.py Tests/Fixtures/tiny-bert   (needs torch, transformers)
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForMaskedLM

out = sys.argv[1]
torch.manual_seed(3)
base = os.path.join(out, "base")
config = BertConfig.from_pretrained(base)
model = BertForMaskedLM.from_pretrained(base, config=config)  # the head is freshly initialised
with torch.no_grad():
    for name, p in model.named_parameters():
        if name.startswith("cls."):
            p.add_(torch.randn_like(p) * 0.1)  # non-trivial head values, so every gradient is checked
model.eval()
assert model.cls.predictions.decoder.weight is model.bert.embeddings.word_embeddings.weight

folder = os.path.join(out, "mlm")
model.save_pretrained(folder, safe_serialization=True)
for name in ("vocab.txt", "tokenizer_config.json"):
    shutil.copy(os.path.join(base, name), os.path.join(folder, name))

inputs = json.load(open(os.path.join(out, "inputs.json")))
MASK = 4
# (sequence, position, replacement): [MASK], a random token, or the token itself (kept).
chosen = [(0, 1, MASK), (0, 3, None), (1, 2, MASK), (1, 6, 37), (1, 7, MASK), (2, 1, MASK), (3, 1, 50), (3, 4, MASK),
          (3, 8, MASK), (3, 10, None)]
sequences = [list(s) for s in inputs["input_ids"]]
targets = []
for s, position, replacement in chosen:
    targets.append(sequences[s][position])
    if replacement is not None:
        sequences[s][position] = replacement
T = max(map(len, sequences))
input_ids = torch.tensor([s + [0] * (T - len(s)) for s in sequences])
token_type_ids = torch.tensor([t + [0] * (T - len(t)) for t in inputs["token_type_ids"]])
attention_mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in sequences])
labels = torch.full_like(input_ids, -100)
for (s, position, _), target in zip(chosen, targets):
    labels[s, position] = target
with open(os.path.join(out, "mlm_inputs.json"), "w") as f:
    json.dump({"input_ids": sequences, "token_type_ids": inputs["token_type_ids"],
               "masked": [[s, p] for s, p, _ in chosen], "targets": targets}, f)

logits = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits
masked_logits = torch.stack([logits[s, p] for s, p, _ in chosen])
loss = torch.nn.functional.cross_entropy(masked_logits, torch.tensor(targets), reduction="sum")
# transformers' own loss is the mean over the labelled positions: the same up to the count.
mean = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask, labels=labels).loss
assert torch.allclose(mean * len(chosen), loss, rtol=1e-5), (mean, loss)
loss.backward()
tensors = {"logits": masked_logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
for name, p in model.named_parameters():
    if p.grad is not None:
        tensors["grad." + name] = p.grad.detach().contiguous()
save_file(tensors, os.path.join(out, "golden_mlm.safetensors"))
print("wrote", folder, "and golden_mlm.safetensors:", sorted(k for k in tensors if k.startswith("grad.cls")))
