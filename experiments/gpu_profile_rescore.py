"""Score the H200 profiles offline on the zoo timings of experiments/gpu_profile_h200 (no GPU needed).

    python experiments/gpu_profile_rescore.py        # prints the table, writes experiments/gpu_profile_rescore.json

The zoo was timed once on the H200 (``experiments/gpu_profile.py``, 2026-11-30 00:33): each
network's latency brought to the speed of the layer-sum profile's build by the speed anchors timed
in the same batch of rounds (``measured_ms``; the host's speed moved by up to 1.4x between phases
of the run). Predictions need no GPU, so every predictor is scored here on those same timings:

- the layer sum: ``profile_layer_sum.yaml`` (``augur-nas profile --backend torch --torch-device cuda``);
- with the per-family correction: ``calibrated.yaml`` (``augur-nas calibrate`` on the H200, shipped
  as ``device_profiles/h200-torch-cuda.yaml``), its predictions brought to the layer-sum profile's
  speed by the ratio of the two profiles' anchors (validate does the same with each profile's own);
- a diagnostic: ``per_call + per_layer * layers`` (no kernel model at all) fitted on the calibration
  networks of the profile run (``raw_torch.json.gz``) and of calibrate (never on the zoo);
- the first run (``run1_*``), before the fixes (per-group grouped convs, the kernel scale set to 1
  after a fit without it, the memory children beside the parent's GPU memory).
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RUN = ROOT / "experiments" / "gpu_profile_h200"


def table_of(model):
    from augur_nas import lower

    return lower(model, np.zeros((1, model.n_genes), dtype=np.int64))


def accuracy(pred, meas, noise, max_noise=0.05) -> dict:
    e = np.asarray(pred) / np.asarray(meas) - 1
    clean = np.asarray(noise) <= max_noise
    return {"clean_within_10pct": round(float(np.mean(np.abs(e[clean]) < 0.1)), 3), "clean_n": int(clean.sum()),
            "all_within_10pct": round(float(np.mean(np.abs(e) < 0.1)), 3), "n": int(len(e)),
            "median_abs_error_pct": round(float(np.median(np.abs(e)) * 100), 1),
            "errors_pct": [round(float(x) * 100, 1) for x in e]}


def anchor_ratio(a, b) -> float:
    """The median over the small anchors of (b's anchor time / a's)."""
    ra, rb = a.fit["anchors"]["latency_ms"], b.fit["anchors"]["latency_ms"]
    return float(np.median([rb[k] / ra[k] for k in ra if k in rb and k != "anchor_large"]))


def layers_and_call(prof, tables):
    """The priced layers of each table (as the profile's overheads count them)."""
    return np.array([sum(1 for s, op in enumerate(t.ops) if t.rows["mask"][s, 0] and prof.latency.family(op)[0] != "free")
                     for t in tables], dtype=float)


def main() -> int:
    from augur_nas import load_model
    from augur_nas.costmodel import latency_ms, memory_mb
    from augur_nas.costmodel._nnls import nnls
    from augur_nas.measure._calibset import calibration_set
    from augur_nas.models import load_space_dict
    from augur_nas.profile import load_profile

    rep = json.load(open(RUN / "gpu_profile.json"))
    rows = rep["zoo"]["per_network"]
    labels = [r["label"] for r in rows]
    meas = np.array([r["measured_ms"] for r in rows])
    raw_ms = np.array([r["measured_raw_ms"] for r in rows])
    noise = np.array([r["noise"] for r in rows])
    mem = np.array([r["measured_mb"] for r in rows])
    tables = [table_of(load_model(ROOT / "spaces" / "zoo" / lab)) for lab in labels]
    base = load_profile(RUN / "profile_layer_sum.yaml")
    cal = load_profile(RUN / "calibrated.yaml")
    out = {"networks": labels, "measured_ms": meas.round(4).tolist(), "noise_floor_pct": {
        "median": round(float(np.median(noise)) * 100, 2), "p90": round(float(np.percentile(noise, 90)) * 100, 2)},
        "machine_speed": rep["zoo"]["machine_speed"], "predictors": {}}
    pred_base = np.array([latency_ms(t, base)[0][0] for t in tables])
    out["predictors"]["layer_sum"] = accuracy(pred_base, meas, noise)
    out["predictors"]["layer_sum_raw_timings"] = accuracy(pred_base, raw_ms, noise)
    r = anchor_ratio(base, cal)
    pred_cal = np.array([latency_ms(t, cal)[0][0] for t in tables]) / r
    out["predictors"]["calibrated"] = dict(accuracy(pred_cal, meas, noise), anchor_ratio=round(r, 4))
    macs = np.array([r_["macs"] for r_ in rows])
    out["predictors"]["macs_loglog_in_sample"] = rep["zoo"]["clean"]["macs_loglog"]
    # the diagnostic: per_call + per_layer * layers, fitted on calibration networks only
    rec = json.load(gzip.open(RUN / "raw_torch.json.gz"))
    cal_tables = [table_of(load_space_dict(s)) for s in rec["calibration"]["specs"]]
    Lc, Yc = layers_and_call(base, cal_tables), np.array(rec["calibration"]["Y"])
    models = {n.name: n.model for n in calibration_set()}
    set_names = list(cal.calibration["measured_ms"])
    Ls = layers_and_call(base, [table_of(models[n]) for n in set_names])
    Ys = np.array([cal.calibration["measured_ms"][n] for n in set_names]) / r
    L, Y = np.concatenate([Lc, Ls]), np.concatenate([Yc, Ys])
    w = 1 / Y
    per_call, per_layer = nnls(np.stack([np.ones_like(L), L], 1) * w[:, None], Y * w)
    pred_l = per_call + per_layer * layers_and_call(base, tables)
    out["predictors"]["layer_count_only"] = dict(accuracy(pred_l, meas, noise), per_call_ms=round(float(per_call), 4),
                                                 per_layer_ms=round(float(per_layer), 5), fitted_on=len(Y))
    pm = np.array([float(memory_mb(t, cal)[0]) for t in tables])
    e = pm / mem - 1
    out["memory"] = {"within_15pct": round(float(np.mean(np.abs(e) < 0.15)), 3),
                     "median_abs_error_pct": round(float(np.median(np.abs(e)) * 100), 1),
                     "errors_pct": [round(float(x) * 100, 1) for x in e]}
    r1 = json.load(open(RUN / "run1_gpu_profile.json"))["zoo"]
    out["run1"] = {"layer_sum": r1["clean"]["layer_sum"], "memory": r1["memory"]}
    with open(ROOT / "experiments" / "gpu_profile_rescore.json", "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1)
    print(f"zoo: {len(labels)} networks, noise floor median {out['noise_floor_pct']['median']}% "
          f"p90 {out['noise_floor_pct']['p90']}%")
    for k, v in out["predictors"].items():
        if "clean_within_10pct" in v:
            print(f"{k:24s} within ±10%: {v['clean_within_10pct'] * 100:5.1f}% of {v['clean_n']} (noise <= 5%), "
                  f"{v['all_within_10pct'] * 100:5.1f}% of {v['n']}; median |error| {v['median_abs_error_pct']}%")
    print(f"memory within ±15%: {out['memory']['within_15pct'] * 100:.0f}% (median {out['memory']['median_abs_error_pct']}%)")
    print(f"run 1 (before the fixes): layer sum {r1['clean']['layer_sum']['within_10pct'] * 100:.0f}%, "
          f"memory {r1['memory']['within_15pct'] * 100:.0f}% within ±15%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
