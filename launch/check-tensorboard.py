#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own EventAccumulator and checks every
scalar against the run's metrics.jsonl: same tags, same steps, same values (to float32).

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    /tmp/tb/bin/python launch/check-tensorboard.py runs/exp1

Not part of CI (tests must not need tensorboard); its output for a run is kept in Docs/usage.md.
"""
import json
import math
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def expected_scalars(run):
    """(tag, step) -> value, as the trainer derives them from the records of metrics.jsonl."""
    out = {}
    for line in open(f"{run}/metrics.jsonl"):
        r = json.loads(line)
        kind = r.get("type")
        if kind == "train":
            if r.get("loss") is not None:
                out[("train/loss", r["step"])] = r["loss"]
            out[("train/learning_rate", r["step"])] = r["lr"]
            out[("train/examples_per_s", r["step"])] = r["examples_per_s"]
            if r.get("grad_norm") is not None:
                out[("train/grad_norm", r["step"])] = r["grad_norm"]
            for rank, rate in enumerate(r.get("tokens_per_s_by_rank", [])):
                out[(f"throughput/rank_{rank}", r["step"])] = rate
        elif kind in ("eval", "test"):
            for key, value in r.items():
                for prefix, tag in (("val_", "val/"), ("train_eval_", "train_eval/"), ("test_", "test/")):
                    if key.startswith(prefix) and key != prefix + "examples" and value is not None \
                            and isinstance(value, (int, float)) and not isinstance(value, bool):
                        name = key[len(prefix):]
                        if name in ("loss", "accuracy", "macro_f1", "mcc", "mse", "mae", "r2"):
                            out[(tag + name, r["step"])] = value
    return out


def main():
    run = sys.argv[1]
    acc = EventAccumulator(f"{run}/tensorboard", size_guidance={"scalars": 0})
    acc.Reload()
    got = {}
    for tag in acc.Tags()["scalars"]:
        for e in acc.Scalars(tag):
            got[(tag, e.step)] = e.value
    want = expected_scalars(run)
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    wrong = [(k, want[k], got[k]) for k in want if k in got
             and not math.isclose(got[k], want[k], rel_tol=1e-6, abs_tol=1e-7)]
    tags = sorted({t for t, _ in got})
    print(f"{run}: {len(got)} scalars in {len(tags)} tags read by EventAccumulator; {len(want)} expected from metrics.jsonl")
    print("tags:", ", ".join(tags))
    for label, items in (("missing", missing), ("unexpected", extra), ("different", wrong)):
        print(f"{label}: {len(items)}", *items[:10], sep="\n  " if items else " ")
    sys.exit(1 if missing or extra or wrong else 0)


if __name__ == "__main__":
    main()
