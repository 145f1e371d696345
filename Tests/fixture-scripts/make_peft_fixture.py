"""What PEFT writes for a LoRA adapter on the tiny BertForSequenceClassification, for ExportFormatTests.

Run once (needs torch, transformers, peft; not at test time):
    python Tests/fixture-scripts/make_peft_fixture.py > Tests/Fixtures/peft_adapter_reference.json
The adapter: r 4, lora_alpha 8, lora_dropout 0.1, targets query,key,value,attention.output.dense,intermediate.dense
(a list: PEFT matches it by suffix), the classifier and pooler as modules_to_save.
"""
import json, os, sys, tempfile

import peft
import torch
from safetensors import safe_open
from transformers import AutoModelForSequenceClassification

root = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "tiny-bert", "classifier")
model = AutoModelForSequenceClassification.from_pretrained(root)
config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, task_type="SEQ_CLS",
                         target_modules=["query", "key", "value", "attention.output.dense", "intermediate.dense"],
                         modules_to_save=["classifier", "pooler"])
wrapped = peft.get_peft_model(model, config)
with tempfile.TemporaryDirectory() as out:
    wrapped.save_pretrained(out)
    saved = json.load(open(os.path.join(out, "adapter_config.json")))
    with safe_open(os.path.join(out, "adapter_model.safetensors"), "pt") as f:
        tensors = {k: list(f.get_tensor(k).shape) for k in f.keys()}
print(json.dumps({"peft": peft.__version__, "torch": torch.__version__, "adapter_config": saved, "tensors": tensors},
                 indent=1, sort_keys=True, default=str))
