"""Hugging Face tokenizers' throughput on one thread (RAYON_NUM_THREADS=1): encode_batch over the
non-blank lines of a file, without special tokens, padding or truncation (launch/data-scale.sh).
usage: RAYON_NUM_THREADS=1 python3 launch/hf_tokenize_rate.py TOKENIZER_JSON FILE"""
import sys
import time

from tokenizers import Tokenizer

tokenizer = Tokenizer.from_file(sys.argv[1])
tokenizer.no_padding()
tokenizer.no_truncation()
with open(sys.argv[2], encoding="utf-8") as f:
    lines = [line for line in f.read().split("\n") if line.strip()]
size = sum(len(line.encode()) + 1 for line in lines)
start = time.perf_counter()
tokens = 0
for i in range(0, len(lines), 10000):
    tokens += sum(len(e.ids) for e in tokenizer.encode_batch(lines[i:i + 10000], add_special_tokens=False))
seconds = time.perf_counter() - start
print(f"Hugging Face tokenizers {__import__('tokenizers').__version__} encode_batch, 1 thread: {seconds:.1f} s "
      f"({size / 1e6 / seconds:.1f} MB/s), {tokens} tokens")
