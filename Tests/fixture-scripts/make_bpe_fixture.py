#!/usr/bin/env python3
"""A byte-level BPE tokenizer.json (RoBERTa's kind: GPT-2 pre-tokenizer regex, merges by rank,
RobertaProcessing, <mask> with lstrip) trained on Debian package descriptions, and the token ids
Hugging Face `tokenizers` gives for 1,000+ texts: the descriptions of a held-out split plus
hostile ones (emoji, CJK, combining marks, control characters, 200-character words, whitespace
runs, special tokens written in the text), alone, as pairs, and truncated.

usage: python make_bpe_fixture.py OUT_FOLDER TRAIN.jsonl HELDOUT.jsonl...      (needs `tokenizers` only)
       (launch/make-debian-dataset.sh's train.jsonl, then its valid.jsonl and test.jsonl)
Writes OUT_FOLDER/tokenizer.json and OUT_FOLDER/bpe_reference.json.
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
hostile = [
    "", " ", "  ", "\t\n", "\n\n\n", "a  b", "a   b   c", "trailing   ", "   leading", "tab\tand\nnewline\r\nand\rcr",
    "Hello, world!", "HELLO WORLD", "don't won't I'm you're we've they'll he'd it's", "DON'T 'S 'T 's't", "O'Reilly's",
    "héllo wörld", "naïve café résumé", "e\u0301 combining acute", "n\u0303 and a\u0308\u0301 stacked", "Zalgo t̷̢e̵x̴t̶",
    "Привет, как дела?", "Γειά σου Κόσμε", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया", "你好，世界！",
    "日本語のテキストです。", "한국어 텍스트", "中文English混合text", "ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ",
    "emoji 😀😃😄 test 👍🏽", "🇩🇪 flag and ❤️ heart", "family 👨‍👩‍👧‍👦 zwj", "price: $1,234.56 (approx.)",
    "3.14159 2.71828 1e-10", "12345678901234567890", "١٢٣ arabic digits", "Ⅻ roman ⅻ numeral", "½ ¼ ¾ fractions",
    "email me@example.com or http://x.org/a?b=c&d=e", "C++ and C# and F#", "!!!???...,,,;;;:::", "a--b---c----d",
    "(((nested))) [[brackets]] {{braces}}", "«guillemets» „quotes“ “smart” ‘single’", "under_score snake_case CamelCase",
    "zero\u200bwidth\u200cjoiners\u200d", "control\u0001chars\u0007here\u001f", "replacement \ufffd char", "null\u0000byte",
    "soft\u00adhyphen", "non\u00a0breaking\u00a0space", "ideographic\u3000space", "em\u2003space", "line\u2028separator",
    "a" * 200, "xy" * 100 + " then words", "antidisestablishmentarianism " * 4, "supercalifragilisticexpialidocious",
    "def f(x):\n    return x ** 2  # square\n", "for (int i = 0; i < n; ++i) { sum += a[i]; }", "rm -rf /tmp/* && echo 'done'",
    "<html><body>tags</body></html>", "#hashtag @mention $variable %percent ^caret &amp *star", "~tilde `backtick` |pipe| \\backslash",
    "a tool to <mask> files", "<mask>", "<mask><mask> twice", "x<mask>y", "  <mask> after spaces", "<MASK> is not special",
    "<s> and </s> in the text", "<pad><unk>", "ends with </s>", "\t<mask>\n", "<<mask>>", "<mask >",
    "Debian GNU/Linux 12 (bookworm) x86_64", "libopenblas0-pthread: Optimized BLAS (linear algebra) library",
    "version 1.2.3-4ubuntu5~bpo11+1", "GPL-2+ or LGPL-2.1+", "𝐁𝐨𝐥𝐝 math letters", "Ⓐ circled ⓑ", "ǅ digraph ǈ",
]
descriptions = [t for path in heldout_paths for t in texts_of(path)]
rng.shuffle(descriptions)
texts = hostile + descriptions[:1000]


def case(text, pair=None, max_length=None):
    if max_length:
        tok.enable_truncation(max_length=max_length, strategy="longest_first")
    else:
        tok.no_truncation()
    enc = tok.encode(text, pair)
    c = {"text": text, "max_length": max_length, "input_ids": enc.ids}
    if pair is not None:
        c["text_pair"] = pair
    return c


cases = [case(t) for t in texts]
cases += [case(t, max_length=ml) for t in texts[::7] for ml in (8, 64)]
for _ in range(120):
    a, b = rng.choice(texts), rng.choice(texts)
    cases += [case(a, b), case(a, b, max_length=rng.choice([12, 32, 128]))]
cases += [case("short", "a much longer second sentence " * 10, 24), case("a much longer first sentence " * 10, "short", 24),
          case("<mask> one", "two <mask>")]
with open(os.path.join(out, "bpe_reference.json"), "w", encoding="utf-8") as f:
    json.dump({"tokenizers": tokenizers.__version__, "texts": len(texts), "cases": cases}, f, ensure_ascii=False, indent=0)
print(f"{len(cases)} cases over {len(texts)} texts", file=sys.stderr)
