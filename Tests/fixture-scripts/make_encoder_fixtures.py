#!/usr/bin/env python3
"""Golden values of a tiny random MPNet, RoBERTa or DistilBERT from PyTorch/transformers, for their golden tests.

Writes into OUT (Tests/Fixtures/tiny-mpnet, tiny-roberta, tiny-distilbert):
  base/        an MPNetModel / RobertaModel / DistilBertModel folder (config.json, model.safetensors
               with its pooler if it has one, tokenizer.json). MPNet's tokenizer.json is built as
               all-mpnet-base-v2's (BertNormalizer, BertPreTokenizer, WordPiece, RobertaProcessing,
               <mask> with lstrip; vocab.txt too); DistilBERT's the same with BERT's [CLS]/[SEP]/[MASK]
               and BertProcessing; RoBERTa's is the byte-level BPE of Tests/Fixtures/bpe (trained on
               Debian descriptions)
  classifier/  a ...ForSequenceClassification folder (3 labels) on the base's encoder
  mlm/         a ...ForMaskedLM folder on the base's encoder (lm_head.* / vocab_*, decoder tied)
  inputs.json  4 sequences of lengths 5, 9, 3 and 34 (distances up to 33 reach MPNet's logarithmic
               buckets), two of them pairs (<s> A </s></s> B </s>; DistilBERT [CLS] A [SEP] B [SEP]),
               labels; masked positions and targets for the masked-LM case
  golden_cls.safetensors   classifier: logits, summed cross-entropy, every parameter's gradient
  golden_mean.safetensors  base + masked mean pooling + a linear head ("head.*"): the same
  golden_mlm.safetensors   masked-LM: logits at the masked positions, summed loss, every gradient
  buckets.json  transformers' relative_position_bucket for distances -600..600
Dropout is off (eval mode); gradients still flow.

usage: python make_encoder_fixtures.py mpnet OUT     (needs torch, transformers, tokenizers)
       python make_encoder_fixtures.py distilbert OUT
       python make_encoder_fixtures.py roberta OUT BPE_TOKENIZER_JSON
"""
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, AddedToken
from transformers import (DistilBertConfig, DistilBertForMaskedLM, DistilBertForSequenceClassification, DistilBertModel, MPNetConfig, MPNetForMaskedLM, MPNetForSequenceClassification, MPNetModel, RobertaConfig,
                          RobertaForMaskedLM, RobertaForSequenceClassification, RobertaModel)
from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

family, out = sys.argv[1], sys.argv[2]
torch.manual_seed(0)

shape = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, max_position_embeddings=40,
             hidden_act="gelu", layer_norm_eps=1e-5, hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
             pad_token_id=1, bos_token_id=0, eos_token_id=2)
# The framing ids (first, separator, padding) and the ids of the first ordinary token.
CLS, SEP, PAD, FIRST_WORD = 0, 2, 1, 5
words = ["the", "a", "model", "data", "train", "fast", "slow", "cpu", "mpi", "rank", "sum", "grad", "##s", "##ing"]
if family == "mpnet":
    vocab = ["<s>", "<pad>", "</s>", "<unk>", "[UNK]"] + words + [f"w{i}" for i in range(119 - 5 - len(words))] + ["<mask>"]
    MASK = len(vocab) - 1
    Config, Base, Classifier, MaskedLM = MPNetConfig, MPNetModel, MPNetForSequenceClassification, MPNetForMaskedLM
    config = MPNetConfig(vocab_size=len(vocab), relative_attention_num_buckets=32, **shape)
elif family == "distilbert":
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"w{i}" for i in range(120 - 5 - len(words))]
    CLS, SEP, PAD, MASK = 2, 3, 0, 4
    Config, Base, Classifier, MaskedLM = DistilBertConfig, DistilBertModel, DistilBertForSequenceClassification, DistilBertForMaskedLM
    config = DistilBertConfig(vocab_size=len(vocab), dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=40,
                              activation="gelu", dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.2, pad_token_id=0)
else:
    bpe = json.load(open(sys.argv[3], encoding="utf-8"))
    vocab = sorted(bpe["model"]["vocab"], key=bpe["model"]["vocab"].get)
    MASK = bpe["model"]["vocab"]["<mask>"]
    Config, Base, Classifier, MaskedLM = RobertaConfig, RobertaModel, RobertaForSequenceClassification, RobertaForMaskedLM
    config = RobertaConfig(vocab_size=len(vocab), type_vocab_size=1, **shape)
encoder_of = lambda model: getattr(model, family)  # noqa: E731


def perturb(model, prefixes=None):
    # Non-trivial LayerNorm, bias and relative-bias values, so their gradients are checked too.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if prefixes is not None and not name.startswith(prefixes):
                continue
            if "LayerNorm" in name or "layer_norm" in name or name.endswith("bias") or "relative_attention_bias" in name:
                p.add_(torch.randn_like(p) * 0.1)


def tokenizer_json():
    t = Tokenizer(models.WordPiece({w: i for i, w in enumerate(vocab)}, unk_token="[UNK]", max_input_chars_per_word=100))
    t.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=None, lowercase=True)
    t.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    if family == "distilbert":
        t.post_processor = processors.BertProcessing(("[SEP]", SEP), ("[CLS]", CLS))
        t.add_special_tokens([AddedToken(w, normalized=False, special=True) for w in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")])
        return t
    t.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), trim_offsets=True, add_prefix_space=False)
    t.add_special_tokens([AddedToken(w, normalized=False, special=True) for w in ("<s>", "<pad>", "</s>")])
    t.add_special_tokens([AddedToken("<unk>", normalized=True, special=True), AddedToken("[UNK]", normalized=False, special=True)])
    t.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True)])
    return t


def save_folder(model, folder):
    model.save_pretrained(folder, safe_serialization=True)
    if family != "roberta":
        tokenizer_json().save(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("\n".join(vocab) + "\n")
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"do_lower_case": True, "tokenizer_class": "MPNetTokenizer" if family == "mpnet" else "DistilBertTokenizer",
                       "mask_token": vocab[MASK]}, f)
    else:
        shutil.copy(sys.argv[3], os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "RobertaTokenizer", "mask_token": "<mask>"}, f)


base = Base(config)
perturb(base)
base.eval()
save_folder(base, os.path.join(out, "base"))

labelled = Config(**{**config.to_dict(), "id2label": {0: "neg", 1: "neu", 2: "pos"}, "label2id": {"neg": 0, "neu": 1, "pos": 2}})
classifier = Classifier(labelled)
encoder_of(classifier).load_state_dict(base.state_dict(), strict=False)  # no pooler in the classifier
perturb(classifier, ("classifier.", "pre_classifier."))
classifier.eval()
save_folder(classifier, os.path.join(out, "classifier"))

mlm = MaskedLM(config)
encoder_of(mlm).load_state_dict(base.state_dict(), strict=False)
perturb(mlm, ("lm_head.", "vocab_"))
mlm.eval()
decoder = mlm.vocab_projector if family == "distilbert" else mlm.lm_head.decoder
assert decoder.weight is encoder_of(mlm).embeddings.word_embeddings.weight
save_folder(mlm, os.path.join(out, "mlm"))

# The batch: lengths 5, 9, 3, 34; sequences 1 and 3 are pairs (<s> A </s></s> B </s>; [CLS] A [SEP] B [SEP]).
g = torch.Generator().manual_seed(1)
sequences = []
for length, pair_at in ((5, None), (9, 5), (3, None), (34, 20)):
    ids = [CLS] + torch.randint(FIRST_WORD, len(vocab) - (1 if family == "mpnet" else 0), (length - 2,), generator=g).tolist() + [SEP]
    if pair_at is not None:
        if family == "distilbert":
            ids[pair_at - 1] = SEP
        else:
            ids[pair_at - 2] = SEP
            ids[pair_at - 1] = SEP
    sequences.append(ids)
labels = [2, 0, 1, 2]
masked = [(0, 1, MASK), (0, 3, None), (1, 2, MASK), (1, 6, 37), (2, 1, MASK), (3, 1, 50), (3, 4, MASK), (3, 25, MASK), (3, 30, None)]
mlm_sequences = [list(s) for s in sequences]
targets = []
for s, position, replacement in masked:
    targets.append(mlm_sequences[s][position])
    if replacement is not None:
        mlm_sequences[s][position] = replacement
with open(os.path.join(out, "inputs.json"), "w") as f:
    json.dump({"input_ids": sequences, "labels": labels, "mlm_input_ids": mlm_sequences,
               "masked": [[s, p] for s, p, _ in masked], "targets": targets}, f)


def padded(seqs):
    T = max(map(len, seqs))
    return (torch.tensor([s + [PAD] * (T - len(s)) for s in seqs]),
            torch.tensor([[1] * len(s) + [0] * (T - len(s)) for s in seqs]))


def golden(path, named_parameters, logits, loss, extra):
    loss.backward()
    tensors = {"logits": logits.detach().contiguous(), "loss": loss.detach().reshape(1)}
    for name, p in named_parameters:
        if p.grad is not None:
            tensors["grad." + name] = p.grad.detach().contiguous()
    tensors.update(extra)
    save_file(tensors, path)


target = torch.tensor(labels)
input_ids, attention_mask = padded(sequences)
logits = classifier(input_ids=input_ids, attention_mask=attention_mask).logits
golden(os.path.join(out, "golden_cls.safetensors"), classifier.named_parameters(), logits,
       torch.nn.functional.cross_entropy(logits, target, reduction="sum"), {})

head = torch.nn.Linear(32, 3)
hidden = base(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
mask = attention_mask.unsqueeze(-1).float()
logits = head((hidden * mask).sum(1) / mask.sum(1))
golden(os.path.join(out, "golden_mean.safetensors"), list(base.named_parameters()) + [("head.weight", head.weight), ("head.bias", head.bias)],
       logits, torch.nn.functional.cross_entropy(logits, target, reduction="sum"),
       {"head.weight": head.weight.detach().clone(), "head.bias": head.bias.detach().clone()})

input_ids, attention_mask = padded(mlm_sequences)
all_logits = mlm(input_ids=input_ids, attention_mask=attention_mask).logits
masked_logits = torch.stack([all_logits[s, p] for s, p, _ in masked])
loss = torch.nn.functional.cross_entropy(masked_logits, torch.tensor(targets), reduction="sum")
golden(os.path.join(out, "golden_mlm.safetensors"), mlm.named_parameters(), masked_logits, loss, {})

if family == "mpnet":
    distances = list(range(-600, 601))
    buckets = MPNetEncoder.relative_position_bucket(torch.tensor(distances), num_buckets=32, max_distance=128).tolist()
    with open(os.path.join(out, "buckets.json"), "w") as f:
        json.dump({"relative": distances, "bucket": buckets}, f)
print("wrote", out)
