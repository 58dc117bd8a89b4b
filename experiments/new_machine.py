"""Benchmark: augur-nas on a new machine, from nothing (issue 11).

    python experiments/new_machine.py                       # the full run (about 20 minutes on 2 cores)
    python experiments/new_machine.py --quick               # a smoke run with tiny budgets (minutes)

Steps (the exact commands go into the report):

1. the machine's fingerprint (``augur_nas.fingerprint.machine_fingerprint``);
2. the one-command profile: ``augur-nas profile --backend onnxruntime --name NAME -o OUT/profile.yaml``
   with its defaults (kernels, calibration networks, the per-family correction), wall time;
3. ``augur-nas calibrate --device BASE -o OUT/calibrated.yaml`` from a profile of another processor
   (default: the shipped ``x86-2core-ort``, an AVX2 EPYC), wall time;
4. ``augur-nas calibrate --device BASE --from-measurements OUT/first20.csv``: the same correction
   from 20 of the calibration networks' latencies as timed in step 3 (a CSV, as a phone's benchmark
   tool would give), scored on the 4 others and on the validation set; and from all 24 with
   ``--graph-rules OUT/profile.yaml`` (the graph rules of a profile of the target's processor kind,
   which a CSV cannot carry), scored on the validation set;
5. the validation set, measured once: the published-CNN zoo (spaces/zoo/*.yaml; never used by any
   fitting step) and ``--samples`` samples (seed 0) of spaces/mobile.yaml, resnet.yaml and
   nb201.yaml, timed interleaved with the profiles' speed anchors; each profile's predictions are
   scored against the latencies brought to its own speed (its anchors); the MACs log-log baseline
   is fitted on the calibration set's timings;
6. the report: OUT/new_machine.md and OUT/new_machine.json (fingerprint, wall times, accuracy side
   by side over the networks measured within 5% noise and over all, the noise floor).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
VAL_SPACES = ["spaces/mobile.yaml", "spaces/resnet.yaml", "spaces/nb201.yaml"]


def run_cli(args, log) -> float:
    """Run one augur-nas command; returns its wall time (s). Its stderr goes to the log."""
    cmd = [sys.executable, "-m", "augur_nas.cli", *map(str, args)]
    log.append("augur-nas " + " ".join(map(str, args)))
    t = time.monotonic()
    r = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True)
    wall = time.monotonic() - t
    sys.stderr.write(r.stderr[-3000:])
    if r.returncode != 0:
        raise SystemExit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    print(r.stdout.strip())
    return wall


def validation_set(samples: int):
    from augur_nas.models import load_model
    from augur_nas.models import load_space

    items = [(Path(p).stem, "zoo", load_model(p)) for p in sorted(glob.glob(str(ROOT / "spaces/zoo/*.yaml")))]
    for path in VAL_SPACES:
        space = load_space(ROOT / path)
        for i, x in enumerate(space.sample(samples, seed=0)):
            items.append((f"{space.name}[{i}]", "samples", space.decode(x)))
    return items


def measure(items, profile, rounds: int, max_wait_s: float):
    """Each network's latency at ``profile``'s speed, its noise, and the anchors' timings now."""
    from augur_nas.measure._measure import measure_networks, stderr_progress
    from augur_nas.measure._profiling import profile_anchors
    from augur_nas.measure._runners import prepare
    from augur_nas.measure._settings import RuntimeSettings

    refs, anchors = profile_anchors(profile)
    settings = RuntimeSettings.from_dict(profile.runtime_settings)
    with tempfile.TemporaryDirectory(prefix="augur-newmachine-") as d:
        nets = prepare([(lab, m) for lab, _, m in items] + anchors, d)
        res = measure_networks(nets, settings, rounds=rounds, round_s=0.05, memory=False, retry_noise=0.05, retries=1,
                               max_wait_s=max_wait_s, references=refs, progress=stderr_progress("validation"))
    by = {r["label"]: r["latency"] for r in res}
    return by, {lab: by[lab]["median_ms"] for lab in refs if lab in by}


def predict(items, profile) -> np.ndarray:
    from augur_nas.costmodel import latency_ms
    from augur_nas.lowering import lower

    out = []
    for _, _, m in items:
        t = lower(m, np.zeros((1, m.n_genes), dtype=np.int64))
        out.append(float(latency_ms(t, profile)[0][0]))
    return np.array(out)


def speed_ratio(profile_a, profile_b) -> float:
    """How much slower ``profile_b``'s anchors ran than ``profile_a``'s (median over the anchors)."""
    a = profile_a.fit.get("anchors", {}).get("latency_ms", {})
    b = profile_b.fit.get("anchors", {}).get("latency_ms", {})
    r = [b[k] / a[k] for k in a if k in b and a[k] > 0]
    return float(np.median(r)) if r else 1.0


def score(pred, meas, noise, groups, max_noise=0.05) -> dict:
    from augur_nas.measure._metrics import accuracy

    out = {}
    for g in ("zoo", "samples"):
        sel = np.array([x == g for x in groups])
        clean = sel & (noise <= max_noise)
        out[g] = {"clean": accuracy(pred[clean], meas[clean]), "all": accuracy(pred[sel], meas[sel]),
                  "excluded_noisy": int(sel.sum() - clean.sum())}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "experiments" / "new_machine"), help="folder of the outputs")
    ap.add_argument("--name", default="this-machine-ort", help="the new profile's name")
    ap.add_argument("--base", default="x86-2core-ort", help="a profile of another processor to calibrate from")
    ap.add_argument("--profile-budget-s", type=float, default=None, help="augur-nas profile --budget-s (default: its own)")
    ap.add_argument("--calibrate-budget-s", type=float, default=None, help="augur-nas calibrate --budget-s")
    ap.add_argument("--samples", type=int, default=30, help="samples per space (seed 0)")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--max-wait-s", type=float, default=120.0)
    ap.add_argument("--quick", action="store_true", help="tiny budgets: checks that the script runs")
    args = ap.parse_args(argv)
    if args.quick:
        args.profile_budget_s = args.profile_budget_s or 40
        args.calibrate_budget_s = args.calibrate_budget_s or 10
        args.samples, args.rounds, args.max_wait_s = min(args.samples, 3), 3, 0.0
    os.makedirs(args.out, exist_ok=True)
    from augur_nas.fingerprint import machine_fingerprint
    from augur_nas.measure._settings import RuntimeSettings

    log, wall = [], {}
    rep = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "fingerprint": machine_fingerprint(RuntimeSettings()), "commands": log}
    prof_path, cal_path = os.path.join(args.out, "profile.yaml"), os.path.join(args.out, "calibrated.yaml")
    budget = ["--budget-s", args.profile_budget_s] if args.profile_budget_s else []
    wall["profile"] = run_cli(["profile", "--backend", "onnxruntime", "--name", args.name, "-o", prof_path, *budget,
                               "--record", os.path.join(args.out, "profile_record.json.gz")], log)
    budget = ["--budget-s", args.calibrate_budget_s] if args.calibrate_budget_s else []
    wall["calibrate"] = run_cli(["calibrate", "--device", args.base, "-o", cal_path, *budget], log)
    profiles = load_all(args, prof_path, cal_path, log, wall)
    rep["wall_s"] = {k: round(v, 1) for k, v in wall.items()}
    rep.update(validate_all(args, profiles))
    write_report(args.out, rep)
    return 0


def load_all(args, prof_path, cal_path, log, wall) -> dict:
    """The predictors: the new profile (with and without its correction), the calibrated base, and
    the base calibrated from the calibration timings written as a CSV: 20 of them, and all 24 with
    the graph rules of a profile of the target's processor kind (a user who times the whole set; here
    the profile just built on this machine: its rules only, not its costs)."""
    from augur_nas.measure._calibrate import uncorrected
    from augur_nas.profile import load_profile

    prof, cal = load_profile(prof_path), load_profile(cal_path)
    names = sorted(cal.calibration.get("measured_ms", {}))

    def from_csv(key, csv_name, rows, name, extra=()):
        """``calibrate --from-measurements`` on ``rows`` of the calibrate run's timings (wall time in
        ``wall[key]``); the profile carries that run's anchors, the speed its latencies were timed at."""
        csv, out = os.path.join(args.out, csv_name), os.path.join(args.out, f"{key}.yaml")
        measured = cal.calibration["measured_ms"]
        with open(csv, "w", encoding="utf-8") as f:
            f.write("model,latency_ms\n" + "".join(f"{n},{measured[n]}\n" for n in rows))
        wall[key] = run_cli(["calibrate", "--device", args.base, "--from-measurements", csv, *extra, "-o", out,
                             "--name", name], log)
        p = load_profile(out)
        p.fit = {"anchors": cal.fit.get("anchors", {})}
        return p

    return {"profile": prof, "layer_sum": uncorrected(prof), "calibrated": cal,
            "from_measurements": from_csv("from_measurements", "first20.csv", names[:20], "from-20-measurements"),
            "from_measurements_rules": from_csv("from_measurements_rules", "all24.csv", names,
                                                "from-24-measurements-rules", ("--graph-rules", prof_path)),
            "held_out_calibration": names[20:]}


def host_state(prof, anchors_now: dict) -> dict:
    """The machine's speed while the profile was built (its anchors at the end over the start of
    the build) and during the validation (the anchors then over the profile's): this host
    alternates between two speeds, and the validation brings every latency to the profile's speed
    by the median anchor, which does not serve every kernel alike."""
    from augur_nas.measure._profiling import anchor_speed, memory_contention

    anchors = prof.fit.get("anchors") or {}
    now = anchor_speed(anchors_now, anchors.get("latency_ms") or {})
    out = {"build_drift": (anchors.get("build_drift") or {}).get("end_over_start"),
           "validation_speed": round(now[0], 4) if now else None,
           "validation_per_anchor": {k: round(v, 4) for k, v in (now[1] if now else {}).items()}}
    busy = memory_contention(now[1], now[0]) if now else None
    if busy:  # the large networks' latencies were the contended memory's, not the machine's own
        out["warning"] = busy
    return out


def validate_all(args, profiles) -> dict:
    from augur_nas.measure._calibset import calibration_set
    from augur_nas.measure._metrics import accuracy, macs_loglog_fit, macs_loglog_predict

    prof = profiles["profile"]
    items = validation_set(args.samples)
    by, anchors_now = measure(items, prof, args.rounds, args.max_wait_s)
    meas = np.array([by[lab].get("normalized_ms") or by[lab]["median_ms"] for lab, _, _ in items])
    noise = np.array([by[lab]["noise"] for lab, _, _ in items])
    groups = [g for _, g, _ in items]
    out = {"networks": {"zoo": groups.count("zoo"), "samples": groups.count("samples")},
           "noise_floor": {"median_pct": round(float(np.median(noise)) * 100, 2),
                           "p90_pct": round(float(np.percentile(noise, 90)) * 100, 2)},
           "host": host_state(prof, anchors_now)}
    preds = {}
    for key in ("layer_sum", "profile", "calibrated", "from_measurements", "from_measurements_rules"):
        ratio = speed_ratio(prof, profiles[key])  # its speed against the new profile's
        preds[key] = predict(items, profiles[key]) / ratio
    from augur_nas.analysis import analyze

    cal_ms = prof.calibration.get("measured_ms", {})
    cal_nets = [n for n in calibration_set() if n.name in cal_ms]
    coef = macs_loglog_fit([analyze(n.model)["totals"]["macs"] for n in cal_nets], [cal_ms[n.name] for n in cal_nets])
    preds["macs_loglog"] = macs_loglog_predict(coef, [analyze(m)["totals"]["macs"] for _, _, m in items])
    out["accuracy"] = {k: score(v, meas, noise, groups) for k, v in preds.items()}
    out["per_network"] = [{"label": lab, "group": g, "measured_ms": round(float(meas[i]), 4),
                           "noise_pct": round(float(noise[i]) * 100, 2),
                           **{k: round(float(v[i]), 4) for k, v in preds.items()}} for i, (lab, g, _) in enumerate(items)]
    rest = profiles["held_out_calibration"]
    fm = profiles["from_measurements"]
    cal = profiles["calibrated"]
    # both in the order of `rest` (the calibration set's own order differs: pairing the two orders
    # scored each network against another one's latency, 0 of 4 within 10 % where 4 of 4 were)
    models = {n.name: n.model for n in calibration_set()}
    m_rest = [cal.calibration["measured_ms"][n] for n in rest]
    p_rest = predict([(n, "cal", models[n]) for n in rest], fm)
    out["from_measurements_held_out_calibration"] = accuracy(p_rest, m_rest) if rest else {"n": 0}
    out["corrections"] = {"profile": prof.calibration.get("families"), "calibrated": cal.calibration.get("families"),
                          "from_measurements": fm.calibration.get("families"),
                          "from_measurements_rules": profiles["from_measurements_rules"].calibration.get("families")}
    return out


LABELS = {"layer_sum": "layer sum (the new profile before its correction)",
          "profile": "the one-command profile (layer sum + per-family correction)",
          "calibrated": "calibrate from the other processor's profile (90 s)",
          "from_measurements": "--from-measurements, 20 calibration networks timed here",
          "from_measurements_rules": "--from-measurements, all 24, --graph-rules of the new profile",
          "macs_loglog": "MACs log-log baseline (fitted on the calibration set)"}


def write_report(out, rep) -> None:
    with open(os.path.join(out, "new_machine.json"), "w", encoding="utf-8") as f:
        json.dump(rep, f, indent=1, default=float)
    fp = rep["fingerprint"]
    lines = [f"# augur-nas on a new machine ({rep['date']})", "",
             f"Machine: {fp.get('cpu_model')}, ISA {', '.join(fp.get('isa', []))}, {fp.get('physical_cores')} "
             f"physical / {fp.get('logical_cores')} logical cores, caches {fp.get('cache_kib')}, {fp.get('os')}, "
             f"ONNX Runtime {fp.get('runtime_version')} ({fp.get('threads')} thread).", "",
             "Wall times: " + ", ".join(f"{k} {v:.0f} s" for k, v in rep["wall_s"].items()), "",
             f"Validation: {rep['networks']['zoo']} published CNNs (spaces/zoo, never used for fitting) and "
             f"{rep['networks']['samples']} space samples (seed 0); noise floor: median split-half noise "
             f"{rep['noise_floor']['median_pct']:.1f}%, p90 {rep['noise_floor']['p90_pct']:.1f}%.", "",
             _host_line(rep.get("host") or {}), "",
             "| predictor | zoo ±10% (noise ≤ 5%) | zoo ±10% (all) | samples ±10% (noise ≤ 5%) | samples ±10% (all) |",
             "|---|---:|---:|---:|---:|"]
    for k, a in rep["accuracy"].items():
        z, s = a["zoo"], a["samples"]
        cell = lambda d: f"{100 * d.get('within_10pct', float('nan')):.0f}% (n={d.get('n', 0)})"  # noqa: E731
        lines.append(f"| {LABELS.get(k, k)} | {cell(z['clean'])} | {cell(z['all'])} | {cell(s['clean'])} | "
                     f"{cell(s['all'])} |")
    h = rep["from_measurements_held_out_calibration"]
    if h.get("n"):
        lines += ["", f"--from-measurements on the {h['n']} calibration networks it was not given: "
                      f"{100 * h['within_10pct']:.0f}% within ±10%."]
    lines += ["", "Commands:", ""] + [f"    {c}" for c in rep["commands"]]
    with open(os.path.join(out, "new_machine.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _host_line(h: dict) -> str:
    drift = "not recorded" if h.get("build_drift") is None else f"{h['build_drift']:.3f}"
    val = "not timed" if h.get("validation_speed") is None else f"{h['validation_speed']:.3f}"
    per = ", ".join(f"{k.replace('anchor_', '')} {v:.2f}" for k, v in (h.get("validation_per_anchor") or {}).items())
    return (f"Host speed: the profile's anchors at the end of its build over the start {drift}; during the "
            f"validation over the build {val}" + (f" ({per})" if per else "") + "."
            + (f" **Warning: {h['warning']}.**" if h.get("warning") else ""))


if __name__ == "__main__":
    sys.exit(main())
