#!/usr/bin/env python3
"""sentence-transformers' InformationRetrievalEvaluator (version 6) on fixed random embeddings: the
reference for RetrievalMetrics. 60 queries and 400 documents of width 16, 0 to 3 relevant documents
per query (queries without one are not scored), string corpus ids whose order is not the numeric
one, and duplicated documents so that score ties are broken by corpus id.

usage: python make_retrieval_metrics_fixture.py OUT.json     (needs torch, sentence-transformers)
"""
import json
import sys

import numpy as np
import sentence_transformers
import torch
from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
from sentence_transformers.util import cos_sim

rng = np.random.default_rng(5)
Q, C, D = 60, 400, 16
queries = rng.standard_normal((Q, D)).astype(np.float32)
corpus = rng.standard_normal((C, D)).astype(np.float32)
# Documents 1..9 repeat document 0 exactly (the same score under any rounding), so their ranks depend on the ids.
for i in range(1, 10):
    corpus[i] = corpus[0]
# Queries close to their relevant documents, so the metrics are neither 0 nor 1.
relevant = []
for q in range(Q):
    docs = sorted(rng.choice(C, size=int(rng.integers(0, 4)), replace=False).tolist())
    for d in docs:
        queries[q] += 0.6 * corpus[d] / np.linalg.norm(corpus[d]) * np.linalg.norm(queries[q])
    relevant.append(docs)
queries[7] = corpus[0]  # a query whose best match is the tied group
relevant[7] = [3, 250]
corpus_ids = [f"doc{(i * 37) % C}" for i in range(C)]  # distinct ids, order unlike the rows'

evaluator = InformationRetrievalEvaluator(
    queries={f"q{q}": f"query {q}" for q in range(Q)},
    corpus={corpus_ids[i]: f"doc {i}" for i in range(C)},
    relevant_docs={f"q{q}": {corpus_ids[d] for d in relevant[q]} for q in range(Q)},
    score_functions={"cosine": cos_sim}, write_csv=False)
scored = [q for q in range(Q) if relevant[q]]
evaluator.embed_inputs = lambda *args, **kwargs: torch.tensor(queries[scored])
result = evaluator.compute_all_metrics(model=None, corpus_embeddings=torch.tensor(corpus))["cosine"]
with open(sys.argv[1], "w") as f:
    json.dump({"sentence_transformers": sentence_transformers.__version__, "width": D,
               "queries": queries.flatten().tolist(), "corpus": corpus.flatten().tolist(),
               "corpus_ids": corpus_ids, "relevant": relevant,
               "metrics": {kind: {str(k): float(v) for k, v in values.items()} for kind, values in result.items()}}, f)
print({kind: values for kind, values in result.items()})
