"""Learning-rate schedules as transformers computes them, for ScheduleTests.

Run once (needs torch and transformers; not at test time):
    python Tests/fixture-scripts/make_schedule_fixture.py > Tests/Fixtures/schedule_reference.json
"""
import json

import torch
import transformers
from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_linear_schedule_with_warmup, get_polynomial_decay_schedule_with_warmup)

PEAK = 5e-5
cases = []
for warmup, total in [(0, 10), (3, 10), (6, 100), (10, 10), (0, 1)]:
    for kind in ["constant", "linear", "cosine", "polynomial"]:
        if kind == "polynomial" and warmup == total:
            continue  # transformers divides by total - warmup
        for power, lr_end in ([(1.0, 1e-7), (2.0, 1e-6)] if kind == "polynomial" else [(None, None)]):
            optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
            if kind == "constant":
                s = get_constant_schedule_with_warmup(optimizer, warmup)
            elif kind == "linear":
                s = get_linear_schedule_with_warmup(optimizer, warmup, total)
            elif kind == "cosine":
                s = get_cosine_schedule_with_warmup(optimizer, warmup, total)
            else:
                s = get_polynomial_decay_schedule_with_warmup(optimizer, warmup, total, lr_end=lr_end, power=power)
            rates = []
            for _ in range(total):
                rates.append(optimizer.param_groups[0]["lr"])  # the rate the next update uses
                optimizer.step()
                s.step()
            cases.append({"kind": kind, "warmup_steps": warmup, "total_steps": total, "peak": PEAK,
                          "power": power, "lr_end": lr_end, "rates": rates})
print(json.dumps({"transformers": transformers.__version__, "torch": torch.__version__, "cases": cases}, indent=1))
