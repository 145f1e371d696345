#!/usr/bin/env python3
"""A communication and step-time model of finetune-dist's data-parallel training, fitted to
measurements made with `finetune-dist commbench` and `finetune-dist bench` (launch/scaling.sh
--network), and used to predict throughput on clusters larger than the machine at hand.

  python3 launch/scaling_model.py fit MEASUREMENTS_DIR OUT.json   # fit, check against measured runs
  python3 launch/scaling_model.py predict MODEL.json [OUT.svg]    # predictions (table + SVG)

The model (one rank per core, one OpenBLAS thread per rank):
- A ring allreduce of n floats over N ranks takes 2(N-1)·alpha + 2(N-1)/N·n·beta, where alpha is
  the per-message latency of the slowest link a ring step crosses and beta the seconds per float
  of a step (transfer plus its share of the additions). A tree (binomial reduce + broadcast) takes
  2·log2(N)·(alpha + n·beta_t), beta_t the per-float transfer cost. Reduce-scatter and allgather
  are each half a ring. Within one node the link is shared memory; as soon as the ranks span
  nodes every ring step waits for the network (consecutive ranks share a node, so the ring crosses
  each node boundary once per step).
- A step is compute (forward and backward, measured on one rank at each per-rank batch), the
  optimizer (measured; divided by N with ZeRO-1), the finite check of the summed gradients, and
  kappa times the exchange's time (buckets and embedding rows, by the collective formula): kappa is
  how much of the exchange adds to a step, fitted per link to the measured 2-rank steps (with
  overlap, 1 would mean none of it hides behind backward; above 1, the exchange also slows the
  computation it runs beside). The fit is checked on the other measured steps. With ZeRO-1 the
  parameters' allgather after the update adds in full. Gradient accumulation over K micro-batches
  runs forward and backward K times per exchange.
- The embedding tables are summed row-sparsely: the rows some rank's tokens touched, estimated
  for tokens drawn uniformly from the vocabulary (as bench draws them; real text repeats tokens,
  so this is pessimistic).
"""
import glob
import json
import math
import os
import sys

SEQ = 64              # tokens per sequence in every measurement and prediction
BUCKET = 25e6 / 4     # floats per gradient bucket (--bucket-mb 25)
# The embedding tables (summed row-sparsely) and their width; the rest of the parameters (the
# measured count minus the tables) is summed in buckets.
SHAPES = {"minilm": dict(vocab=30522, positions=512, hidden=384), "bert-base": dict(vocab=30522, positions=512, hidden=768)}


def dense_floats(model, shape_name):
    s = SHAPES[shape_name]
    return model["compute"][shape_name]["parameters"] - (s["vocab"] + s["positions"]) * s["hidden"]
NOMINAL = {"1gbit": 1e9, "10gbit": 10e9, "25gbit": 25e9}


def load(path):
    with open(path) as f:
        return json.load(f)


def linear_fit(xs, ys):
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def fit_link(commbench):
    """From a 2-rank commbench: alpha (s per message) and beta (s per float of a ring step) of the
    ring; alpha_tree and beta_tree of MPI's own allreduce, taken as a tree (2 messages of the whole
    buffer between 2 ranks)."""
    def fit(algorithm):
        points = sorted((p["floats"], p["seconds"]) for p in commbench["points"] if p["algorithm"] == algorithm)
        big = [(n, t) for n, t in points if n >= 65536]
        _, slope = linear_fit([n for n, _ in big], [t for _, t in big])
        n0, t0 = points[0]
        return max(1e-7, (t0 - n0 * slope) / 2), slope
    alpha, beta = fit("ring")
    alpha_tree, slope_tree = fit("mpi")
    return dict(alpha=alpha, beta=beta, alpha_tree=alpha_tree, beta_tree=slope_tree / 2, add=commbench["add_seconds_per_float"])


def ring_time(link, ranks, floats):
    if ranks <= 1:
        return 0.0
    return 2 * (ranks - 1) * link["alpha"] + 2 * (ranks - 1) / ranks * floats * link["beta"]


def tree_time(link, ranks, floats):
    if ranks <= 1:
        return 0.0
    return 2 * math.log2(ranks) * (link.get("alpha_tree", link["alpha"]) + floats * link.get("beta_tree", link["beta"]))


def touched_rows(shape, tokens):
    v = shape["vocab"]
    return v * (1 - (1 - 1 / v) ** tokens) + SEQ


def exchange_time(model, shape_name, link, ranks, tokens, algorithm="ring"):
    """Seconds of one step's gradient exchange: the dense buckets and the touched embedding rows."""
    shape = SHAPES[shape_name]
    if ranks <= 1:
        return 0.0, 0.0
    collective = ring_time if algorithm == "ring" else tree_time
    dense = dense_floats(model, shape_name)
    buckets = [BUCKET] * int(dense // BUCKET) + ([dense % BUCKET] if dense % BUCKET else [])
    rows = touched_rows(shape, tokens)
    sparse = collective(link, ranks, rows * shape["hidden"]) + 2 * math.log2(ranks) * link["alpha"]
    return sum(collective(link, ranks, b) for b in buckets), sparse


def step_time(model, shape_name, link, ranks, batch, overlap=True, zero1=False, accumulate=1, algorithm="ring",
              compute_scale=1.0, kappa=None):
    """Seconds per optimizer step and its parts, for `ranks` ranks of `batch` sequences each."""
    c = model["compute"][shape_name]
    fb = (c["fixed"] + c["per_sequence"] * batch) * compute_scale
    optimizer = c["optimizer"] / (ranks if zero1 else 1)
    dense = dense_floats(model, shape_name)
    check = c["finite_check"] * dense / c["parameters"] if ranks > 1 else c["finite_check"]
    dense_time, sparse_time = exchange_time(model, shape_name, link, ranks, ranks * batch * accumulate * (SEQ - 2), algorithm)
    if kappa is None:
        kappa = link.get("kappa", 1.0)
    if zero1:
        # The reduce-scatter goes like the buckets; the parameters' allgather after the update adds in full.
        exposed = kappa * (dense_time / 2 + sparse_time) + dense_time / 2
    else:
        exposed = (kappa if overlap else link.get("kappa_no_overlap", max(kappa, 1.0))) * (dense_time + sparse_time)
    total = accumulate * fb + optimizer + check + exposed
    return dict(total=total, compute=accumulate * fb, optimizer=optimizer + check, exposed=exposed)


def single_rank_rate(model, shape_name, batch, accumulate=1):
    c = model["compute"][shape_name]
    return batch * accumulate / (accumulate * (c["fixed"] + c["per_sequence"] * batch) + c["optimizer"] + c["finite_check"])


def fit(directory, out):
    m = {"measured_on": {}, "links": {}, "compute": {}, "checks": []}
    # Compute: forward + backward against the per-rank batch (MiniLM at 4, 8, 16; BERT-base at 8).
    mini = {int(p.split("-")[-1].split(".")[0]): load(p) for p in glob.glob(os.path.join(directory, "compute-minilm-*.json"))}
    batches = sorted(mini)
    fixed, per = linear_fit(batches, [mini[b]["forward_s"] + mini[b]["backward_s"] for b in batches])
    r16 = mini[max(batches)]
    m["compute"]["minilm"] = dict(fixed=max(fixed, 0.0), per_sequence=per, optimizer=r16["optimizer_s"], parameters=r16["parameters"],
                                  finite_check=r16["finite_check_s"],
                                  backward_share=r16["backward_s"] / (r16["forward_s"] + r16["backward_s"]))
    base = load(os.path.join(directory, "compute-bert-base-8.json"))
    bfb = base["forward_s"] + base["backward_s"]
    m["compute"]["bert-base"] = dict(fixed=0.0, per_sequence=bfb / 8, optimizer=base["optimizer_s"], parameters=base["parameters"],
                                     finite_check=base["finite_check_s"], backward_share=base["backward_s"] / bfb)
    m["measured_on"] = dict(sgemm_gflops=r16["sgemm_gflops"], blas_core=r16.get("blas_core"), minilm_1x16_step_s=r16["step_s"],
                            bert_base_1x8_step_s=base["step_s"])
    # Links.
    m["links"]["shm"] = fit_link(load(os.path.join(directory, "link-shm-2.json")))
    for rate in ["1gbit", "10gbit", "25gbit", "unlimited"]:
        path = os.path.join(directory, f"link-{rate}-2.json")
        if os.path.exists(path):
            m["links"][rate] = fit_link(load(path))
    # kappa: how much of the exchange time adds to a measured 2-rank step, one value for the network
    # links and one for shared memory, each a least-squares fit over every 2-rank step measured on
    # them (a single step pair is too noisy here: the exchange is a few percent of a step).
    one = {b: mini[b]["step_s"] for b in batches}
    for group in [["shm"], [r for r in m["links"] if r != "shm"]]:
        num = den = 0.0
        for rate in group:
            for batch in [8, 16]:
                path = os.path.join(directory, f"step-{rate}-2x{batch}.json")
                if os.path.exists(path) and batch in one:
                    dense, sparse = exchange_time(m, "minilm", m["links"][rate], 2, 2 * batch * (SEQ - 2))
                    num += (load(path)["step_s"] - one[batch]) * (dense + sparse)
                    den += (dense + sparse) ** 2
        for rate in group:
            m["links"][rate]["kappa"] = max(0.0, num / den) if den > 0 else 1.0
    # The same without overlap (2 ranks x 16, --no-overlap), network links.
    num = den = 0.0
    for rate in [r for r in m["links"] if r != "shm"]:
        path = os.path.join(directory, f"step-{rate}-2x16-no-overlap.json")
        if os.path.exists(path):
            dense, sparse = exchange_time(m, "minilm", m["links"][rate], 2, 2 * 16 * (SEQ - 2))
            num += (load(path)["step_s"] - one[16]) * (dense + sparse)
            den += (dense + sparse) ** 2
    if den > 0:
        for rate in [r for r in m["links"] if r != "shm"]:
            m["links"][rate]["kappa_no_overlap"] = max(0.0, num / den)
    # Checks: the 4-rank sums across two hosts, and measured training steps, against the model.
    for rate in m["links"]:
        link = m["links"][rate]
        four = os.path.join(directory, f"link-{rate}-4.json")
        if os.path.exists(four):
            for p in load(four)["points"]:
                if p["algorithm"] == "ring" and p["floats"] >= 65536:
                    m["checks"].append(dict(what=f"ring allreduce, 4 ranks on 2 hosts (4 processes on 2 cores), {rate}, {p['floats']} floats",
                                            measured=p["seconds"], predicted=ring_time(link, 4, p["floats"])))
        for ranks, batch in [(2, 8), (2, 16), (4, 8)]:
            path = os.path.join(directory, f"step-{rate}-{ranks}x{batch}.json")
            if not os.path.exists(path):
                continue
            r = load(path)
            # 4 ranks share this machine's 2 cores: each computes at half speed.
            scale = 2.0 if ranks == 4 else 1.0
            p = step_time(m, "minilm", link, ranks, batch, compute_scale=scale)
            where = "1 host" if rate == "shm" else f"2 hosts, {rate}"
            m["checks"].append(dict(what=f"MiniLM step, {ranks} ranks x {batch}, {where}" + (" (2 per host: 4 processes on 2 cores)" if ranks == 4 else ""),
                                    measured=r["step_s"], predicted=p["total"]))
    with open(out, "w") as f:
        json.dump(m, f, indent=2, sort_keys=True)
    print(f"scaling model: fitted to {directory}, written to {out}")
    for name, link in m["links"].items():
        print(f"  link {name:9s}: alpha {link['alpha'] * 1e6:7.1f} us per message, beta {link['beta'] * 1e9:6.3f} ns per float "
              f"({4 / link['beta'] / 1e9:5.2f} GB/s of buffer per ring step), kappa {link.get('kappa', 1.0):.2f}"
              + (f" (no overlap {link['kappa_no_overlap']:.2f})" if "kappa_no_overlap" in link else "")
              + f"; MPI's: alpha {link['alpha_tree'] * 1e6:.1f} us, beta {link['beta_tree'] * 1e9:.3f} ns per float")
    print("  checks (measured vs predicted):")
    for c in m["checks"]:
        print(f"    {c['what']:72s} {c['measured']:8.4f} s  {c['predicted']:8.4f} s  ({100 * (c['predicted'] / c['measured'] - 1):+.0f}%)")


def network_link(model, name):
    """A nominal network: the measured latency of the simulated hosts, the bandwidth of the rate
    at the efficiency measured at 1 Gbit/s, the additions measured here."""
    measured = model["links"]["1gbit"]
    efficiency = (4 / (measured["beta"] - measured["add"] / 2)) / (1e9 / 8)
    transfer = 4 / (NOMINAL[name] / 8 * min(efficiency, 1.0))
    link = dict(measured)
    link["beta"] = transfer + measured["add"] / 2
    link["beta_tree"] = transfer
    return link


def predict(path, svg=None):
    model = load(path)
    svg = svg or os.path.splitext(path)[0] + ".svg"
    rows = []
    configs = [("overlap (default)", {}), ("no overlap", dict(overlap=False)), ("ZeRO-1", dict(zero1=True)),
               ("accumulate 4", dict(accumulate=4)), ("tree, overlap", dict(algorithm="tree"))]
    print(f"predicted with {path} (compute measured on one core here: sgemm {model['measured_on']['sgemm_gflops']:.0f} GFLOP/s, "
          f"OpenBLAS {model['measured_on'].get('blas_core')}); 16 sequences of {SEQ} tokens per rank")
    for shape in ["minilm", "bert-base"]:
        for cores in [16, 64]:
            for net in ["1gbit", "10gbit", "25gbit"]:
                for label, options in configs:
                    line = []
                    for ranks in [8, 16, 32, 64, 128, 256]:
                        link = model["links"]["shm"] if ranks <= cores else network_link(model, net)
                        t = step_time(model, shape, link, ranks, 16, **options)
                        rate = ranks * 16 * options.get("accumulate", 1) / t["total"]
                        eff = rate / (ranks * single_rank_rate(model, shape, 16, options.get("accumulate", 1)))
                        line.append((ranks, rate, eff))
                        rows.append(dict(shape=shape, cores_per_node=cores, network=net, config=label, ranks=ranks,
                                         examples_per_s=rate, efficiency=eff))
                    print(f"{shape:9s} {cores:2d}-core nodes {net:6s} {label:18s} " +
                          "  ".join(f"{r:3d}: {x:7.0f}/s {100 * e:3.0f}%" for r, x, e in line))
    write_svg(model, rows, svg)
    print(f"wrote {svg}")
    return rows


def write_svg(model, rows, path):
    """Efficiency against ranks (MiniLM, 16-core nodes, default settings, three networks), with the
    measured 2- and 4-rank points over the simulated links."""
    W, H, left, right, top, bottom = 900, 400, 70, 600, 40, 340
    xs = [2, 4, 8, 16, 32, 64, 128, 256]
    def x(r): return left + (right - left) * math.log2(r / 2) / math.log2(256 / 2)
    def y(e): return bottom - (bottom - top) * max(0.0, min(e, 1.05)) / 1.05
    colors = {"1gbit": "#d62728", "10gbit": "#ff7f0e", "25gbit": "#2ca02c", "unlimited": "#1f77b4", "shm": "#555"}
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{(left + right) / 2}" y="22" text-anchor="middle" font-weight="bold">MiniLM, 16 x {SEQ} tokens per rank: scaling efficiency (predicted lines, measured points)</text>',
           f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>']
    for r in xs:
        out.append(f'<text x="{x(r)}" y="{bottom + 16}" text-anchor="middle">{r}</text>')
    out.append(f'<text x="{(left + right) / 2}" y="{bottom + 34}" text-anchor="middle">ranks (16 per node beyond 16; log scale)</text>')
    for i in range(6):
        e = i / 5
        out.append(f'<text x="{left - 6}" y="{y(e) + 4}" text-anchor="end">{100 * e:.0f}%</text>')
        out.append(f'<line x1="{left}" y1="{y(e)}" x2="{right}" y2="{y(e)}" stroke="#eee"/>')
    for net in ["1gbit", "10gbit", "25gbit"]:
        pts = [(2, None)] + [(r["ranks"], r["efficiency"]) for r in rows if r["shape"] == "minilm" and r["cores_per_node"] == 16
                             and r["network"] == net and r["config"] == "overlap (default)"]
        pts = [(rk, e) for rk, e in pts if e is not None]
        out.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (colors[net], " ".join(f"{x(rk):.1f},{y(e):.1f}" for rk, e in pts)))
    # Measured: the 2- and 4-rank steps over the simulated links (efficiency against one rank here).
    single = model["measured_on"]["minilm_1x16_step_s"]
    for c in model.get("checks", []):
        if not c["what"].startswith("MiniLM step") or "processes on 2 cores" in c["what"] or "1 host" in c["what"]:
            continue  # 4 processes on 2 cores measure correctness, not speed
        parts = c["what"].replace(",", "").split()
        ranks, batch, rate = int(parts[2]), int(parts[5]), parts[8]
        if batch != 16:
            continue
        # Efficiency against one rank's measured 16-sequence step: measured (circle) and predicted (dot).
        for value, filled in [(c["measured"], False), (c["predicted"], True)]:
            eff = (ranks * batch / value) / (ranks * 16 / single)
            cx = x(ranks) + (6 if filled else -6)
            out.append(f'<circle cx="{cx:.1f}" cy="{y(eff):.1f}" r="{4 if filled else 5}" fill="{colors.get(rate, "#000") if filled else "white"}" '
                       f'stroke="{colors.get(rate, "#000")}" stroke-width="2"><title>{c["what"]}: {"predicted" if filled else "measured"} {100 * eff:.0f}%</title></circle>')
    for i, net in enumerate(["1gbit", "10gbit", "25gbit", "unlimited"]):
        label = {"1gbit": "1 Gbit/s", "10gbit": "10 Gbit/s", "25gbit": "25 Gbit/s", "unlimited": "simulated hosts, no limit (~5 Gbit/s)"}[net]
        out.append(f'<line x1="{right + 10}" y1="{top + 10 + 18 * i}" x2="{right + 30}" y2="{top + 10 + 18 * i}" stroke="{colors[net]}" stroke-width="2"/>')
        out.append(f'<text x="{right + 34}" y="{top + 14 + 18 * i}" font-size="10">{label}</text>')
    out.append(f'<text x="{right + 10}" y="{top + 96}" font-size="10">at 2 ranks (one per simulated host, 16 sequences each):</text>')
    out.append(f'<text x="{right + 10}" y="{top + 110}" font-size="10">open circle measured, dot predicted</text>')
    out.append(f'<text x="{right + 10}" y="{top + 130}" font-size="10">lines: 16-core nodes, shared memory within a node,</text>')
    out.append(f'<text x="{right + 10}" y="{top + 144}" font-size="10">default settings (ring, overlap, 25 MB buckets)</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "fit":
        fit(sys.argv[2], sys.argv[3])
    elif len(sys.argv) >= 3 and sys.argv[1] == "predict":
        predict(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
    else:
        print(__doc__)
        sys.exit(2)
