#!/usr/bin/env python3
"""Reference token ids from Hugging Face's BertTokenizerFast for the tokenizer tests.

Uses the vocab.txt of all-MiniLM-L6-v2 (committed beside the fixture), once uncased (lower-casing
and accent stripping, as the model) and once cased, on a few hundred varied texts and sentence
pairs, with truncation at several lengths.

usage: python make_tokenizer_fixture.py VOCAB > tokenizer_reference.json   (needs transformers)
"""
import json
import os
import random
import shutil
import sys
import tempfile

from transformers import AutoTokenizer

vocab = sys.argv[1]


def load_tokenizer(lowercase):
    """BertTokenizerFast (the Rust `tokenizers` backend) from a folder holding vocab.txt."""
    folder = tempfile.mkdtemp()
    shutil.copy(vocab, os.path.join(folder, "vocab.txt"))
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({"do_lower_case": lowercase, "tokenizer_class": "BertTokenizerFast", "model_max_length": 512}, f)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "bert"}, f)
    tok = AutoTokenizer.from_pretrained(folder, use_fast=True)
    assert tok.is_fast, "the reference must be the fast (Rust) tokenizer"
    assert tok("Hello")["input_ids"][0] == tok.convert_tokens_to_ids("[CLS]")
    return tok

rng = random.Random(7)

texts = [
    "", " ", "\t\n", "Hello, world!", "HELLO WORLD", "héllo wörld", "Crème brûlée à la française",
    "naïve café résumé", "Ångström Øresund Æsir", "İstanbul", "ß straße STRASSE", "ﬁnance ﬂow",
    "Привет, как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "你好，世界！", "日本語のテキストです。", "한국어 텍스트", "中文English混合text", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ",
    "emoji 😀😃😄 test 👍🏽", "🇩🇪 flag and ❤️ heart", "price: $1,234.56 (approx.)", "3.14159 2.71828 1e-10",
    "phone +1-555-0100 ext. 42", "email me@example.com or http://x.org/a?b=c&d=e", "C++ and C# and F#",
    "don't won't shouldn't y'all", "!!!???...,,,;;;:::", "a--b---c----d", "(((nested))) [[brackets]] {{braces}}",
    "«guillemets» „quotes“ “smart” ‘single’", "under_score snake_case CamelCase", "tab\tseparated\tvalues",
    "line\nbreaks\r\nand\rcarriage", "zero\u200bwidth\u200cjoiners\u200d", "control\u0001chars\u0007here",
    "replacement \ufffd char", "null\u0000byte", "soft\u00adhyphen", "non\u00a0breaking\u00a0space",
    "supercalifragilisticexpialidocious", "pneumonoultramicroscopicsilicovolcanoconiosis",
    "a" * 99, "b" * 100, "c" * 101, "x" * 250 + " short", "antidisestablishmentarianism " * 3,
    "The quick brown fox jumps over the lazy dog.", "Debian GNU/Linux 12 (bookworm) x86_64",
    "libopenblas0-pthread: Optimized BLAS (linear algebra) library", "GPL-2+ or LGPL-2.1+",
    "version 1.2.3-4ubuntu5~bpo11+1", "rm -rf /tmp/* && echo 'done'", "<html><body>tags</body></html>",
    "#hashtag @mention $variable %percent ^caret &amp *star", "~tilde `backtick` |pipe| \\backslash",
    "UPPER lower MiXeD", "numbers123mixed456", "１２３ full-width digits", "Ⅻ roman ⅻ numeral",
    "math ∑∫∂√∞ ≤≥≠", "arrows ← → ↑ ↓ ⇒", "currency € £ ¥ ₹ ₿", "degree 30°C and µm",
    "a.b.c.d e,f,g h;i;j", "end with period.", "...leading dots", "trailing spaces   ", "   leading spaces",
    "multiple     internal     spaces", "Ça va? Où est-ce?", "Þórr and Ðá", "Łódź Gdańsk Kraków",
    "Việt Nam Tiếng Việt", "ﾊﾝｶｸ half-width katakana", "ㄱㄴㄷ jamo", "ǅ digraph ǈ", "ΣΑΣ σας ς",
    "Ⓐ circled ⓑ", "𝐁𝐨𝐥𝐝 math letters", "e\u0301 combining acute", "n\u0303 combining tilde",
    "Zalgo t̷̢e̵x̴t̶", "١٢٣ arabic digits", "Unicode™ ©2024 ®", "½ ¼ ¾ fractions",
]
words = ["data", "model", "train", "the", "of", "GPU", "cpu", "MPI", "rank", "all-reduce", "fine-tune",
         "BERT", "naïve", "größe", "東京", "🙂", "x86_64", "3.5", "e-mail", "O'Reilly", "São", "Zürich",
         "tokenization", "unbelievable", "preprocessing", "façade", "jalapeño", "ÉCOLE", "co-operate"]
while len(texts) < 330:
    n = rng.randint(1, 40)
    texts.append(" ".join(rng.choice(words) for _ in range(n)) + rng.choice(["", ".", "!", "?", " ..."]))

pairs = []
for i in range(40):
    a = texts[rng.randrange(len(texts))]
    b = texts[rng.randrange(len(texts))]
    pairs.append((a, b))
pairs += [("short", "a much longer second sentence " * 10), ("a much longer first sentence " * 10, "short"),
          ("equal length one two", "equal length three four")]


def encode(tok, text, pair, max_length):
    enc = tok(text, pair, truncation=True if max_length else False, max_length=max_length)
    return {"input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]}

# Special tokens written in the text are single tokens (the tokenizer's added tokens match the raw
# text before normalisation, case-sensitively); fill-mask inputs rely on "[MASK]". Kept apart from
# `texts` so that the random cases above stay what they were.
special_texts = [
    "a tool to [MASK] files over the network", "[MASK]", "[MASK][MASK] twice", "x[MASK]y", "[mask] is not special",
    "[ MASK ] neither", "[CLS] and [SEP] in the text", "[PAD][UNK]", "Cases [Mask] [MASK].", "ends with [SEP]",
    "\t[MASK]\n", "[[MASK]]", "naïve [MASK] café", "[MASKED] is a word",
]

cases = []
for lower in (True, False):
    tok = load_tokenizer(lower)
    for t in texts:
        cases.append({"lowercase": lower, "text": t, "max_length": None, **encode(tok, t, None, None)})
    for t in texts[::5]:
        cases.append({"lowercase": lower, "text": t, "max_length": 16, **encode(tok, t, None, 16)})
    for a, b in pairs:
        for ml in (None, 24, 64):
            cases.append({"lowercase": lower, "text": a, "text_pair": b, "max_length": ml, **encode(tok, a, b, ml)})
    for t in special_texts:
        cases.append({"lowercase": lower, "text": t, "max_length": None, **encode(tok, t, None, None)})
    cases.append({"lowercase": lower, "text": "[MASK] one", "text_pair": "two [MASK]", "max_length": None, **encode(tok, "[MASK] one", "two [MASK]", None)})
print(json.dumps({"vocab": "vocab.txt (all-MiniLM-L6-v2)", "cases": cases}, ensure_ascii=False, indent=0))
