"""Issue 11, task D: the layout rules against what ONNX Runtime inserts, and the effect of two rule
fixes on the layer sum, offline on recorded measurements (no timing).

Not shipped (experiments/ only). The rules (``LayoutRules.fused_joins``, ``from_blocked``, CSE through identity)
are data read on the runtime; this script compares

- ``counts``: ONNX Runtime's layout conversions (ReorderInput/Output in its optimised graph, no
  timing) against the rules' count, per space sample (never the zoo), with the rules before
  (fused joins always blocked, global pools always blocked, CSE on inputs as written) and after
  (as ``detect_rules`` reads them on this machine);
- ``parts``: a ``part_diagnosis.py collect`` record (seed-2 samples profiled per node) against
  the refit of a ``kernel_diagnosis.py collect`` record: conversions counted and timed in place
  against the rules' count and price, per network, and in-place kernel times by part;
- ``score``: a profile priced with the old and the new rules against a benchmark's measurements
  (``experiments/new_machine.py``'s json; validation only, nothing is fitted on it): the given
  profile as it is, and, for each recorded ``kernel_diagnosis.py collect`` record, its refit
  (``_profiling.fit_ort``, as ``augur-nas profile``) under each rule set, also scored on seed-2
  samples timed end to end (``part_diagnosis.py collect`` records).

    python experiments/join_rules.py parts experiments/kernel_diagnosis_raw_1304_nb201.json.gz experiments/part_diagnosis_s2_1310.json.gz
    python experiments/join_rules.py counts --spaces mobile,fbnet,nb201,resnet --per-space 5
    python experiments/join_rules.py score --bench BENCH.json --profile PROFILE.yaml \
        --records experiments/kernel_diagnosis_raw_1304_nb201.json.gz --parts experiments/part_diagnosis_s2_1310.json.gz
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

import kernel_diagnosis as K
import new_machine as NM
import part_diagnosis as PD

from augur_nas.costmodel import LatencyModel, OpModel, latency_ms
from augur_nas.costmodel._fusion import CSE_THROUGH
from augur_nas.lowering import lower
from augur_nas.measure import _profiling as P
from augur_nas.measure._settings import RuntimeSettings
from augur_nas.profile import Profile, load_profile

OLD_CSE = [k for k in P.ORT_CSE if k not in CSE_THROUGH]
NEW_KEYS = ("fused_joins", "from_blocked")  # the layout rules' keys this change added


def new_keys() -> dict:
    """The added layout keys as ``detect_rules`` reads them on this machine (no timing)."""
    from augur_nas.measure._ortrules import detect_rules

    with tempfile.TemporaryDirectory() as d:
        lay = detect_rules(RuntimeSettings(), d).layout
    return {k: lay[k] for k in NEW_KEYS if k in lay}


def _layout(lay: dict, new: bool, keys: dict) -> dict:
    return dict(lay, **keys) if new else {k: v for k, v in lay.items() if k not in NEW_KEYS}


def with_rules(latency, new: bool, keys: dict):
    """``latency`` under the new rules (fused joins by their inputs' layout, CSE through identity)
    or the old ones (joins always blocked, CSE on inputs as written)."""
    d = latency.to_dict()
    if "layout" in d:
        d["layout"] = _layout(d["layout"], new, keys)
    if d.get("cse"):
        d["cse"] = list(P.ORT_CSE) if new else OLD_CSE
    return LatencyModel.from_dict(d)


def _profile_with(profile, latency):
    d = profile.to_dict()
    d["latency"] = latency.to_dict()
    return Profile.from_dict(d)


def counts(args) -> None:
    import onnx

    from augur_nas.io.onnx import export_onnx
    from augur_nas.measure._ortrules import detect_rules
    from augur_nas.measure._runners import OrtRunner
    from augur_nas.models import load_space

    with tempfile.TemporaryDirectory() as d:
        rules = detect_rules(RuntimeSettings(), d)._asdict()
        print(f"rules read on this machine: {rules['layout']}")
        models = {new: P._ort_model({}, OpModel(), {}, (0.0, 0.0), rules=rules) for new in (False, True)}
        keys = {k: rules["layout"][k] for k in NEW_KEYS if k in rules["layout"]}
        models = {new: with_rules(m, new, keys) for new, m in models.items()}
        print("| sample | ORT | rules before | rules after |\n|---|---:|---:|---:|")
        tot = np.zeros(3, dtype=int)
        for name in args.spaces.split(","):
            space = load_space(ROOT / f"spaces/{name}.yaml")
            for i, x in enumerate(space.sample(args.per_space, seed=args.seed)):
                m = space.decode(x)
                path, opt = f"{d}/m.onnx", f"{d}/o.onnx"
                export_onnx(m, path)
                OrtRunner(path, RuntimeSettings(), optimized_path=opt).close()
                ort = sum(n.op_type in ("ReorderInput", "ReorderOutput") for n in onnx.load(opt).graph.node)
                t = lower(m, np.zeros((1, m.n_genes), dtype=np.int64))
                row = [ort] + [_rule_count(models[new], t) for new in (False, True)]
                tot += row
                print(f"| {name}[s{args.seed}:{i}] | {row[0]} | {row[1]} | {row[2]} |")
        print(f"| all | {tot[0]} | {tot[1]} | {tot[2]} |")


def _rule_count(lm, t) -> int:
    """The rules' conversions (a zero edge is charged as one conversion-like pass: not counted)."""
    alias = lm.duplicates(t)
    _, c, _ = lm.layout.reorders(t.ops, t.inputs, t.rows, lm.fused(t), t.select_pos, 0, lm.free_kinds(), alias)
    zero = sum(1 for s, op in enumerate(t.ops) if op == "zero" and (alias is None or alias[s, 0] < 0))
    return int(c.sum()) - zero


def _bench_lines(tag, prof, items, rep, speed=1.0) -> str:
    pred = NM.predict(items, prof)
    meas = np.array([r["measured_ms"] for r in rep["per_network"]]) * speed
    labels = [r["label"] for r in rep["per_network"]]
    q = pred / meas
    out = []
    for g in ("zoo", "samples"):
        sel = np.array([x["group"] == g for x in rep["per_network"]])
        w, _, shape = K._within(pred[sel], meas[sel])
        out.append(f"{100 * w:.0f}% (shape {100 * shape:.0f}%)")
    meds = " / ".join(f"{np.median([x for lab, x in zip(labels, q) if lab.startswith(g + '[')]):.3f}"
                      for g in ("mobile", "resnet", "nb201"))
    return f"| {tag} | {out[0]} | {out[1]} | {meds} |"


def _part_line(prof, path) -> str:
    raw = path.read_bytes()
    rec = json.loads(gzip.decompress(raw) if str(path).endswith(".gz") else raw)
    r, sp = [], []
    for n in rec["networks"]:
        t = PD._table(n["label"], rec["seed"])
        r.append(float(latency_ms(t, prof.latency)[0][0]) / n["e2e_ms"])
        sp.append(n["space"])
    r, sp = np.array(r), np.array(sp)
    meds = " / ".join(f"{np.median(r[sp == g]):.3f}" for g in ("mobile", "resnet", "nb201"))
    return f"{100 * np.mean(np.abs(r - 1) <= 0.1):.0f}% ({meds})"


def score(args) -> None:
    rep = json.loads(Path(args.bench).read_text())
    items = NM.validation_set(30)
    assert [lab for lab, _, _ in items] == [r["label"] for r in rep["per_network"]], "benchmark's networks differ"
    keys = new_keys()
    print(f"new rules read on this machine: {keys}")
    print("| profile, rules | zoo ±10% | samples ±10% | mobile / resnet / nb201 median pred/meas |\n|---|---:|---:|---|")
    if args.profile:
        base = load_profile(args.profile)
        from augur_nas.measure._calibrate import uncorrected
        base = uncorrected(base) if getattr(base, "calibration", None) else base
        for new in (False, True):
            prof = _profile_with(base, with_rules(base.latency, new, keys))
            print(_bench_lines(f"{Path(args.profile).name}, rules {'after' if new else 'before'} (no refit)", prof, items, rep))
    parts = [Path(p) for p in args.parts.split(",")] if args.parts else []
    for rec in args.records.split(",") if args.records else []:
        raw0 = K.load_raw(rec)
        ref = base.fit["anchors"]["latency_ms"] if args.profile else {}
        now = raw0.get("anchors_ms") or {}
        speed = float(np.median([now[k] / ref[k] for k in ref if k in now])) if now and ref else 1.0
        for new in (False, True):
            raw = copy.deepcopy(raw0)
            if raw.get("rules"):
                raw["rules"]["layout"] = _layout(raw["rules"]["layout"], new, keys)
            cse, P.ORT_CSE = P.ORT_CSE, (P.ORT_CSE if new else OLD_CSE)
            try:
                prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
            finally:
                P.ORT_CSE = cse
            c = np.array([v["error_pct"] for v in prof.fit["calibration_networks"]["networks"].values()]) / 100
            tag = f"refit of {Path(rec).name}, rules {'after' if new else 'before'} (in sample {100 * np.mean(np.abs(c) <= 0.1):.0f}%)"
            line = _bench_lines(tag, prof, items, rep, speed)
            print(line + "".join(f" {p.name}: {_part_line(prof, p)}" for p in parts))


REORDERS = ("ReorderInput", "ReorderOutput")


def _part(t, s) -> str:
    """A mobile layer's part: squeeze-excite roles, 1x1 expansion/projection by output size, the rest by kind."""
    name, op = t.names[s], t.ops[s]
    if ".se." in name:
        return f"se.{op}"
    role = name.split(".")[-1]
    if op == "conv" and role in ("expand", "project"):
        return f"1x1 {role}, output {'above' if t.rows['m'][s, 0] > 196 else 'up to'} 14x14"
    return op


def parts(args) -> None:
    """Per network of a part_diagnosis record: ORT's conversions (count, in-place ms) against the
    rules' (count, priced ms), and in-place kernel times against the refit of a record, by part."""
    raw = K.load_raw(args.record)
    prof = P.fit_ort(raw, "refit", RuntimeSettings())[0]
    lat = prof.latency
    delta = float(prof.fit["end_to_end_calibration"].get("profiler_overhead_per_node_ms", 0.0))
    rec = json.loads(gzip.decompress(Path(args.part).read_bytes()))
    by_part: dict = {}
    print("| network | e2e ms | layer sum ms | conversions ORT / rules | their ms in place / priced | fused ReLU6 output MB |\n"
          "|---|---:|---:|---:|---:|---:|")
    for net in rec["networks"]:
        if net["space"] != args.space:
            continue
        t = PD._table(net["label"], rec["seed"])
        moved, count, _ = lat.layout.reorders(t.ops, t.inputs, t.rows, lat.fused(t), t.select_pos, 0,
                                              lat.free_kinds(), lat.duplicates(t))
        lc = lat.layout.cost(moved, count)[:, 0]
        st = lat.slot_times(t)[:, 0]
        fused = lat.fused(t)[:, 0] & t.rows["mask"][:, 0]
        relu6_mb = sum(float(t.rows["out_elems"][s, 0]) * 4 / 1e6 for s, op in enumerate(t.ops) if op == "relu6" and fused[s])
        meas_r, n_r = 0.0, 0
        for s, nodes in net["slots"].items():
            if s == "network":
                continue
            s = int(s)
            ms = [(op, max(v - delta, 0.1 * v)) for op, v in nodes]
            meas_r += sum(v for op, v in ms if op in REORDERS)
            n_r += sum(op in REORDERS for op, _ in ms)
            p = by_part.setdefault(_part(t, s), [0.0, 0.0])
            p[0] += sum(v for op, v in ms if op not in REORDERS)
            p[1] += st[s] - lc[s]
        print(f"| {net['label']} | {net['e2e_ms']:.3f} | {st.sum() + lat.network_overhead_ms:.3f} | {n_r} / {int(count.sum())} | "
              f"{meas_r:.3f} / {lc.sum():.3f} | {relu6_mb:.2f} |")
    print("\n| part (kernels, conversions apart) | in place ms | priced ms | pred/meas |\n|---|---:|---:|---:|")
    for k, (m, pr) in sorted(by_part.items()):
        print(f"| {k} | {m:.3f} | {pr:.3f} | {pr / max(m, 1e-9):.2f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("counts")
    c.add_argument("--spaces", default="mobile,ofa_mbv3,fbnet,nb201,resnet")
    c.add_argument("--per-space", type=int, default=5)
    c.add_argument("--seed", type=int, default=2)
    s = sub.add_parser("score")
    s.add_argument("--bench", required=True)
    s.add_argument("--profile", default="")
    s.add_argument("--records", default="")
    s.add_argument("--parts", default="")
    q = sub.add_parser("parts")
    q.add_argument("record")
    q.add_argument("part")
    q.add_argument("--space", default="mobile")
    args = ap.parse_args(argv)
    {"counts": counts, "score": score, "parts": parts}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
