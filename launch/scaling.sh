#!/usr/bin/env bash
# Strong and weak scaling of a MiniLM training step over 1, 2, 4, 8 ranks on this machine.
#   launch/scaling.sh [OUTDIR]        # default runs/scaling: scaling.csv, scaling.svg
# Strong: global batch 32 (per-rank batch 32/N). Weak: per-rank batch 16. Sequence length 64.
# Ranks beyond the physical cores run oversubscribed (unbound): they are marked, and they measure
# correctness of the set-up more than speed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/scaling}
steps=${STEPS:-6}
launch/setup.sh
source launch/env.sh
mkdir -p "$out"
cores=$(nproc)
echo "mode,ranks,per_rank_batch,oversubscribed,step_s,examples_per_s,gflops,comm_exposed_s,optimizer_s,peak_rss_bytes" >"$out/scaling.csv"
for mode in strong weak; do
    for n in 1 2 4 8; do
        if [ "$mode" = strong ]; then batch=$((32 / n)); else batch=16; fi
        line=$(launch/local.sh -n "$n" bench --per-rank-batch "$batch" --seq-len 64 --steps "$steps" --warmup 1 --json 2>/dev/null | tail -1)
        over=$([ "$n" -gt "$cores" ] && echo yes || echo no)
        python3 -c '
import json, sys
r = json.loads(sys.argv[1])
print(",".join(str(x) for x in [sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], r["step_s"], r["examples_per_s"], r["gflops"], r["comm_exposed_s"], r["optimizer_s"], r["peak_rss_bytes"]]))
' "$line" "$mode" "$n" "$batch" "$over" >>"$out/scaling.csv"
        echo "scaling: $mode $n rank(s): $(tail -1 "$out/scaling.csv")"
    done
done
python3 - "$out/scaling.csv" "$out/scaling.svg" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
W, H, pad = 860, 360, 60
panels = [("examples/s", "examples_per_s"), ("efficiency vs 1 rank", None)]
colors = {"strong": "#1f77b4", "weak": "#d62728"}
svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>']
ranks = [1, 2, 4, 8]
def xpos(panel, n):
    left = pad + panel * (W // 2)
    return left + ranks.index(n) * (W // 2 - 2 * pad) / 3
for p, (title, key) in enumerate(panels):
    left = pad + p * (W // 2); right = left + W // 2 - 2 * pad; top, bottom = 40, H - pad
    series = {}
    for mode in ("strong", "weak"):
        rs = [r for r in rows if r["mode"] == mode]
        base = float(rs[0]["examples_per_s"])
        if key:
            vals = [float(r[key]) for r in rs]
        else:  # strong: speedup / N; weak: throughput per rank relative to 1 rank
            vals = [float(r["examples_per_s"]) / base / int(r["ranks"]) for r in rs]
        series[mode] = list(zip([int(r["ranks"]) for r in rs], vals, [r["oversubscribed"] == "yes" for r in rs]))
    vmax = max(v for s in series.values() for _, v, _ in s) * 1.15
    svg.append(f'<text x="{(left + right) / 2}" y="20" text-anchor="middle" font-weight="bold">{title}</text>')
    svg.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="black"/>')
    svg.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="black"/>')
    for n in ranks:
        svg.append(f'<text x="{xpos(p, n)}" y="{bottom + 18}" text-anchor="middle">{n}</text>')
    svg.append(f'<text x="{(left + right) / 2}" y="{bottom + 36}" text-anchor="middle">ranks (shaded: more ranks than cores, oversubscribed)</text>')
    for i in range(5):
        v = vmax * i / 4; y = bottom - (bottom - top) * i / 4
        svg.append(f'<text x="{left - 6}" y="{y + 4}" text-anchor="end">{v:.2f}</text>')
    cores_edge = max([n for n, _, o in series["weak"] if not o] or [1])
    svg.append(f'<rect x="{xpos(p, cores_edge) + 10}" y="{top}" width="{right - xpos(p, cores_edge) - 10}" height="{bottom - top}" fill="#eee"/>')
    for mode, pts in series.items():
        coords = [(xpos(p, n), bottom - (bottom - top) * v / vmax) for n, v, _ in pts]
        svg.append('<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>' % (colors[mode], " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)))
        for (x, y), (_, v, o) in zip(coords, pts):
            svg.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{"white" if o else colors[mode]}" stroke="{colors[mode]}" stroke-width="2"/>')
    for i, mode in enumerate(("strong", "weak")):
        svg.append(f'<text x="{right - 90}" y="{top + 14 + 16 * i}" fill="{colors[mode]}">{mode} scaling</text>')
svg.append("</svg>")
open(sys.argv[2], "w").write("\n".join(svg))
PY
echo "scaling: wrote $out/scaling.csv and $out/scaling.svg"
