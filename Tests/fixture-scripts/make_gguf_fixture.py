"""Tests/Fixtures/gguf: a small GGUF file written by the `gguf` package (llama.cpp's Python writer)
with a tensor of each type the reader dequantizes (F32, F16, Q8_0, Q4_0, Q4_1) and metadata of
each kind, and reference.json: the metadata and every tensor dequantized by `gguf.quants`.
usage: python3 Tests/fixture-scripts/make_gguf_fixture.py   (pip install gguf numpy)"""
import json
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

out = os.path.join(os.path.dirname(__file__), "..", "Fixtures", "gguf")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
writer = gguf.GGUFWriter(os.path.join(out, "tiny.gguf"), "llama")
writer.add_uint32("llama.block_count", 2)
writer.add_float32("llama.rope.freq_base", 100000.0)
writer.add_bool("tokenizer.ggml.add_bos_token", False)
writer.add_string("general.name", "tiny test model ünï")
writer.add_array("tokenizer.ggml.tokens", ["<|endoftext|>", "a", "Ġb", "ĊĊ"])
writer.add_array("tokenizer.ggml.token_type", [3, 1, 1, 1])
writer.add_int32("llama.context_length", -7)
writer.add_uint64("llama.vocab_size", 4)
writer.add_float64("test.double", 0.1)

tensors = {}
for name, qtype, shape in [("f32", T.F32, (3, 5)), ("f16", T.F16, (2, 7)), ("q8_0", T.Q8_0, (3, 64)),
                           ("q4_0", T.Q4_0, (2, 64)), ("q4_1", T.Q4_1, (4, 32))]:
    values = rng.standard_normal(shape).astype(np.float32) * 0.5
    if qtype == T.F32:
        writer.add_tensor(name, values)
        tensors[name] = (values, list(shape))
    elif qtype == T.F16:
        writer.add_tensor(name, values.astype(np.float16))
        tensors[name] = (values.astype(np.float16).astype(np.float32), list(shape))
    else:
        q = quants.quantize(values, qtype)
        writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=qtype)
        tensors[name] = (quants.dequantize(q, qtype).astype(np.float32), list(shape))
writer.write_header_to_file()
writer.write_kv_data_to_file()
writer.write_tensors_to_file()
writer.close()

reader = gguf.GGUFReader(os.path.join(out, "tiny.gguf"))
reference = {
    "tensors": {name: {"shape": shape, "values": values.reshape(-1).tolist()} for name, (values, shape) in tensors.items()},
    "types": {t.name: int(t.tensor_type) for t in reader.tensors},
    "metadata": {"llama.block_count": 2, "llama.rope.freq_base": 100000.0, "tokenizer.ggml.add_bos_token": False,
                 "general.name": "tiny test model ünï", "tokenizer.ggml.tokens": ["<|endoftext|>", "a", "Ġb", "ĊĊ"],
                 "tokenizer.ggml.token_type": [3, 1, 1, 1], "llama.context_length": -7, "llama.vocab_size": 4, "test.double": 0.1},
}
with open(os.path.join(out, "reference.json"), "w") as f:
    json.dump(reference, f)
print({t.name: (t.tensor_type.name, list(t.shape)) for t in reader.tensors})
