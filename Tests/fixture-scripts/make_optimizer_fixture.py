#!/usr/bin/env python3
"""Reference trajectories of torch.optim.AdamW and torch.optim.SGD for the optimizer tests.

Two parameter tensors: `weight` (weight decay applied) and `bias` (no weight decay, a separate
param group, as transformers does). Five steps with fixed pseudo-random gradients; the parameters
after every step are recorded in float32.

usage: python make_optimizer_fixture.py > ../Fixtures/optimizer_reference.json
(needs torch; the tests only read the JSON)
"""
import json
import torch

torch.manual_seed(0)
weight0 = torch.randn(3, 5, dtype=torch.float32)
bias0 = torch.randn(3, dtype=torch.float32)
grads = [(torch.randn(3, 5) * (0.1 + i), torch.randn(3) * (1.0 / (i + 1))) for i in range(5)]


def run(make):
    weight = torch.nn.Parameter(weight0.clone())
    bias = torch.nn.Parameter(bias0.clone())
    opt = make(weight, bias)
    trajectory = []
    for gw, gb in grads:
        weight.grad = gw.clone()
        bias.grad = gb.clone()
        opt.step()
        trajectory.append({"weight": weight.detach().flatten().tolist(), "bias": bias.detach().flatten().tolist()})
    return trajectory


cases = {
    "adamw": {
        "settings": {"lr": 0.01, "weight_decay": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8},
        "trajectory": run(lambda w, b: torch.optim.AdamW(
            [{"params": [w], "weight_decay": 0.1}, {"params": [b], "weight_decay": 0.0}],
            lr=0.01, betas=(0.9, 0.999), eps=1e-8, foreach=False)),
    },
    "sgd": {
        "settings": {"lr": 0.05, "weight_decay": 0.01, "momentum": 0.9},
        "trajectory": run(lambda w, b: torch.optim.SGD(
            [{"params": [w], "weight_decay": 0.01}, {"params": [b], "weight_decay": 0.0}],
            lr=0.05, momentum=0.9, foreach=False)),
    },
}
print(json.dumps({
    "torch_version": torch.__version__,
    "weight0": weight0.flatten().tolist(), "bias0": bias0.flatten().tolist(),
    "grads": [{"weight": gw.flatten().tolist(), "bias": gb.flatten().tolist()} for gw, gb in grads],
    "cases": cases,
}, indent=1))
