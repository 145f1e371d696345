#!/usr/bin/env python3
"""transformers' outputs of a GGUF decoder on 50 prompts, for DecoderReferenceTests (launch/check-decoder.sh).

transformers (with the gguf package) dequantizes the GGUF's weights to float32 and builds a
LlamaForCausalLM; its tokenizer comes from the GGUF metadata. Writes OUT/reference.safetensors:
  ids.<i>     int64 [L_i]       the prompt's tokens (chat-formatted for every third prompt)
  logits.<i>  float32 [L_i, V]  the logits at every position
  greedy.<i>  int64 [32]        generate(do_sample=False, max_new_tokens=32) continuation (EOS may end it early)
usage: python decoder_reference.py MODEL.gguf OUT     (needs torch, transformers, gguf)
"""
import os
import sys
import time

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer

gguf_path, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
folder, name = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32).eval()
prompts = [
    "The capital of France is", "def fibonacci(n):\n    if n < 2:\n        return n", "Debian is a free operating system",
    "In 1969, Neil Armstrong", "The quick brown fox jumps over", "Photosynthesis converts light energy into",
    "SELECT name, section FROM packages WHERE", "import numpy as np\nx = np.arange(10)", "A haiku about winter:\n",
    "The package 'coreutils' provides", "12345 + 67890 =", "Machine learning on CPU clusters",
    "東京は日本の首都です。", "Emoji test: 🙂🚀 are", "Once upon a time, in a small village,",
    "apt-get install -y libopenblas-dev", "The mitochondria is the", "Translate to French: Good morning",
    "int main(void) {\n    printf(", "The derivative of x^2 is", "Water boils at 100 degrees",
    "List three prime numbers:", "Rust's borrow checker ensures", "The year 2026 will be remembered for",
    "MPI_Allreduce sums a buffer across", "Gradient descent updates the weights by", "A good unit test should",
    "Linux kernel modules can be loaded with", "The Eiffel Tower is located in", "JSON stands for",
    "To make a cup of tea, first", "Shakespeare wrote", "The speed of light is approximately",
    "git commit -m \"", "An apple a day keeps", "The largest planet in our solar system is",
    "for i in range(3):\n    print(i)", "Bonjour, je m'appelle", "The Pythagorean theorem states that",
    "HTTP status code 404 means", "Swift is a programming language developed by", "The moon orbits",
    "In statistics, the median is", "A byte has", "Paris, London and Berlin are",
    "Fine-tuning a language model means", "The function returns None when", "Numbers: 3.14159, 2.71828,",
    "What is the boiling point of water?", "Describe the package vim in one line.",
]
tensors = {}
started = time.time()
for i, prompt in enumerate(prompts):
    if i % 3 == 2:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    else:
        text = prompt
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        logits = model(ids).logits[0]
        greedy = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=32)[0, ids.shape[1]:]
    tensors[f"ids.{i}"] = ids[0].contiguous()
    tensors[f"logits.{i}"] = logits.float().contiguous()
    tensors[f"greedy.{i}"] = greedy.contiguous()
save_file(tensors, os.path.join(out, "reference.safetensors"))
print(f"decoder_reference: {len(prompts)} prompts in {time.time() - started:.1f} s -> {out}/reference.safetensors")
print("greedy 0:", repr(tokenizer.decode(tensors["greedy.0"])))
