#!/usr/bin/env python3
"""Makes a small deterministic tabular classification data set (JSON Lines).

Each example has 16 features; its class (a, b, c, d) is decided by a fixed nonlinear rule of the
features, and 8% of the labels are then flipped at random, so a model can learn it well but not
perfectly, and overfits if trained too long: what early stopping is for.

usage: make-tabular-dataset.py OUTDIR [--train N] [--valid N] [--test N] [--seed S]
"""
import argparse
import json
import math
import os
import random

LABELS = ["a", "b", "c", "d"]


def example(rng):
    x = [rng.gauss(0.0, 1.0) for _ in range(16)]
    s1 = x[0] * x[1] + math.sin(2 * x[2]) + 0.5 * x[3]
    s2 = x[4] ** 2 - x[5] + 0.5 * x[6] * x[7] - 1.0
    label = (1 if s1 > 0 else 0) + (2 if s2 > 0 else 0)
    if rng.random() < 0.08:
        label = rng.randrange(4)
    return {"features": [round(v, 5) for v in x], "label": LABELS[label]}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("outdir")
    p.add_argument("--train", type=int, default=4000)
    p.add_argument("--valid", type=int, default=800)
    p.add_argument("--test", type=int, default=800)
    p.add_argument("--seed", type=int, default=1234)
    a = p.parse_args()
    rng = random.Random(a.seed)
    os.makedirs(a.outdir, exist_ok=True)
    for name, n in (("train", a.train), ("valid", a.valid), ("test", a.test)):
        with open(os.path.join(a.outdir, f"{name}.jsonl"), "w") as f:
            for _ in range(n):
                f.write(json.dumps(example(rng)) + "\n")
    print(f"wrote {a.train}/{a.valid}/{a.test} examples to {a.outdir}")


if __name__ == "__main__":
    main()
