#!/usr/bin/env python3
"""A byte-level BPE tokenizer.json (RoBERTa's kind: GPT-2 pre-tokenizer regex, merges by rank,
RobertaProcessing, <mask> with lstrip) trained on Debian package descriptions, and the token ids
Hugging Face `tokenizers` gives for 1,000+ texts: the descriptions of a held-out split plus
hostile ones (emoji, CJK, combining marks, control characters, 200-character words, whitespace
runs, special tokens written in the text), alone, as pairs, and truncated.

usage: python make_bpe_fixture.py OUT_FOLDER TRAIN.jsonl HELDOUT.jsonl...      (needs `tokenizers` only)
       (launch/make-debian-dataset.sh's train.jsonl, then its valid.jsonl and test.jsonl)
Writes OUT_FOLDER/tokenizer.json and OUT_FOLDER/bpe_reference.json, and the same with
add_prefix_space: OUT_FOLDER/tokenizer_prefix_space.json and OUT_FOLDER/bpe_prefix_space_reference.json.
"""
import json
import os
import random
import sys

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

out, train_path, heldout_paths = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(out, exist_ok=True)


def texts_of(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(
    vocab_size=2000, min_frequency=2, show_progress=False,
    special_tokens=["<s>", "<pad>", "</s>", "<unk>", AddedToken("<mask>", lstrip=True, special=True)],
    initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
tok.train_from_iterator(texts_of(train_path), trainer)
tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")), ("<s>", tok.token_to_id("<s>")),
                                                  trim_offsets=True, add_prefix_space=False)
tok.save(os.path.join(out, "tokenizer.json"))

rng = random.Random(11)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_texts import hostile, reference_cases  # noqa: E402
descriptions = [t for path in heldout_paths for t in texts_of(path)]
rng.shuffle(descriptions)
texts = hostile + descriptions[:1000]


cases = reference_cases(tok, texts, rng)
with open(os.path.join(out, "bpe_reference.json"), "w", encoding="utf-8") as f:
    json.dump({"tokenizers": tokenizers.__version__, "texts": len(texts), "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"{len(cases)} cases over {len(texts)} texts", file=sys.stderr)

# The same tokenizer with ByteLevel's add_prefix_space (as many RoBERTa-family tokenizer.json files
# have it): every stretch of text between added tokens gets a leading space. Its own random state,
# so the files above stay as they were.
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
tok.save(os.path.join(out, "tokenizer_prefix_space.json"))
cases = reference_cases(tok, texts, random.Random(12))
with open(os.path.join(out, "bpe_prefix_space_reference.json"), "w", encoding="utf-8") as f:
    json.dump({"tokenizers": tokenizers.__version__, "texts": len(texts), "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"prefix space: {len(cases)} cases", file=sys.stderr)
