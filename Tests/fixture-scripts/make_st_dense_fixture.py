#!/usr/bin/env python3
"""A sentence-transformers folder with a Dense module between the pooling and Normalize (as LaBSE,
GTR and other sentence-transformers models ship), made from the tiny random BERT of the golden
tests, and PyTorch's values for it:

  OUT/model/       SentenceTransformer(Transformer(tiny-bert/base), mean Pooling, Dense(32 -> 16, Tanh), Normalize)
  OUT/embeddings.json   token ids of the BERT golden inputs and sentence-transformers' embeddings of them
  OUT/cls-model/, OUT/cls_embeddings.json   the same encoder with CLS-token pooling and Normalize, and its embeddings
  OUT/golden_dense.safetensors  the same batch through Transformer, Pooling, Dense and a linear
                   classifier (16 -> 3, "head.*"): logits, summed cross-entropy and every gradient
                   (the encoder under its BertModel names, the Dense layer as "projection.*")

usage: python make_st_dense_fixture.py TINY_BERT_FOLDER OUT   (needs torch, sentence-transformers)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

tiny, out = sys.argv[1], sys.argv[2]
torch.manual_seed(3)
transformer = Transformer(os.path.join(tiny, "base"), max_seq_length=40)
dense = Dense(32, 16, activation_function=torch.nn.Tanh())
with torch.no_grad():
    dense.linear.bias.add_(torch.randn_like(dense.linear.bias) * 0.1)
model = SentenceTransformer(modules=[transformer, Pooling(32, pooling_mode="mean"), dense, Normalize()], device="cpu")
model.save(os.path.join(out, "model"))
os.remove(os.path.join(out, "model", "README.md"))  # a generated model card: not needed by the tests
model.eval()

inputs = json.load(open(os.path.join(tiny, "inputs.json")))
ids, types, labels = inputs["input_ids"], inputs["token_type_ids"], inputs["labels"]
T = max(map(len, ids))
features = {"input_ids": torch.tensor([s + [0] * (T - len(s)) for s in ids]),
            "token_type_ids": torch.tensor([s + [0] * (T - len(s)) for s in types]),
            "attention_mask": torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in ids])}
with torch.no_grad():
    embeddings = model(dict(features))["sentence_embedding"]
with open(os.path.join(out, "embeddings.json"), "w") as f:
    json.dump({"input_ids": ids, "token_type_ids": types, "labels": labels, "embeddings": embeddings.tolist()}, f)

# Transformer -> Pooling -> Dense -> linear head (no Normalize: the classifier reads the Dense output).
head = torch.nn.Linear(16, 3)
x = dict(features)
for module in list(model)[:3]:
    x = module(x)
logits = head(x["sentence_embedding"])
loss = torch.nn.functional.cross_entropy(logits, torch.tensor(labels), reduction="sum")
loss.backward()
tensors = {"logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1),
           "head.weight": head.weight.detach().clone(), "head.bias": head.bias.detach().clone()}
named = [(n, p) for n, p in model[0].auto_model.named_parameters()] + \
        [("projection.weight", dense.linear.weight), ("projection.bias", dense.linear.bias), ("head.weight", head.weight), ("head.bias", head.bias)]
for name, p in named:
    if p.grad is not None:
        tensors["grad." + name] = p.grad.detach().contiguous()
save_file(tensors, os.path.join(out, "golden_dense.safetensors"))
print("wrote", out)

# The same encoder as a CLS-pooling sentence-transformers model (Transformer, Pooling cls,
# Normalize), as BGE-style models ship: the embedding is the first token's hidden state.
cls_model = SentenceTransformer(modules=[Transformer(os.path.join(tiny, "base"), max_seq_length=40), Pooling(32, pooling_mode="cls"),
                                         Normalize()], device="cpu")
cls_model.save(os.path.join(out, "cls-model"))
os.remove(os.path.join(out, "cls-model", "README.md"))
cls_model.eval()
with torch.no_grad():
    cls_embeddings = cls_model(dict(features))["sentence_embedding"]
with open(os.path.join(out, "cls_embeddings.json"), "w") as f:
    json.dump({"input_ids": ids, "token_type_ids": types, "labels": labels, "embeddings": cls_embeddings.tolist()}, f)
