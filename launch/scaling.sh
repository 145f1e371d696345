#!/usr/bin/env bash
# Scaling of a MiniLM training step, measured here and predicted for clusters.
#   launch/scaling.sh [OUTDIR]               # strong and weak scaling over 1, 2, 4, 8 ranks on this machine
#                                            # (default runs/scaling: scaling.csv, scaling.svg)
#   launch/scaling.sh --network [OUTDIR]     # measure links (shared memory; two simulated hosts at 1, 10,
#                                            # 25 Gbit/s and unlimited) and compute, fit the communication
#                                            # model, predict (OUTDIR/scaling-model.json, .svg); needs root
#   launch/scaling.sh --model-only [JSON]    # predictions from a fitted model (default Docs/scaling-model.json)
# Strong: global batch 32 (per-rank batch 32/N). Weak: per-rank batch 16. Sequence length 64.
# Ranks beyond the physical cores run oversubscribed (unbound): they are marked, and they measure
# correctness of the set-up more than speed.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    --model-only)
        exec python3 launch/scaling_model.py predict "${2:-Docs/scaling-model.json}" ;;
    --network)
        shift
        out=${1:-runs/scaling-network}
        mkdir -p "$out"
        launch/setup.sh
        source launch/env.sh
        B=$FINETUNE_DIST_BIN
        m="$out/measurements"
        mkdir -p "$m"
        json() { tail -1 | grep '^{' ; }
        echo "scaling: compute on one rank (MiniLM at 4, 8, 16 sequences; BERT-base at 8)" >&2
        for b in 4 8 16; do OPENBLAS_NUM_THREADS=1 mpirun -n 1 --bind-to core "$B" bench --per-rank-batch "$b" --steps 6 --json 2>/dev/null | json >"$m/compute-minilm-$b.json"; done
        OPENBLAS_NUM_THREADS=1 mpirun -n 1 --bind-to core "$B" bench --shape bert-base --per-rank-batch 8 --steps 3 --warmup 1 --json 2>/dev/null | json >"$m/compute-bert-base-8.json"
        echo "scaling: shared memory, 2 ranks on this host" >&2
        mpirun -n 2 --bind-to core "$B" commbench --json 2>/dev/null | json >"$m/link-shm-2.json"
        for b in 8 16; do mpirun -n 2 --bind-to core "$B" bench --per-rank-batch "$b" --steps 6 --json 2>/dev/null | json >"$m/step-shm-2x$b.json"; done
        launch/netns-cluster.sh up 2 >/dev/null
        trap 'launch/netns-cluster.sh down 2 >/dev/null' EXIT
        printf "10.77.0.1 slots=1\n10.77.0.2 slots=1\n" >"$m/hosts-1"
        printf "10.77.0.1 slots=2\n10.77.0.2 slots=2\n" >"$m/hosts-2"
        # mpirun inside host 1; one rank per host unbound (the two simulated hosts share this machine's cores).
        across() {  # across RANKS HOSTFILE finetune-dist-arguments...
            local n=$1 hf=$2; shift 2
            ip netns exec fdh-1 unshare --uts sh -c "hostname fdh-1; cd '$PWD'; mpirun --hostfile '$hf' -n $n --bind-to none \
                --mca plm_rsh_agent '$PWD/launch/netns-rsh' --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
                -x HWLOC_COMPONENTS -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -x OPENBLAS_NUM_THREADS '$B' $*"
        }
        export OPENBLAS_NUM_THREADS=1
        for rate in 1gbit 10gbit 25gbit unlimited; do
            for h in 1 2; do
                if [ "$rate" = unlimited ]; then ip netns exec "fdh-$h" tc qdisc del dev "fdv-$h" root 2>/dev/null || true
                # The smallest burst tbf allows at this kernel's 250 Hz (rate / HZ, with a margin): a larger
                # one lets whole messages through at the veth's own speed.
                else burst=$(( ${rate%gbit} * 1000000000 / 8 / 250 * 5 / 4 ))
                     ip netns exec "fdh-$h" tc qdisc replace dev "fdv-$h" root tbf rate "$rate" burst "$burst" latency 100ms; fi
            done
            echo "scaling: two hosts, link $rate" >&2
            across 2 "$m/hosts-1" commbench --json 2>/dev/null | json >"$m/link-$rate-2.json"
            across 4 "$m/hosts-2" commbench --sizes 1024,65536,1048576,4194304 --json 2>/dev/null | json >"$m/link-$rate-4.json"
            for b in 8 16; do across 2 "$m/hosts-1" bench --per-rank-batch "$b" --steps 6 --json 2>/dev/null | json >"$m/step-$rate-2x$b.json"; done
            across 2 "$m/hosts-1" bench --per-rank-batch 16 --steps 6 --no-overlap --json 2>/dev/null | json >"$m/step-$rate-2x16-no-overlap.json"
            across 4 "$m/hosts-2" bench --per-rank-batch 8 --steps 4 --warmup 1 --json 2>/dev/null | json >"$m/step-$rate-4x8.json"
        done
        python3 launch/scaling_model.py fit "$m" "$out/scaling-model.json"
        exec python3 launch/scaling_model.py predict "$out/scaling-model.json" ;;
esac
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
