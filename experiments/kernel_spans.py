"""Issue 11: memory-bound kinds' own forms (a per-channel-plane term for a join broadcast per
channel, a cache knee per kind), chosen and scored offline on recorded measurements.

Not shipped (experiments/ only); nothing is measured, every figure comes from committed records:

    python experiments/kernel_spans.py [--md experiments/kernel_spans.md] [--record kernel_diagnosis_raw_X.json.gz]

1. forms: per memory-bound kind, the in-place node samples of the calibration networks of each
   kernel_diagnosis record (8 records, 06:27-14:08, each its own 90 networks) fitted by
   ``_fitting.fit_kind`` in four forms (bytes line / + plane term / + knee / both): 5-fold
   cross-validated median |log(pred/meas)| and sum(pred)/sum(meas) on those samples, and the
   same for the seed-1 space samples' nodes of the record (out of sample; neither the zoo nor
   seed 0). The median over the records.
2. refits: records 1304 and 1338 refitted as `augur-nas profile` fits them, the forms off
   (before) and on (after), scored by ``kernel_diagnosis.evaluate`` (calibration networks in
   sample; zoo and seed-0 samples of the 13:12 benchmark, validation only: no choice is made on
   them; `--record` adds another record; one with swish samples, taken since the attribution fix,
   also gets a row with swish priced by the default entry as before the fix) and on the seed-2 networks of part_diagnosis_s2_1310 end to end (shape: each
   predictor's median ratio taken off, the records ran at other speeds).
3. the seed-2 part table of the multiply nodes alone (layout conversions apart: the part
   report of part_diagnosis.py puts the multiply's ReorderInput in its slot, the model charges
   it to the next conv) with each refit.
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

import kernel_diagnosis as KD  # noqa: E402
from part_diagnosis import _table, part_of  # noqa: E402

from augur_nas.costmodel import LatencyModel, latency_ms  # noqa: E402
from augur_nas.measure import _profiling as P  # noqa: E402
from augur_nas.measure._fitting import fit_kind  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space  # noqa: E402

RECORDS = ["kernel_diagnosis_raw.json.gz", "kernel_diagnosis_raw_0935.json.gz", "kernel_diagnosis_raw_1222.json.gz",
           "kernel_diagnosis_raw_1244_own_share.json.gz", "kernel_diagnosis_raw_1253_own_share.json.gz",
           "kernel_diagnosis_raw_1304_nb201.json.gz", "kernel_diagnosis_raw_1338_join_rules.json.gz",
           "kernel_diagnosis_raw_1408_fused_pass.json.gz"]
REFITS = ["kernel_diagnosis_raw_1304_nb201.json.gz", "kernel_diagnosis_raw_1338_join_rules.json.gz"]
SEED2 = "part_diagnosis_s2_1310.json.gz"
KINDS = ["mul", "add", "concat", "maxpool", "globalpool", "avgpool", "relu", "batchnorm", "slice", "shuffle"]
FORMS = {"bytes": (False, False), "+planes": (True, False), "+knee": (False, True), "+planes+knee": (True, True)}
SE_ZOO = ["efficientnet_b0", "efficientnet_b1", "efficientnet_v2_s", "mobilenet_v3_large", "mobilenet_v3_small",
          "regnet_y_400mf", "regnet_y_800mf", "ghostnet", "shufflenet_v2_x1_0", "densenet121", "squeezenet1_0"]


def _space_specs(labels) -> dict:
    """The seed-1 space samples' specs (``space[s1:i]`` as kernel_diagnosis collected them)."""
    out, spaces = {}, {}
    for lab in labels:
        name, rest = lab.split("[")
        i = int(rest.split(":")[1].rstrip("]"))
        sp = spaces.setdefault(name, load_space(ROOT / f"spaces/{name}.yaml"))
        out[lab] = sp.decode(sp.sample(i + 1, seed=1)[i]).spec
    return out


def _arrays(samples, delta, kind):
    S = [s for s in samples if s["kind"] == kind]
    return (np.array([s["mb"] for s in S]), np.array([P._less(s["t"], delta) for s in S]),
            np.array([s["spans"] for s in S], dtype=float))


def _score(pred, t):
    return (float(np.median(np.abs(np.log(pred / t)))), float(pred.sum() / t.sum())) if len(t) else (np.nan, np.nan)


def _form_row(mb, t, planes, mb1, t1, planes1, planes_on, knee) -> tuple:
    fold = np.random.default_rng(0).integers(0, 5, len(t))
    cv = np.zeros(len(t))
    use = (lambda p: p) if planes_on else np.zeros_like
    for k in range(5):
        tr = fold != k
        cv[~tr] = fit_kind(mb[tr], t[tr], use(planes[tr]), knee).predict(mb[~tr], use(planes[~tr]))
    f = fit_kind(mb, t, use(planes), knee)
    return _score(cv, t) + _score(f.predict(mb1, use(planes1)), t1)


def forms_table() -> list:
    per = {}
    for name in RECORDS:
        raw = KD.load_raw(ROOT / "experiments" / name)
        delta = float(raw.get("profiler_delta_ms", 0.0))
        cal = P._with_spans(raw["kinds"], raw["specs"])
        sp1 = raw.get("space_nodes", {}).get("kinds") or []
        sp1 = P._with_spans(sp1, _space_specs({s["net"] for s in sp1})) if sp1 else []
        for kind in KINDS:
            mb, t, pl = _arrays(cal, delta, kind)
            if len(t) < 10:
                continue
            mb1, t1, pl1 = _arrays(sp1, delta, kind)
            for form, (planes_on, knee) in FORMS.items():
                per.setdefault((kind, form), []).append(_form_row(mb, t, pl, mb1, t1, pl1, planes_on, knee))
    lines = ["| kind | form | records | CV median abs log | CV sum pred/meas | seed-1 median abs log | seed-1 sum pred/meas |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        for form in FORMS:
            v = np.array(per.get((kind, form), []))
            if not len(v):
                continue
            m = np.nanmedian(v, axis=0) if np.isfinite(v).any() else [np.nan] * 4
            lines.append(f"| {kind} | {form} | {len(v)} | {m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f} | {m[3]:.2f} |")
    return lines


def _refit(raw, on: bool):
    old = P.OPS_FORMS
    P.OPS_FORMS = on
    try:
        return P.fit_ort(raw, "refit", RuntimeSettings())[0]
    finally:
        P.OPS_FORMS = old


def _seed2(prof, rec, tables) -> tuple:
    q = np.array([float(latency_ms(tables[n["label"]], prof)[0][0]) / n["e2e_ms"] for n in rec["networks"]])
    spc = np.array([n["space"] for n in rec["networks"]])
    qn = q / np.median(q)
    per = " / ".join(f"{np.median(qn[spc == g]):.3f}" for g in ("mobile", "nb201", "resnet"))
    return float(np.mean(np.abs(qn - 1) <= 0.1)), per


def _mul_nodes(prof, rec, tables) -> tuple:
    """The seed-2 networks' Mul nodes (their conversions apart): measured and predicted ms, and the
    median log ratio, with the profile's per-node profiler cost off each node."""
    lat = prof.latency
    delta = float(prof.fit["end_to_end_calibration"]["profiler_overhead_per_node_ms"])
    meas, pred, lr = 0.0, 0.0, []
    for net in rec["networks"]:
        table = tables[net["label"]]
        layout, lat.layout = lat.layout, None
        st = lat.slot_times(table)[:, 0]
        lat.layout = layout
        for s, nodes in net["slots"].items():
            if s == "network" or part_of(table, int(s)) != "se.mul":
                continue
            m = sum(max(ms - delta, 0.1 * ms) for op, ms in nodes if op == "Mul")
            meas, pred = meas + m, pred + st[int(s)]
            lr.append(np.log(st[int(s)] / m))
    return meas, pred, float(np.median(lr))


def _swish_by_default(prof):
    """The profile with swish priced by the ``default`` entry, as every profile before the
    attribution fix priced it (no calibration network yielded a swish sample)."""
    p = copy.deepcopy(prof)
    d = p.latency.to_dict()
    d["ops"].get("kinds", {}).pop("swish", None)
    p.latency = LatencyModel.from_dict(d)
    return p


def _fits(raw):
    """``[(tag, profile)]``: the forms off and on; with swish samples, also on with swish by default."""
    on = _refit(raw, True)
    out = [("before", _refit(raw, False)), ("after", on)]
    if any(s["kind"] == "swish" for s in raw["kinds"]):
        out.append(("after, swish by default", _swish_by_default(on)))
    return out


def refit_tables(records) -> list:
    bench = json.loads((ROOT / "experiments/new_machine/new_machine.json").read_text())
    labels = [r["label"] for r in bench["per_network"]]
    with gzip.open(ROOT / "experiments" / SEED2, "rt", encoding="utf-8") as f:
        rec = json.load(f)
    tables = {n["label"]: _table(n["label"], rec["seed"]) for n in rec["networks"]}
    head = ["| record | fit | calibration nets ±10% | zoo ±10% (median err) | zoo shape | seed-0 samples ±10% (median err) "
            "| samples shape | seed-2 shape | seed-2 mobile / nb201 / resnet median ratio | seed-2 Mul nodes meas / pred ms (median log) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    zoo_rows = {}
    for name in records:
        raw = KD.load_raw(ROOT / "experiments" / name)
        for tag, prof in _fits(raw):
            ev = KD.evaluate(raw, prof)
            c, z, s = ev["calibration_networks"], ev["zoo"], ev["samples"]
            shape2, per2 = _seed2(prof, rec, tables)
            mm, mp, ml = _mul_nodes(prof, rec, tables)
            head.append(f"| {name[19:31]} | {tag} | {100 * c[0]:.0f}% | {100 * z[0]:.0f}% ({100 * z[1]:+.1f}%) | {100 * z[2]:.0f}% "
                        f"| {100 * s[0]:.0f}% ({100 * s[1]:+.1f}%) | {100 * s[2]:.0f}% | {100 * shape2:.0f}% | {per2} "
                        f"| {mm:.3f} / {mp:.3f} ({ml:+.3f}) |")
            err = ev["_pred"] / ev["_meas"] - 1
            for net in SE_ZOO:
                zoo_rows.setdefault(net, []).append(f"{100 * err[labels.index(net)]:+.1f}%")
    zoo = ["", "Zoo networks with squeeze-excite, swish or many small joins (validation only), error of the "
           "layer sum against the 13:12 benchmark at each record's speed:", "",
           "| network | " + " | ".join(f"{n[19:31]} {t}" for n in records for t, _ in _tags(n)) + " |",
           "|---|" + "---:|" * len(next(iter(zoo_rows.values())))]
    zoo += [f"| {net} | " + " | ".join(v) + " |" for net, v in zoo_rows.items()]
    return head + zoo


def _tags(name) -> list:
    raw = KD.load_raw(ROOT / "experiments" / name)
    return [("before", 0), ("after", 0)] + ([("after, swish by default", 0)]
                                            if any(s["kind"] == "swish" for s in raw["kinds"]) else [])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--md", default=None)
    ap.add_argument("--record", action="append", default=[],
                    help="another kernel_diagnosis record under experiments/ to refit and score (table 2)")
    args = ap.parse_args(argv)
    text = "\n".join(["## Forms per kind (calibration samples: 5-fold CV; seed-1 space nodes: out of sample)", ""]
                     + forms_table() + ["", "## Refits of records, forms off and on", ""]
                     + refit_tables(REFITS + args.record)) + "\n"
    print(text)
    if args.md:
        Path(args.md).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
