"""Diagnosis (issue 11): which kernel families carry the layer sum's error on ONNX Runtime?

Not shipped (experiments/ only). Two steps:

    # 1. measure: the profiler's raw record (kernel probes, per-node profiles of the calibration
    #    networks, end-to-end timings) plus per-node profiles of space samples (seed 1: the
    #    validation uses seed 0, the zoo is never touched), written as JSON
    taskset -c 1 python experiments/kernel_diagnosis.py collect --budget-s 480 --out /tmp/diag_raw.json
    # 2. compare: refit the profile from the raw record (`_profiling.fit_ort`, as `augur-nas profile`
    #    does) and tabulate, per GEMM family and shape regime, ORT's in-place node times against
    #    the model's per-layer predictions (sum of measured, sum of predicted, median log ratio,
    #    share of the total absolute error), for the calibration networks and the space samples
    python experiments/kernel_diagnosis.py compare /tmp/diag_raw.json [--isolated] [--md experiments/kernel_diagnosis.md]
    # 3. before/after: the old and the new fit of the same record, scored (shape only: each
    #    predictor's median ratio taken off) against the last quiet benchmark's measurements
    git show 46eb5d3:experiments/new_machine/new_machine.json > /tmp/quiet_bench.json
    python experiments/kernel_diagnosis.py ab /tmp/diag_raw.json --bench /tmp/quiet_bench.json
    # 4. issue 11's model forms (layout cache knee, stride-2 depthwise model) on and off, scored
    #    in shape against the quiet benchmark of main (validation only; a record needs the
    #    `strided` field of its samples, written since 2026-11-29 09:35, for the dwconv_s2 rows)
    python experiments/kernel_diagnosis.py forms experiments/kernel_diagnosis_raw_0935.json.gz

experiments/kernel_diagnosis_raw.json.gz is the record of 2026-11-29 06:27-06:34 UTC (taskset -c 1,
budget 480 s, load average 2-4.5 from other jobs: provisional); `compare` and `ab` read it as is.
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
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space  # noqa: E402

SPACES = ["spaces/mobile.yaml", "spaces/resnet.yaml", "spaces/nb201.yaml"]


def collect(args) -> None:
    settings = RuntimeSettings()
    profile, rep = P.profile_onnxruntime("diag", settings, budget_s=args.budget_s, seed=args.seed, progress=print)
    raw = rep["raw"]
    raw["space_nodes"] = _space_node_samples(profile, settings, args.samples)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(raw, f, default=P.plain_json)
    print(f"wrote {args.out}")


def _space_node_samples(profile, settings, per_space: int) -> dict:
    """Per-node profiles of ``per_space`` samples (seed 1) of each space, as phase C samples them."""
    model0 = profile.latency
    acc = P._NodeProfiles()
    with tempfile.TemporaryDirectory(prefix="augur-diag-") as d:
        for path in SPACES:
            space = load_space(ROOT / path)
            for i, x in enumerate(space.sample(per_space, seed=1)):
                label = f"{space.name}[s1:{i}]"
                net = P._OrtNet(label, space.decode(x), d, model0.fuse)
                try:
                    att, times, wall = P._ort_node_profile(net, settings, d, model0, target_s=0.2, max_runs=60,
                                                           want_graph=True)
                finally:
                    net.remove()
                P._add_node_samples(acc, net, att, model0)
                acc.node_sum[label] = sum(v[0] for v in times.values())
                print(f"  {label}: node sum {acc.node_sum[label]:.3f} ms, wall {wall:.3f} ms")
    return {"in_situ": acc.insitu, "kinds": acc.kind_samples, "layout": acc.layout_samples, "node_sum_ms": acc.node_sum}


# ------------------------------------------------------------------------------------------- compare


def _regime(s) -> str:
    fam = s["family"]
    if fam == "dwconv":
        c = s["groups"]
        return f"k{int(round(np.sqrt(s['k'])))} m{'<=196' if s['m'] <= 196 else '<=784' if s['m'] <= 784 else '>784'}" \
               f" c{'%16' if c % 16 == 0 else 'odd'}"
    if fam == "fc":
        w = s["n"] * s["k"] * 4 / 2**20
        return f"W{'<1' if w < 1 else '<8' if w < 8 else '>=8'}MB"
    m = s["m"]
    return f"n{'<64' if s['n'] < 64 else '<256' if s['n'] < 256 else '>=256'} m{'<=196' if m <= 196 else '<=3136' if m <= 3136 else '>3136'}"


def gemm_table(samples, latency, delta) -> list:
    """Rows (family, regime, n, measured ms, predicted ms, median log ratio, share of |error|)."""
    rows = {}
    for s in samples:
        t = float(s["t"]) - delta
        g = latency.gemm[_model_of(latency, s)]
        pred = float(g.predict(s["n"], s["m"], s["k"])) * s["groups"]
        rows.setdefault((s["family"], _regime(s)), []).append((t, pred))
    tot_err = sum(abs(p - t) for v in rows.values() for t, p in v) or 1.0
    out = []
    for (fam, reg), v in sorted(rows.items()):
        t = np.array([a for a, _ in v])
        p = np.array([b for _, b in v])
        out.append((fam, reg, len(v), t.sum(), p.sum(), float(np.median(np.log(p / np.maximum(t, 1e-6)))),
                    float(np.abs(p - t).sum() / tot_err)))
    return out


def _model_of(latency, s) -> str:
    fam = s["family"]
    if fam in latency.gemm:
        return fam
    return "conv"


def kinds_table(samples, latency, delta) -> list:
    rows = {}
    for s in samples:
        # ``mb``: MB moved (in + out); OpModel.predict prices it with the profile's cache knee
        pred = float(latency.ops.predict(s["kind"], s["mb"] * 1e6, 0.0))
        rows.setdefault(s["kind"], []).append((s["t"] - delta, pred))
    out = []
    for kind, v in sorted(rows.items()):
        t = np.array([a for a, _ in v])
        p = np.array([b for _, b in v])
        out.append((kind, "", len(v), t.sum(), p.sum(), float(np.median(np.log(np.maximum(p, 1e-6) / np.maximum(t, 1e-6)))), 0.0))
    return out


def compare(args) -> None:
    raw = load_raw(args.raw)
    P.IN_PLACE = not args.isolated
    profile, _ = P.fit_ort(raw, "diag", RuntimeSettings())
    lat = profile.latency
    scale = profile.fit["end_to_end_calibration"]["kernel_scale"]
    delta = float(raw.get("profiler_delta_ms", 0.0))
    lines = ["# Kernel diagnosis: ORT node times in place against the refitted profile's per-layer predictions",
             "", f"GEMM models fitted {'on probes and in-place times pooled (no in-place terms; the profiler cost off the samples)' if args.isolated else 'in place'}; "
             f"kernel scale {scale}, profiler overhead {delta * 1000:.1f} us per node", ""]
    lines += _in_place_gap(raw)
    for title, S, K in (("calibration networks", raw["in_situ"], raw["kinds"]),
                        ("space samples (seed 1)", raw["space_nodes"]["in_situ"], raw["space_nodes"]["kinds"])):
        lines += [f"## {title}", "", "| family | regime | n | measured ms | predicted ms | median log(pred/meas) | share of abs error |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in gemm_table(S, lat, delta) + kinds_table(K, lat, delta):
            lines.append(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f} | {r[4]:.2f} | {r[5]:+.3f} | {100 * r[6]:.0f}% |")
        lines.append("")
    lines += _network_lines(raw, profile)
    text = "\n".join(lines) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text, encoding="utf-8")


def _in_place_gap(raw) -> list:
    """Median log(in-place time / the probes-only model) per family and weight size: what a kernel
    pays more inside a network than alone."""
    from augur_nas.measure._fitting import W_BREAK_SETS, fit_gemm

    lines = ["## in place against alone: median log(in-place node time / model fitted on the probes only)", "",
             "| family | weights MB | in-place n | median log ratio | in-place ms |", "|---|---|---:|---:|---:|"]
    place = raw["in_situ"] + raw.get("space_nodes", {}).get("in_situ", [])
    for fam in P.GEMM_VARIANTS:
        S = [s for s in raw["probes"] if s["family"] == fam]
        T = [s for s in place if s["family"] == fam]
        if len(S) < 8 or not T:
            lines.append(f"| {fam} | | {len(T)} | (probes: {len(S)}) | |")
            continue
        a = lambda L, f: np.array([s[f] for s in L], dtype=float)  # noqa: E731
        axis = {"n_axis": "nk", "n_sets": W_BREAK_SETS} if fam == "fc" else {}
        g, _ = fit_gemm(a(S, "n"), a(S, "m"), a(S, "k"), a(S, "t") / a(S, "groups"), **axis)
        lr = np.log(a(T, "t") / (g.predict(a(T, "n"), a(T, "m"), a(T, "k")) * a(T, "groups")))
        wb = a(T, "n") * a(T, "k") * a(T, "groups") * 4 / 2**20
        for lo, hi in ((0, 0.25), (0.25, 1), (1, 4), (4, 16), (16, np.inf)):
            sel = (wb >= lo) & (wb < hi)
            if sel.any():
                lines.append(f"| {fam} | {lo}-{hi} | {int(sel.sum())} | {np.median(lr[sel]):+.3f} | {a(T, 't')[sel].sum():.1f} |")
    return lines + [""]


def _network_lines(raw, profile) -> list:
    """Calibration networks: measured end to end against the layer sum."""
    from augur_nas.costmodel import latency_ms
    from augur_nas.models import load_space_dict

    errs = []
    for lab, spec in raw["specs"].items():
        m = load_space_dict(spec)
        pred = float(latency_ms(lower(m, np.zeros((1, m.n_genes), dtype=np.int64)), profile)[0][0])
        errs.append((lab, pred / raw["e2e_ms"][lab] - 1))
    e = np.array([v for _, v in errs])
    return ["## calibration networks end to end (in sample for 3 constants)", "",
            f"{len(e)} networks: {100 * np.mean(np.abs(e) <= 0.1):.0f}% within ±10%, median error {100 * np.median(e):+.1f}%"]


def load_raw(path) -> dict:
    """A record written by `collect` (plain or gzipped JSON)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        raw = json.load(f)
    raw["layout"] = [tuple(v) for v in raw["layout"]]
    return raw


def _within(pred, meas) -> tuple:
    """(share within ±10%, median error, share within ±10% once the median error is taken off:
    the kernel model's shape, whatever the machine's speed when it was measured)."""
    r = np.asarray(pred) / np.asarray(meas)
    return float(np.mean(np.abs(r - 1) <= 0.1)), float(np.median(r) - 1), float(np.mean(np.abs(r / np.median(r) - 1) <= 0.1))


def evaluate(raw, profile, bench=ROOT / "experiments/new_machine/new_machine.json", base="x86-xeon-avx512-ort") -> dict:
    """A refitted profile's layer sum: on the calibration networks end to end (in sample for the 3
    end-to-end constants, out of sample for nothing else), and, for validation only (no choice is
    made on it), on the zoo and the seed-0 samples as `new_machine.py` measured them last (brought
    to this run's speed by the anchors)."""
    from augur_nas.costmodel import latency_ms
    from augur_nas.measure._calibrate import uncorrected
    from augur_nas.models import load_space_dict
    from augur_nas.profile import load_profile

    sys.path.insert(0, str(ROOT / "experiments"))
    import new_machine as NM

    prof = uncorrected(profile) if getattr(profile, "calibration", None) else profile
    cal_p, cal_m = [], []
    for lab, spec in raw["specs"].items():
        m = load_space_dict(spec)
        cal_p.append(float(latency_ms(lower(m, np.zeros((1, m.n_genes), dtype=np.int64)), prof)[0][0]))
        cal_m.append(raw["e2e_ms"][lab])
    out = {"calibration_networks": _within(cal_p, cal_m)}
    rep = json.loads(Path(bench).read_text())
    ref = load_profile(base).fit["anchors"]["latency_ms"]
    now = raw.get("anchors_ms") or {}
    speed = float(np.median([now[k] / ref[k] for k in ref if k in now])) if now else 1.0
    items = NM.validation_set(30)
    pred = NM.predict(items, prof)
    meas = np.array([r["measured_ms"] for r in rep["per_network"]]) * speed
    for g in ("zoo", "samples"):
        sel = np.array([x["group"] == g for x in rep["per_network"]])
        out[g] = _within(pred[sel], meas[sel])
    both = np.array([x["group"] in ("zoo", "samples") for x in rep["per_network"]])
    out["all_shape"] = _within(pred[both], meas[both])[2]
    out["speed_vs_bench"] = speed
    out["_pred"] = pred
    out["_meas"] = meas
    return out


def _old_fit(raw):
    """The fit as it was before this change: GEMM models pooled (no in-place terms), the profiler's
    per-node cost taken off the fitted constants (emulated: fitted with no cost, then shifted)."""
    from augur_nas.costmodel import PiecewiseGemm

    delta = float(raw.get("profiler_delta_ms", 0.0))
    real = P._fit_kernel_models

    def shifted(raw_, _delta):
        kf = real(raw_, 0.0)

        def minus(g):
            coef = g.coef.copy()
            coef[..., 0] = np.maximum(coef[..., 0] - delta, 0.0)
            return PiecewiseGemm(coef, g.n_breaks, g.m_breaks, g.n_range, g.m_range, g.k_range, g.outside, g.n_axis)

        return kf._replace(gemm={k: minus(v) for k, v in kf.gemm.items()},
                           default=(kf.default[0], max(0.0, kf.default[1] - delta)),
                           op_kinds={k: (a, max(0.0, c - delta)) for k, (a, c) in kf.op_kinds.items()},
                           reorder=(kf.reorder[0], max(0.0, kf.reorder[1] - delta)))

    P._fit_kernel_models, P.IN_PLACE = shifted, False
    try:
        return P.fit_ort(raw, "before", RuntimeSettings())[0]
    finally:
        P._fit_kernel_models, P.IN_PLACE = real, True


def ab(args) -> None:
    """The fit before and after this change on one raw record, scored against the last quiet
    benchmark's measurements (experiments/new_machine/new_machine.json as committed with the
    shipped profile: pass --bench). 'shape': within ±10% once each predictor's median ratio is
    taken off (the record's machine speed differs from the benchmark's; validation only)."""
    raw = load_raw(args.raw)
    rep = json.loads(Path(args.bench).read_text())
    labels = [r["label"] for r in rep["per_network"]]
    fits = {"before (pooled, cost off the constants)": _old_fit(raw),
            "after (in place, cost off the samples)": P.fit_ort(raw, "after", RuntimeSettings())[0]}
    lines = ["| fit | zoo shape | samples shape | both shape | nb201 / mobile / resnet median ratio (to all) |",
             "|---|---:|---:|---:|---|"]
    for tag, prof in fits.items():
        ev = evaluate(raw, prof, bench=args.bench)
        q = ev["_pred"] / ev["_meas"]
        q = q / np.median(q)
        med = " / ".join(f"{np.median([x for lab, x in zip(labels, q) if lab.startswith(g + '[')]):.3f}"
                         for g in ("nb201", "mobile", "resnet"))
        lines.append(f"| {tag} | {100 * ev['zoo'][2]:.0f}% | {100 * ev['samples'][2]:.0f}% | {100 * ev['all_shape']:.0f}% | {med} |")
    print("\n".join(lines))


def _fit_variant(raw, spill: bool, strided: bool):
    """The profile's fit of ``raw`` with the layout conversions' cache knee and the stride-2
    depthwise model each on or off (off: the fit before issue 11's model forms)."""
    from augur_nas.costmodel._ops import Spill

    real_fit, real_spill = P._fit_gemm_families, P.fit_spill
    if not strided:
        P._fit_gemm_families = lambda S: real_fit([dict(s, family="dwconv") if s["family"] == "dwconv_s2" else s for s in S])
    if not spill:
        P.fit_spill = lambda groups: Spill()
    try:
        return P.fit_ort(raw, "variant", RuntimeSettings())[0]
    finally:
        P._fit_gemm_families, P.fit_spill = real_fit, real_spill


def forms(args) -> None:
    """Issue 11's model forms (layout cache knee, stride-2 depthwise model) on and off, each fit of
    the record scored in shape (each predictor's median ratio taken off: the record's machine
    speed differs from the benchmark's) against a benchmark's measurements (validation only)."""
    raw = load_raw(args.raw)
    rep = json.loads(Path(args.bench).read_text())
    labels = [r["label"] for r in rep["per_network"]]
    lines = ["| knee | dwconv_s2 | zoo shape | samples shape | nb201 / mobile / resnet median ratio (to all) | mobile shape (its own median off) |",
             "|---|---|---:|---:|---|---:|"]
    for spill in (False, True):
        for strided in (False, True):
            ev = evaluate(raw, _fit_variant(raw, spill, strided), bench=args.bench)
            q = ev["_pred"] / ev["_meas"]
            q = q / np.median(q)
            med = " / ".join(f"{np.median([x for lab, x in zip(labels, q) if lab.startswith(g + '[')]):.3f}"
                             for g in ("nb201", "mobile", "resnet"))
            mob = np.array([x for lab, x in zip(labels, q) if lab.startswith("mobile[")])
            mob_shape = np.mean(np.abs(mob / np.median(mob) - 1) <= 0.1)
            lines.append(f"| {'on' if spill else 'off'} | {'on' if strided else 'off'} | {100 * ev['zoo'][2]:.0f}% | "
                         f"{100 * ev['samples'][2]:.0f}% | {med} | {100 * mob_shape:.0f}% |")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect")
    c.add_argument("--budget-s", type=float, default=480.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--samples", type=int, default=10, help="samples per space (seed 1)")
    c.add_argument("--out", required=True)
    d = sub.add_parser("compare")
    d.add_argument("raw")
    d.add_argument("--md", default=None)
    d.add_argument("--isolated", action="store_true", help="fit the GEMM models as before (no in-place terms)")
    e = sub.add_parser("ab")
    e.add_argument("raw")
    e.add_argument("--bench", required=True, help="a new_machine.json measured on a quiet machine")
    f = sub.add_parser("forms")
    f.add_argument("raw")
    f.add_argument("--bench", default=str(ROOT / "experiments/new_machine/new_machine.json"),
                   help="a new_machine.json measured on a quiet machine")
    args = ap.parse_args(argv)
    {"collect": collect, "compare": compare, "ab": ab, "forms": forms}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
