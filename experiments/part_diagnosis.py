"""Diagnosis (issue 11): which parts of a network (squeeze-excite parts, depthwise by stride and
kernel, the small kernels of NAS-Bench-201 cells) does the layer sum misprice in place?

Not shipped (experiments/ only). Per-node ORT profiles of space samples of a seed other than the
validation's 0 (default 2; the zoo is never touched), each node's time (less the profile's
profiler cost per node) attributed to its layer, against the profile's per-layer prediction,
summed by part; and each network end to end (plain run) against the layer sum.

    taskset -c 1 python experiments/part_diagnosis.py collect --profile x86-xeon-avx512-ort --per-space 10 --out /tmp/parts.json
    python experiments/part_diagnosis.py report /tmp/parts.json --profile x86-xeon-avx512-ort
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from augur_nas.lowering import lower  # noqa: E402
from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._ortnodes import attribute  # noqa: E402
from augur_nas.measure._protocol import time_runners  # noqa: E402
from augur_nas.measure._runners import OrtRunner  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space  # noqa: E402
from augur_nas.profile import load_profile  # noqa: E402

SPACES = {"mobile": "spaces/mobile.yaml", "nb201": "spaces/nb201.yaml", "resnet": "spaces/resnet.yaml"}


def part_of(table, s) -> str:
    """A layer's part: its kind, with the squeeze-excite role, a depthwise conv's stride and kernel."""
    name, op = table.names[s], table.ops[s]
    r = table.rows
    if ".se." in name:
        return f"se.{op}"
    if op == "dwconv":
        k = int(round(np.sqrt(r["k"][s, 0])))
        stride = "s2" if r["out_elems"][s, 0] * 2 < r["in_elems"][s, 0] else "s1"
        c = int(r["groups"][s, 0])
        return f"dwconv k{k} {stride} c{'%16' if c % 16 == 0 else 'odd'}"
    if op == "conv":
        n, m = int(r["n"][s, 0]), int(r["m"][s, 0])
        return f"conv n{'<32' if n < 32 else '<128' if n < 128 else '>=128'} m{'<=196' if m <= 196 else '>196'}"
    return op


def collect(args) -> None:
    settings = RuntimeSettings()
    prof = load_profile(args.profile)
    model0 = prof.latency
    out = []
    with tempfile.TemporaryDirectory(prefix="augur-parts-") as d:
        for sname, path in SPACES.items():
            if args.spaces and sname not in args.spaces.split(","):
                continue
            space = load_space(ROOT / path)
            for i, x in enumerate(space.sample(args.per_space, seed=args.seed)):
                label = f"{sname}[s{args.seed}:{i}]"
                net = P._OrtNet(label, space.decode(x), d, model0.fuse)
                try:
                    _, times, graph = P.profiled_runs(net, settings, d, 0.3, 5, 80, want_graph=True)
                    priced = [model0.family(op)[0] != "free" and net.table.rows["mask"][s, 0]
                              for s, op in enumerate(net.table.ops)]
                    att = attribute(times, net.table, net.owner, priced, graph)
                    r = OrtRunner(net.path, settings)
                    t = time_runners({"x": r}, rounds=6, round_s=0.05, warmup_s=0.05, quiet=None)["x"]
                    r.close()
                finally:
                    net.remove()
                slots = {str(s): [[op, ms] for _, op, ms, _ in nodes] for s, nodes in att.items()}
                out.append({"label": label, "space": sname, "index": i, "e2e_ms": t.median_ms,
                            "node_sum_ms": sum(v[0] for v in times.values()), "nodes": len(times), "slots": slots})
                print(f"  {label}: e2e {t.median_ms:.3f} ms, node sum {out[-1]['node_sum_ms']:.3f} ms", flush=True)
    Path(args.out).write_text(json.dumps({"seed": args.seed, "networks": out}))


def _table(label, seed):
    sname, rest = label.split("[")
    i = int(rest.split(":")[1].rstrip("]"))
    space = load_space(ROOT / SPACES[sname])
    m = space.decode(space.sample(i + 1, seed=seed)[i])
    return lower(m, np.zeros((1, m.n_genes), dtype=np.int64))


def report(args) -> None:
    opener = gzip.open if str(args.raw).endswith(".gz") else open
    with opener(args.raw, "rt", encoding="utf-8") as f:
        rec = json.load(f)
    prof = load_profile(args.profile)
    lat = prof.latency
    delta = float(prof.fit.get("end_to_end_calibration", {}).get("profiler_overhead_per_node_ms", 0.0))
    parts: dict = {}
    nets = []
    for net in rec["networks"]:
        table = _table(net["label"], rec["seed"])
        st = lat.slot_times(table)[:, 0]
        meas = np.zeros(len(table.ops))
        for s, nodes in net["slots"].items():
            if s == "network":
                continue
            meas[int(s)] = sum(max(ms - delta, 0.1 * ms) for _, ms in nodes)
        for s in range(len(table.ops)):
            if st[s] == 0 and meas[s] == 0:
                continue
            p = parts.setdefault((net["space"], part_of(table, s)), [0, 0.0, 0.0, []])
            p[0] += 1
            p[1] += meas[s]
            p[2] += st[s]
            if meas[s] > 0 and st[s] > 0:
                p[3].append(np.log(st[s] / meas[s]))
        pred = float(st.sum()) + lat.network_overhead_ms
        nets.append((net["label"], net["e2e_ms"], pred, float(meas.sum())))
    print("| space | part | n | measured ms | predicted ms | pred/meas | median log ratio |\n|---|---|---:|---:|---:|---:|---:|")
    for (sp, part), (n, m, p, lr) in sorted(parts.items()):
        print(f"| {sp} | {part} | {n} | {m:.3f} | {p:.3f} | {p / max(m, 1e-9):.2f} | {np.median(lr) if lr else float('nan'):+.3f} |")
    print("\n| network | e2e ms | layer sum ms | error | attributed node sum ms |\n|---|---:|---:|---:|---:|")
    for lab, e, p, m in nets:
        print(f"| {lab} | {e:.3f} | {p:.3f} | {100 * (p / e - 1):+.1f}% | {m:.3f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--profile", default="x86-xeon-avx512-ort")
    c.add_argument("--seed", type=int, default=2)
    c.add_argument("--per-space", type=int, default=10)
    c.add_argument("--spaces", default="")
    c.add_argument("--out", required=True)
    r = sub.add_parser("report")
    r.add_argument("raw")
    r.add_argument("--profile", default="x86-xeon-avx512-ort")
    args = ap.parse_args(argv)
    {"collect": collect, "report": report}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
