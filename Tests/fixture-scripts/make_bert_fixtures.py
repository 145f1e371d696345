#!/usr/bin/env python3
"""Golden values of a tiny random BERT from PyTorch/transformers, for the encoder tests.

Writes into OUT (Tests/Fixtures/tiny-bert):
  base/            a BertModel folder (config.json, model.safetensors, vocab.txt)
  classifier/      a BertForSequenceClassification folder (3 labels) sharing the base's encoder
  inputs.json      a batch of 4 sequences of mixed lengths, two of them sentence pairs, and labels
  golden_cls.safetensors   classifier (CLS pooler + head): logits, summed cross-entropy loss,
                           and the gradient of that loss for EVERY parameter ("grad.<name>")
  golden_mean.safetensors  base encoder + masked mean pooling + a linear head (weights included
                           as "head.weight"/"head.bias"): logits, loss, every gradient
  export_reference.json    what transformers and sentence-transformers write for such models:
                           files, tensor names and shapes, config fields
Dropout is off (eval mode); gradients still flow.

usage: python make_bert_fixtures.py OUT   (needs torch, transformers, sentence-transformers)
"""
import json
import os
import struct
import sys
import tempfile

import torch
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel

out = sys.argv[1]
torch.manual_seed(0)

words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"]
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"w{i}" for i in range(120 - 5 - len(words))]
config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                    intermediate_size=64, max_position_embeddings=40, type_vocab_size=2, hidden_act="gelu",
                    layer_norm_eps=1e-12, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                    id2label={0: "neg", 1: "neu", 2: "pos"}, label2id={"neg": 0, "neu": 1, "pos": 2})

classifier = BertForSequenceClassification(config)
# Non-trivial LayerNorm and bias values, so their gradients are checked too.
with torch.no_grad():
    for name, p in classifier.named_parameters():
        if "LayerNorm" in name or name.endswith("bias"):
            p.add_(torch.randn_like(p) * 0.1)
classifier.eval()


def save_folder(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": True, "tokenizer_class": "BertTokenizer"}, f)


save_folder(classifier, os.path.join(out, "classifier"))
base = BertModel(BertConfig(**{k: v for k, v in config.to_dict().items() if k not in ("id2label", "label2id")}))
base.load_state_dict(classifier.bert.state_dict())
base.eval()
save_folder(base, os.path.join(out, "base"))

# A batch: lengths 5, 9, 3, 12; sequences 1 and 3 are sentence pairs.
g = torch.Generator().manual_seed(1)
sequences, types = [], []
for length, pair_at in ((5, None), (9, 5), (3, None), (12, 7)):
    ids = [2] + torch.randint(5, len(vocab), (length - 2,), generator=g).tolist() + [3]
    tt = [0] * length
    if pair_at is not None:
        ids[pair_at - 1] = 3  # [SEP] between the two sentences
        tt = [0] * pair_at + [1] * (length - pair_at)
    sequences.append(ids)
    types.append(tt)
labels = [2, 0, 1, 2]
T = max(map(len, sequences))
input_ids = torch.tensor([s + [0] * (T - len(s)) for s in sequences])
token_type_ids = torch.tensor([t + [0] * (T - len(t)) for t in types])
attention_mask = torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in sequences])
with open(os.path.join(out, "inputs.json"), "w") as f:
    json.dump({"input_ids": sequences, "token_type_ids": types, "labels": labels}, f)
target = torch.tensor(labels)


def golden(path, named_parameters, logits, extra):
    loss = torch.nn.functional.cross_entropy(logits, target, reduction="sum")
    loss.backward()
    tensors = {"logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
    for name, p in named_parameters:
        if p.grad is not None:  # the base's pooler takes no part in mean pooling
            tensors["grad." + name] = p.grad.detach().contiguous()
    tensors.update(extra)
    save_file(tensors, path)


logits = classifier(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).logits
golden(os.path.join(out, "golden_cls.safetensors"), classifier.named_parameters(), logits, {})

head = torch.nn.Linear(32, 3)
hidden = base(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=attention_mask).last_hidden_state
mask = attention_mask.unsqueeze(-1).float()
pooled = (hidden * mask).sum(1) / mask.sum(1)
logits = head(pooled)
golden(os.path.join(out, "golden_mean.safetensors"),
       list(base.named_parameters()) + [("head.weight", head.weight), ("head.bias", head.bias)], logits,
       {"head.weight": head.weight.detach().clone(), "head.bias": head.bias.detach().clone()})


# What transformers / sentence-transformers write: files, tensor names and shapes, config fields.
def describe_folder(folder):
    files = {}
    for root, _, names in os.walk(folder):
        for n in names:
            rel = os.path.relpath(os.path.join(root, n), folder)
            entry = {}
            if n.endswith(".safetensors"):
                with open(os.path.join(root, n), "rb") as f:
                    size = struct.unpack("<Q", f.read(8))[0]
                    header = json.loads(f.read(size))
                entry["tensors"] = {k: v["shape"] for k, v in header.items() if k != "__metadata__"}
            elif n.endswith(".json"):
                with open(os.path.join(root, n)) as f:
                    entry["json"] = json.load(f)
            files[rel] = entry
    return files


from sentence_transformers import SentenceTransformer, models  # noqa: E402

reference = {}
with tempfile.TemporaryDirectory() as d:
    classifier.save_pretrained(d, safe_serialization=True)
    reference["transformers_sequence_classification"] = describe_folder(d)
with tempfile.TemporaryDirectory() as d:
    transformer = models.Transformer(os.path.join(out, "base"))
    pooling = models.Pooling(32, pooling_mode="mean")
    dense = models.Dense(32, 3, activation_function=torch.nn.Identity())
    SentenceTransformer(modules=[transformer, pooling, dense]).save(d)
    reference["sentence_transformers_mean_dense"] = describe_folder(d)
with open(os.path.join(out, "export_reference.json"), "w") as f:
    json.dump(reference, f, indent=1, sort_keys=True)
print("wrote", out)
