#!/usr/bin/env python3
"""Fixtures of contrastive sentence-embedding training (train --task embedding), from
sentence-transformers 6 on the tiny sentence-transformers folder of make_st_dense_fixture.py:

  OUT/train.jsonl, OUT/valid.jsonl   (anchor, positive, negative) texts of the tiny vocabulary: the
                 positive shares the anchor's words, the negative is another row's positive
  OUT/reference.json
    "losses": MultipleNegativesRankingLoss (scale 20, cosine) on random embeddings [3 columns, 6, 8]
              (anchors, positives, negatives): the mean loss and its gradient w.r.t. every
              embedding, plain and symmetric (directions query_to_doc + doc_to_query, per_direction)
    "batch_loss": the loss of the whole of train.jsonl as one batch through the model (no dropout,
              max_seq_length 40), plain and symmetric
    "retrieval": InformationRetrievalEvaluator on valid.jsonl (queries: the anchors; corpus: the
              positives and negatives, ids "%09d" in order of first appearance; relevant: the positive)

usage: python make_contrastive_fixture.py ST_DENSE_MODEL OUT   (needs torch, sentence-transformers)
"""
import json
import os
import random
import sys

import torch
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

model_folder, out = sys.argv[1], sys.argv[2]
words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad"] + ["w%d" % i for i in range(60)]


def rows(count, seed):
    rng = random.Random(seed)
    made = []
    for _ in range(count):
        anchor = rng.sample(words, rng.randint(3, 6))
        positive = anchor[:] + rng.sample(words, rng.randint(2, 8))
        rng.shuffle(positive)
        made.append({"anchor": " ".join(anchor), "positive": " ".join(positive)})
    for i, row in enumerate(made):
        row["negative"] = made[(i + 1 + rng.randrange(count - 1)) % count]["positive"]
    return made


os.makedirs(out, exist_ok=True)
data = {"train": rows(48, 1), "valid": rows(24, 2)}
for split, made in data.items():
    with open(os.path.join(out, split + ".jsonl"), "w") as f:
        for row in made:
            f.write(json.dumps(row) + "\n")

model = SentenceTransformer(model_folder, device="cpu")
model.max_seq_length = 40
model.eval()
reference = {"losses": {}, "batch_loss": {}}
symmetric = dict(directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction")
torch.manual_seed(5)
embeddings = torch.randn(3, 6, 8, dtype=torch.float64)
for name, options in (("plain", {}), ("symmetric", symmetric)):
    loss_fn = MultipleNegativesRankingLoss(model, scale=20.0, **options)
    e = embeddings.clone().requires_grad_(True)
    loss = loss_fn.compute_loss_from_embeddings([e[0], e[1], e[2]], None)
    loss.backward()
    reference["losses"][name] = {"loss": loss.item(), "gradient": e.grad.flatten().tolist()}
    with torch.no_grad():
        columns = [[r[k] for r in data["train"]] for k in ("anchor", "positive", "negative")]
        batch = [model.encode(c, convert_to_tensor=True, batch_size=64, normalize_embeddings=False) for c in columns]
        reference["batch_loss"][name] = loss_fn.compute_loss_from_embeddings(batch, None).item()
reference["embeddings"] = embeddings.flatten().tolist()

queries, corpus, relevant, query_of, doc_of = {}, {}, {}, {}, {}
for r in data["valid"]:
    for k in ("positive", "negative"):
        if r[k] not in doc_of:
            doc_of[r[k]] = "%09d" % len(doc_of)
            corpus[doc_of[r[k]]] = r[k]
    if r["anchor"] not in query_of:
        query_of[r["anchor"]] = "q%d" % len(query_of)
        queries[query_of[r["anchor"]]] = r["anchor"]
    relevant.setdefault(query_of[r["anchor"]], set()).add(doc_of[r["positive"]])
evaluator = InformationRetrievalEvaluator(queries, corpus, relevant, name="valid", show_progress_bar=False, accuracy_at_k=[1, 3, 5, 10],
                                          precision_recall_at_k=[1, 3, 5, 10], mrr_at_k=[10], ndcg_at_k=[10], map_at_k=[100])
scores = evaluator(model)
reference["retrieval"] = {k.replace("valid_cosine_", ""): v for k, v in scores.items() if k.startswith("valid_cosine_")}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(reference, f, indent=1)
print("wrote", out, reference["batch_loss"], reference["retrieval"])
