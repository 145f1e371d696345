#!/usr/bin/env python3
"""SmolLM2-135M-Instruct's tokenizer as transformers builds it from the GGUF file's metadata, and
what it gives for 1,000+ texts and for chat conversations, for DecoderTokenizerTests.

Writes into OUT (Tests/Fixtures/smollm2-tokenizer):
  tokenizer.json    transformers' byte-level BPE of the GGUF (49,152 tokens, 48,900 merges, 17 special tokens)
  chat_template.jinja  the GGUF's chat template
  reference.json    {"texts": [{"text", "ids"}], "chats": [{"messages", "add_generation_prompt", "rendered", "ids"}]}:
                    the hostile texts of hostile_texts.py, code, numbers, emoji, CJK, random mixtures of
                    them (1,200 in all), tokenized without special tokens added; 40 conversations
                    rendered by apply_chat_template and tokenized
usage: python make_smollm2_tokenizer_fixture.py MODEL.gguf OUT     (needs transformers, gguf; launch/fetch-model.sh smollm2-135m-instruct)
"""
import json
import os
import random
import sys

from transformers import AutoTokenizer

gguf_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
folder, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
tok.backend_tokenizer.save(os.path.join(out, "tokenizer.json"))
with open(os.path.join(out, "chat_template.jinja"), "w", encoding="utf-8") as f:
    f.write(tok.chat_template)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hostile_texts import hostile  # noqa: E402

rng = random.Random(24)
fragments = [
    "def main():\n    return 0\n", "    if x == 1:\n\t\treturn None", "x = [i**2 for i in range(10)]", "#include <stdio.h>",
    "SELECT * FROM t WHERE id = 42;", "fn main() { println!(\"hi\"); }", "let total = a + b * 3.5;", "{\"key\": [1, 2, 3]}",
    "12345", "3.14159", "2026-12-05", "1,000,000", "0x1F4A9", "v2.10.3-rc1", "42nd", "1st 2nd 3rd", "100%", "-273.15°C",
    "😀", "🚀✨", "👨‍💻", "🇫🇷", "❤️", "東京", "北京大学", "こんにちは世界", "안녕하세요", "中文标点，句号。", "Ελληνικά", "русский язык",
    "Debian package", "apt-get install", "the quick brown fox", "machine learning", "  double  spaces  ", "\n\n", "\t",
    "don't", "we'll", "O'Neil", "e-mail", "self-contained", "C++", "naïve", "façade", "Zürich", "<|im_start|>", "<|im_end|>",
    "<|endoftext|>", "<file_sep>", "<|im_start", "im_end|>",
]
texts = list(hostile)
texts += fragments
while len(texts) < 1200:
    n = rng.randint(1, 6)
    joiners = ["", " ", "\n", "  ", ", "]
    texts.append("".join(rng.choice(fragments) + rng.choice(joiners) for _ in range(n)))

cases = [{"text": t, "ids": tok(t, add_special_tokens=False).input_ids} for t in texts]

roles_texts = ["Which section is package vim in?", "editors", "Describe package curl in one line.",
               "command line tool for transferring data with URL syntax", "What is 12 * 7?", "84", "Say hi in Japanese.", "こんにちは 😀",
               "Write a Python one-liner.", "print(sum(range(10)))", "   leading spaces", "trailing newline\n"]
chats = []
for i in range(40):
    messages = []
    if i % 4 == 1:
        messages.append({"role": "system", "content": rng.choice(["You are terse.", "Answer in one word.", "Be helpful."])})
    for turn in range(rng.randint(1, 3)):
        messages.append({"role": "user", "content": rng.choice(roles_texts)})
        if not (i % 3 == 0 and turn == 0):
            messages.append({"role": "assistant", "content": rng.choice(roles_texts)})
    add_generation_prompt = messages[-1]["role"] == "user"
    rendered = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    chats.append({"messages": messages, "add_generation_prompt": add_generation_prompt, "rendered": rendered,
                  "ids": tok(rendered, add_special_tokens=False).input_ids})

with open(os.path.join(out, "reference.json"), "w", encoding="utf-8") as f:
    json.dump({"texts": cases, "chats": chats}, f, ensure_ascii=False)
print(f"{len(cases)} texts, {len(chats)} chats -> {out}")
