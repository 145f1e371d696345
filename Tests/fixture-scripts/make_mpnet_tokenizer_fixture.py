#!/usr/bin/env python3
"""all-mpnet-base-v2's tokenizer.json and the token ids Hugging Face `tokenizers` gives with it
for 1,000+ texts: Debian package descriptions of the held-out splits plus hostile ones (hostile_texts.py
and MPNet's own special tokens written in the text: <mask> with lstrip, <unk> matched after
normalisation, [UNK]), alone, as pairs, and truncated.

usage: python make_mpnet_tokenizer_fixture.py MODEL_DIR OUT_FOLDER HELDOUT.jsonl...   (needs `tokenizers` only)
       MODEL_DIR: models/all-mpnet-base-v2 (launch/fetch-model.sh); HELDOUT: launch/make-debian-dataset.sh's
       valid.jsonl and test.jsonl. Writes OUT_FOLDER/tokenizer.json (a copy) and OUT_FOLDER/reference.json.
"""
import json
import os
import random
import shutil
import sys

import tokenizers
from tokenizers import Tokenizer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_texts import hostile, reference_cases  # noqa: E402

model_dir, out, heldout_paths = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(out, exist_ok=True)
shutil.copy(os.path.join(model_dir, "tokenizer.json"), os.path.join(out, "tokenizer.json"))
tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
tok.no_padding()

mpnet_specials = [
    "<unk> and <UNK> and <Unk>", "[UNK] [unk]", "a <mask> b", "a   <mask>", "<mask>   a", "<mask>.", "x <mask><mask> y",
    "Crème <mask> brûlée", "<s>text</s>", "</s></s>", "<pad> padded", "[MASK] is BERT's", "[CLS] [SEP]",
]


def texts_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


rng = random.Random(13)
descriptions = [t for path in heldout_paths for t in texts_of(path)]
rng.shuffle(descriptions)
texts = hostile + mpnet_specials + descriptions[:1000]


cases = reference_cases(tok, texts, rng)
with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
    json.dump({"tokenizers": tokenizers.__version__, "texts": len(texts), "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"{len(cases)} cases over {len(texts)} texts", file=sys.stderr)
