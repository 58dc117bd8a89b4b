"""Issue 11, task E: a fused activation's pass (``latency.fused_pass``), on and off, offline on
recorded measurements (no timing).

Not shipped (experiments/ only). ONNX Runtime applies ReLU inside its conv kernels and every other
fused activation (ReLU6 = Clip, HardSigmoid, ...) in a pass of its own over the output
(``_ortrules.PASS_ACTS``). Since this change ``augur-nas profile`` times 1x1 expansion convs with
and without each such activation (``raw["act_pairs"]``), records on every GEMM sample the output
MB of the activations fused into it (``act_mb``), takes the fitted pass off those samples before
the GEMM fit and prices it back (``LatencyModel.fused_pass``). This script refits a
``kernel_diagnosis.py collect`` record made since (it needs both fields) four ways (``refit``,
with ``_profiling.FUSED_PASS`` on whatever the shipped default): without the pass (its pairs
dropped: the fit before the pass), with the 1x1 convs' rate for every producer (task E's form),
with a rate per producer family (task G: pairs of depthwise and dense convs too; a record from
before the families can borrow them from another record with ``--graft``) and with the 1x1 rate
after 1x1 convs only, and scores each
against a benchmark's measurements (``experiments/new_machine.py``'s json; validation
only: the zoo and seed-0 space samples, nothing is fitted on them), brought to the record's speed
by the speed anchors, as ``join_rules.py score`` does; with ``--parts``, also on seed-2 samples
timed end to end (``part_diagnosis.py collect`` records).

    python experiments/fused_pass.py --bench experiments/new_machine/new_machine.json \\
        --profile augur_nas/device_profiles/x86-xeon-avx512-ort.yaml --records RECORD.json.gz \\
        [--parts experiments/part_diagnosis_s2_1310.json.gz] [--graft RECORD_WITH_FAMILY_PAIRS.json.gz]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import join_rules as J
import kernel_diagnosis as K
import new_machine as NM
import part_diagnosis as PD

from augur_nas.costmodel._latency import PASS_FAMILIES
from augur_nas.measure import _profiling as P
from augur_nas.measure._calibrate import uncorrected
from augur_nas.measure._ortnodes import owners
from augur_nas.measure._settings import RuntimeSettings
from augur_nas.profile import load_profile

VARIANTS = ("without", "1x1 rate", "per family", "1x1 only")


def refit(raw: dict, variant: str):
    """The record's profile as ``augur-nas profile`` fits it (``_profiling.FUSED_PASS`` on):
    ``without`` its act pairs (the fit before the pass), with the ``1x1 rate`` (only the pairs of
    1x1 convs: every family takes their rate, the form of task E), ``per family``, or ``1x1 only``
    (the 1x1 convs' rate, none after depthwise and dense convs: their passes stay inside their
    GEMM models, as before the pass form: ``_profiling.FUSED_PASS_FAMILIES``)."""
    raw = copy.deepcopy(raw)
    if variant == "without":
        raw["act_pairs"] = []
    elif variant == "1x1 rate":
        raw["act_pairs"] = [p for p in raw["act_pairs"] if p.get("family", "conv_1x1") == "conv_1x1"]
    was = P.FUSED_PASS, P.FUSED_PASS_FAMILIES
    P.FUSED_PASS, P.FUSED_PASS_FAMILIES = True, ("conv_1x1",) if variant == "1x1 only" else PASS_FAMILIES
    try:
        return P.fit_ort(raw, "refit", RuntimeSettings())[0]
    finally:
        P.FUSED_PASS, P.FUSED_PASS_FAMILIES = was


def pair_lines(raw: dict) -> list:
    """Each recorded pair: the kind, output MB, times without and with, ratio and ms per MB."""
    out = ["| producer | activation | output MB | conv ms | + activation ms | ratio | ms per MB |",
           "|---|---|---:|---:|---:|---:|---:|"]
    for p in raw.get("act_pairs") or []:
        out.append(f"| {p.get('family', 'conv_1x1')} | {p['kind']} | {p['mb']:.2f} | {p['t_plain']:.4f} | {p['t_act']:.4f} | "
                   f"{p['t_act'] / p['t_plain']:.3f} | {(p['t_act'] - p['t_plain']) / p['mb']:.4f} |")
    return out


def in_place(prof, part: Path, space: str = "mobile") -> dict:
    """``{part: [in-place ms, priced ms]}`` over a part record's ``space`` samples (per-node
    profiles, conversions apart, as ``join_rules.py parts``), each fused layer's price (the pass
    of a fused activation) on the kernel it runs in, where ORT's profiler puts its time."""
    lat = prof.latency
    delta = float(prof.fit["end_to_end_calibration"].get("profiler_overhead_per_node_ms", 0.0))
    rec = json.loads(gzip.decompress(part.read_bytes()))
    by: dict = {}
    for net in rec["networks"]:
        if net["space"] != space:
            continue
        t = PD._table(net["label"], rec["seed"])
        moved, count, _ = lat.layout.reorders(t.ops, t.inputs, t.rows, lat.fused(t), t.select_pos, 0,
                                              lat.free_kinds(), lat.duplicates(t))
        st = lat.slot_times(t)[:, 0] - lat.layout.cost(moved, count)[:, 0]
        own, _ = owners(t, lat.fuse)
        on_kernel = np.zeros_like(st)
        np.add.at(on_kernel, np.asarray(own), st)
        for s, nodes in net["slots"].items():
            if s == "network":
                continue
            s = int(s)
            p = by.setdefault(J._part(t, s), [0.0, 0.0])
            p[0] += sum(max(v - delta, 0.1 * v) for op, v in nodes if op not in J.REORDERS)
            p[1] += on_kernel[s]
    return by


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", required=True)
    ap.add_argument("--profile", required=True, help="the benchmark's profile (its speed anchors)")
    ap.add_argument("--records", required=True, help="kernel_diagnosis.py collect records, comma-separated")
    ap.add_argument("--parts", default="")
    ap.add_argument("--graft", default="", help="a record whose depthwise and dense pairs are added to each record "
                                                "that has 1x1 pairs only (a record from before the families)")
    args = ap.parse_args(argv)
    rep = json.loads(Path(args.bench).read_text())
    items = NM.validation_set(30)
    assert [lab for lab, _, _ in items] == [r["label"] for r in rep["per_network"]], "benchmark's networks differ"
    base = load_profile(args.profile)
    base = uncorrected(base) if getattr(base, "calibration", None) else base
    parts = [Path(p) for p in args.parts.split(",")] if args.parts else []
    lines = ["| profile | zoo ±10% | samples ±10% | mobile / resnet / nb201 median pred/meas |", "|---|---:|---:|---|",
             J._bench_lines(f"{Path(args.profile).name} (no refit)", base, items, rep)]
    graft = [p for p in K.load_raw(args.graft)["act_pairs"] if p.get("family", "conv_1x1") != "conv_1x1"] \
        if args.graft else []
    for rec in args.records.split(","):
        raw = K.load_raw(rec)
        if graft and all(p.get("family", "conv_1x1") == "conv_1x1" for p in raw.get("act_pairs") or []):
            raw["act_pairs"] = list(raw.get("act_pairs") or []) + graft
            print(f"{Path(rec).name}: + {len(graft)} depthwise and dense pairs of {Path(args.graft).name}")
        if not raw.get("act_pairs"):
            print(f"{rec}: no act pairs (a record from before the fused pass); skipped")
            continue
        print("\n".join([f"\n{Path(rec).name}: conv pairs"] + pair_lines(raw)))
        ref, now = base.fit["anchors"]["latency_ms"], raw.get("anchors_ms") or {}
        speed = float(np.median([now[k] / ref[k] for k in ref if k in now])) if now and ref else 1.0
        places = {}
        families = {p.get("family", "conv_1x1") for p in raw["act_pairs"]}
        for variant in VARIANTS if len(families) > 1 else ("without", "1x1 rate", "1x1 only"):
            prof = refit(raw, variant)
            if parts:
                places[variant] = in_place(prof, parts[0])
            rates = "; ".join(f"{k} " + "/".join(f"{v[f]:.4f}" for f in PASS_FAMILIES)
                              for k, v in prof.latency.fused_pass.items()) or "none"
            c = np.array([v["error_pct"] for v in prof.fit["calibration_networks"]["networks"].values()]) / 100
            tag = (f"refit of {Path(rec).name}, pass {variant} (ms/MB 1x1/dw/dense: {rates}; "
                   f"in sample {100 * np.mean(np.abs(c) <= 0.1):.0f}%; speed {speed:.3f})")
            lines.append(J._bench_lines(tag, prof, items, rep, speed)
                         + "".join(f" {p.name}: {J._part_line(prof, p)}" for p in parts))
        if places:
            print(f"\nin place, mobile samples of {parts[0].name} (kernels, conversions apart), refit of {Path(rec).name}:")
            print("| part | in place ms | " + " | ".join(f"pass {v}" for v in places) + " |\n|---|---:|" + "---:|" * len(places))
            for k, (m, _) in sorted(places["without"].items()):
                print(f"| {k} | {m:.3f} | " + " | ".join(f"{pl[k][1]:.3f} ({pl[k][1] / max(m, 1e-9):.2f})"
                                                         for pl in places.values()) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
