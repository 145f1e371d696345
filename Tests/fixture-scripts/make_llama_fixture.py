#!/usr/bin/env python3
"""Golden values of tiny random Llama-architecture causal LMs from transformers, for DecoderGoldenTests.

Writes into OUT (Tests/Fixtures/tiny-llama):
  llama/   a LlamaForCausalLM folder (config.json, model.safetensors, tokenizer.json: a 300-token byte-level
           BPE, tokenizer_config.json with a ChatML chat template): grouped-query attention
           (4 query heads over 2 key/value heads), tied embeddings, rope_theta 10000
  qwen2/   a Qwen2ForCausalLM folder: biases on q, k, v, untied lm_head, 4 heads over 1, rope_theta 1e5
  inputs.json  three documents of 5, 41 and 12 tokens (41 spans two of the kernel's query blocks),
               packed one after another; the scored positions (into the packed tokens) and their
               next-token targets: every position of the first document but its last, the second
               from position 10 on (a "completion"), the third none but positions 3..7
  golden_llama.safetensors, golden_qwen2.safetensors:
           logits [M, V] at the scored positions, the summed cross-entropy "loss" [1], and every
           parameter's gradient of that sum ("grad.<name>"); each document run on its own (no
           padding, positions from 0), in float64 and stored as float32
usage: python make_llama_fixture.py OUT     (needs torch, transformers, safetensors)
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models as token_models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
# A byte-level BPE of 300 tokens (every byte, merges learned on package-like text, SmolLM2's three
# special tokens first) and SmolLM2's ChatML template: the folders are complete decoders that
# finetune-dist trains (the integration tests), not only tensors.
tokenizer = Tokenizer(token_models.BPE())
tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tokenizer.decoder = decoders.ByteLevel()
corpus = ["Which section is package vim in? editors", "Describe package curl in one line. command line tool for transferring data",
          "the package provides a library for data and tools", "GNU compiler collection, shells and editors for the system"] * 20
tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                                           special_tokens=[AddedToken(t, special=True, normalized=False) for t in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]]))
V = tokenizer.get_vocab_size()
CHAT_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a tiny test model<|im_end|>\n' }}{% endif %}"
                 "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
                 "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")
lengths = [5, 41, 12]
documents = [torch.randint(0, V, (n,)).tolist() for n in lengths]
# Scored positions inside each document: the position whose logits predict the next token.
scored_in = [list(range(0, 4)), list(range(10, 40)), list(range(3, 8))]
starts = [0, 5, 46]
positions, targets = [], []
for d, doc in enumerate(documents):
    for i in scored_in[d]:
        positions.append(starts[d] + i)
        targets.append(doc[i + 1])
json.dump({"documents": documents, "positions": positions, "targets": targets}, open(os.path.join(out, "inputs.json"), "w"), indent=1)

shape = dict(vocab_size=V, hidden_size=32, intermediate_size=48, num_hidden_layers=2, max_position_embeddings=64, rms_norm_eps=1e-5,
             initializer_range=0.2, bos_token_id=0, eos_token_id=2)
models = {
    "llama": LlamaForCausalLM(LlamaConfig(num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, tie_word_embeddings=True, **shape)),
    "qwen2": Qwen2ForCausalLM(Qwen2Config(num_attention_heads=4, num_key_value_heads=1, rope_theta=100000.0, tie_word_embeddings=False,
                                          use_sliding_window=False, **shape)),
}
for name, model in models.items():
    # Norm weights away from 1 and biases away from 0, so their gradients are tested.
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "norm" in pname or pname.endswith(".bias"):
                p.add_(0.3 * torch.randn_like(p))
    folder = os.path.join(out, name)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save(os.path.join(folder, "tokenizer.json"))
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
               "chat_template": CHAT_TEMPLATE, "model_max_length": 64}, open(os.path.join(folder, "tokenizer_config.json"), "w"), indent=1)
    model = model.double().eval()
    model.zero_grad()
    logits_all, loss = [], torch.zeros((), dtype=torch.float64)
    for d, doc in enumerate(documents):
        logits = model(torch.tensor([doc])).logits[0]
        rows = torch.tensor(scored_in[d], dtype=torch.long)
        if len(rows):
            picked = logits[rows]
            logits_all.append(picked)
            loss = loss + torch.nn.functional.cross_entropy(picked, torch.tensor([doc[i + 1] for i in scored_in[d]]), reduction="sum")
    loss.backward()
    tensors = {"logits": torch.cat(logits_all).float().contiguous(), "loss": loss.detach().reshape(1).float()}
    for pname, p in model.named_parameters():
        tensors["grad." + pname] = p.grad.float().contiguous()
    save_file(tensors, os.path.join(out, f"golden_{name}.safetensors"))
    print(name, "loss", float(loss), "params", sum(p.numel() for p in model.parameters()))
