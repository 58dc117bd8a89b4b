"""Score `calibrate`'s correction offline on a recorded new-machine run (no timing: seconds to minutes).

    python experiments/calibrate_offline.py                       # the committed run in experiments/new_machine
    python experiments/calibrate_offline.py --run DIR --json OUT.json

Refits, with this checkout's ``augur_nas.measure._calibrate``, the three corrections that
``experiments/new_machine.py`` measured, from the timings that run recorded, and scores them on the
same validation latencies (the published-CNN zoo and the space samples of ``new_machine.json``;
the zoo is only scored, never fitted), and on a selection set that a choice of form may use
(``selection_sets``: the profiler's own calibration networks, timed end to end in quiet records):

- ``calibrate``: the base profile (``--base``, another processor) with this machine's graph rules,
  fitted to the 24 calibration networks as timed by that run's ``calibrate`` (``calibrated.yaml``);
- ``from_measurements``: the base profile as it is, fitted to the first 20 of them (sorted by name,
  as ``first20.csv``), scored also on the 4 others;
- ``profile``: the new profile's layer sum (its correction undone) refitted to the calibration
  timings of its own run (``--profile``, the shipped profile that run built), and scored as
  ``augur-nas profile`` would ship it: with the factors when ``clearly_better`` applies them, else
  the layer sum as it is.

Each profile's predictions are brought to the validation run's speed by the ratio of the speed
anchors, as new_machine.py does.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "experiments"))

from augur_nas.measure import _calibrate as C  # noqa: E402
from augur_nas.measure._calibset import calibration_set  # noqa: E402
from augur_nas.measure._settings import RuntimeSettings  # noqa: E402
from augur_nas.models import load_space_dict  # noqa: E402
from augur_nas.profile import load_profile  # noqa: E402
from new_machine import validation_set  # noqa: E402


def within(pred, meas, tol=0.10) -> float:
    return round(float(np.mean(np.abs(np.asarray(pred) / np.asarray(meas) - 1) <= tol)), 4)


def anchors_ratio(a: dict, b: dict) -> float:
    """How much slower ``b``'s anchors ran than ``a``'s (median)."""
    return float(np.median([b[k] / a[k] for k in a if k in b]))


SELECTION = ("kernel_diagnosis_raw_1338_join_rules.json.gz", "kernel_diagnosis_raw_1304_nb201.json.gz")


def selection_sets(names, here) -> list:
    """``[(record, tables, measured ms at the shipped profile's speed)]``: the end-to-end timings
    of the profiler's 90 calibration networks (space samples, neither zoo nor seed-0 samples) in
    quiet kernel-diagnosis records, brought to ``here`` (the shipped profile's anchors) by the
    records' own anchors. A form of the correction may be chosen on them (never on the zoo or the
    seed-0 samples); for ``profile`` they are the networks its kernels were sampled in."""
    out = []
    for name in names:
        with gzip.open(ROOT / "experiments" / name, "rt", encoding="utf-8") as f:
            raw = json.load(f)
        labs = list(raw["specs"])
        tables = C._tables([(load_space_dict(raw["specs"][lab]), 1) for lab in labs])
        speed = anchors_ratio(here, raw["anchors_ms"])
        out.append((name, tables, np.array([raw["e2e_ms"][lab] for lab in labs]) / speed))
    return out


def score(fams, T_cal, y_cal, T_val, y_val, groups, ratio, train=None, apply_rule=False, sel=()) -> dict:
    train = list(range(len(y_cal))) if train is None else train
    fit = C.fit_factors(T_cal[train], y_cal[train], fams)
    x = np.array([fit.scales[f] for f in fams])
    decision = C.clearly_better(T_cal[train].sum(axis=1), fit.loo_pred, y_cal[train]) if apply_rule else None
    if decision and not decision["applied"]:
        x = np.ones(len(fams))  # the profile ships its layer sum as it is
    pv = T_val @ x / ratio
    z = np.array([g == "zoo" for g in groups])
    out = {"ridge": fit.lam, "families": {f: round(v, 4) for f, v in fit.scales.items()},
           "zoo_within_10pct": within(pv[z], y_val[z]), "samples_within_10pct": within(pv[~z], y_val[~z]),
           "calibration_loo_within_10pct": within(fit.loo_pred, y_cal[train]),
           "calibration_loo_msle": round(float(np.mean(np.log(fit.loo_pred / y_cal[train]) ** 2)), 4),
           "errors_pct": {}}
    if decision:
        out["decision"] = decision
    for g in ("mobile", "resnet", "nb201"):
        m = np.array([lab == g for lab in groups])
        out[f"samples_{g}_within_10pct"] = within(pv[m], y_val[m]) if m.any() else None
    out["selection_within_10pct"] = {name: within(T @ x / ratio, y) for name, T, y in sel}
    rest = [i for i in range(len(y_cal)) if i not in train]
    if rest:
        pr = T_cal[rest] @ x
        out["held_out_calibration_within_10pct"] = within(pr, y_cal[rest])
        out["held_out_errors_pct"] = [round(float(e) * 100, 1) for e in pr / y_cal[rest] - 1]
    return out, pv


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", default=str(ROOT / "experiments" / "new_machine"), help="new_machine.py's output folder")
    ap.add_argument("--base", default="x86-2core-ort")
    ap.add_argument("--profile", default="x86-xeon-avx512-ort", help="the profile that run built")
    ap.add_argument("--samples", type=int, default=30)
    ap.add_argument("--json", default=None, help="write the figures here")
    ap.add_argument("--selection", nargs="*", default=list(SELECTION),
                    help="kernel-diagnosis records (in experiments/) whose end-to-end timings score each form")
    args = ap.parse_args(argv)
    run = Path(args.run)
    rec = json.loads((run / "new_machine.json").read_text())
    cal_yaml = yaml.safe_load((run / "calibrated.yaml").read_text())
    prof = load_profile(args.profile)
    base = load_profile(args.base)
    items = validation_set(args.samples)
    by = {r["label"]: r for r in rec["per_network"]}
    y_val = np.array([by[lab]["measured_ms"] for lab, _, _ in items])  # at the new profile's speed
    groups = [g if g == "zoo" else lab.split("[")[0] for lab, g, _ in items]
    nets = calibration_set()
    names = [n.name for n in nets]
    t_cal = C._tables([(n.model, 1) for n in nets])
    t_val = C._tables([(m, 1) for _, _, m in items])
    here = prof.fit["anchors"]["latency_ms"]
    cal_ms = cal_yaml["calibration"]["measured_ms"]
    y_cal = np.array([cal_ms[n] for n in names])
    ratio_cal = anchors_ratio(here, cal_yaml["fit"]["anchors"]["latency_ms"])
    rules_base, _ = C._this_machines_rules(base, RuntimeSettings.from_dict(base.runtime_settings))
    layer_sum = C.uncorrected(prof)
    sel_sets = selection_sets(args.selection, here)
    report, preds = {}, {}
    for key, lat, ys, ratio in (("calibrate", rules_base.latency, y_cal, ratio_cal),
                                ("from_measurements", base.latency, y_cal, ratio_cal),
                                ("profile", layer_sum.latency,
                                 np.array([prof.calibration["measured_ms"][n] for n in names]), 1.0)):
        fams = C.families(lat)
        T_cal, T_val = C.contributions(lat, t_cal), C.contributions(lat, t_val)
        train = [names.index(n) for n in sorted(names)[:20]] if key == "from_measurements" else None
        sel = [(name, C.contributions(lat, t), y) for name, t, y in sel_sets]
        report[key], preds[key] = score(fams, T_cal, ys, T_val, y_val, groups, ratio, train, key == "profile", sel)
        r = report[key]
        print(f"{key:18s} zoo {r['zoo_within_10pct']:.0%}  samples {r['samples_within_10pct']:.0%} "
              f"({'/'.join(str(r[f'samples_{g}_within_10pct']) for g in ('mobile', 'resnet', 'nb201'))})"
              f"  selection {'/'.join(f'{v:.0%}' for v in r['selection_within_10pct'].values())}"
              f"  calibration LOO {r['calibration_loo_within_10pct']:.0%} (msle {r['calibration_loo_msle']})"
              + (f"  held-out calibration {report[key]['held_out_calibration_within_10pct']:.0%}"
                 f" {report[key]['held_out_errors_pct']}" if "held_out_errors_pct" in report[key] else "")
              + f"  (ridge {report[key]['ridge']})"
              + (f"  applied: {report[key]['decision']['applied']} (paired t {report[key]['decision']['paired_t']})"
                 if "decision" in report[key] else ""), flush=True)
    for key, pv in preds.items():
        report[key]["errors_pct"] = {lab: round(float(pv[i] / y_val[i] - 1) * 100, 1) for i, (lab, _, _) in enumerate(items)}
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
