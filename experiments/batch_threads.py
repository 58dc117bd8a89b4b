"""Benchmark: predicted against measured latency over batch sizes and thread counts (issue 14).

    python experiments/batch_threads.py --profile-1t P1.yaml --profile-2t P2.yaml      # <= 12 minutes
    python experiments/batch_threads.py --quick --profile-1t x86-2core-ort --profile-2t x86-2core-ort   # ~1 min

The published-CNN zoo (spaces/zoo/*.yaml) is exported at every batch size (``export_onnx(...,
batch=N)``, what ``augur-nas export --batch N`` writes) and timed with ONNX Runtime on this
machine, at 1 and 2 intra-op threads: for each (threads, batch) pair, all networks interleaved
in rounds (``measure_networks``, the protocol of ``augur-nas measure``) together with the speed
anchors of that thread count's profile, timed at batch 1 in every batch of rounds; each
latency is brought to the speed the profile was built at (``normalized_ms``), as
experiments/new_machine.py does. The prediction is the profile's (``Oracle(...).latency(x,
batch)``) for that thread count.

What fits in the time budget: the zoo networks are taken from the cheapest (predicted batch-1
latency) up while the estimated time (rounds x the sum over batches and threads of each
network's batch latency, plus export and loading) stays within ``--budget-s``; the report lists
the networks left out. Networks measured noisier than ``--max-noise`` are reported but scored
apart ("clean" against "all"); the noise floor (median and 90th percentile of the measurements'
split-half noise, and the spread of the anchors' speed) is printed beside the score.

Writes experiments/batch_threads.md and .json (``--out`` for another folder).
"""

from __future__ import annotations

import argparse
import datetime
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
TOLERANCE = 0.15
QUICK_NETS = ("squeezenet1_1", "mobilenet_v2", "resnet18")


def zoo_items(names=None):
    from augur_nas.models import load_model

    paths = sorted(glob.glob(str(ROOT / "spaces/zoo/*.yaml")))
    items = [(Path(p).stem, load_model(p)) for p in paths]
    return [it for it in items if names is None or it[0] in names]


_ORACLES: dict = {}  # (model id, profile name) -> Oracle: its segment grids are kept between batches


def predict(model, profile, batch: int) -> float:
    from augur_nas.oracle import Oracle

    key = (id(model), profile.name)
    if key not in _ORACLES:
        _ORACLES[key] = Oracle(model, profile)
    return float(_ORACLES[key].latency(np.zeros((1, model.n_genes), dtype=np.int64), batch)[0])


def choose(items, profiles: dict, batches, rounds: int, budget_s: float):
    """``(kept, left_out)``: the networks, cheapest first, whose estimated time fits the budget."""
    cost = []
    for lab, m in items:
        # every (threads, batch): rounds x max(batch latency, round length), plus loading and warm-up
        est = sum(rounds * max(predict(m, p, b) / 1000.0, 0.05) + 0.3 for p in profiles.values() for b in batches)
        cost.append((est, lab, m))
    cost.sort(key=lambda c: c[0])
    kept, out, used = [], [], 60.0  # a minute for exporting and the anchors
    for est, lab, m in cost:
        if used + est <= budget_s:
            kept.append((lab, m))
            used += est
        else:
            out.append(lab)
    return kept, out, used


def measure_pair(items, profile, threads: int, batch: int, rounds: int, max_wait_s: float, retries: int) -> dict:
    """``{label: latency dict}`` of the networks at ``batch`` images and ``threads`` threads, with
    the profile's anchors (batch 1) timed in the same rounds."""
    from augur_nas.measure._measure import measure_networks, stderr_progress
    from augur_nas.measure._profiling import profile_anchors
    from augur_nas.measure._runners import prepare
    from augur_nas.measure._settings import RuntimeSettings

    refs, anchors = profile_anchors(profile)
    settings = RuntimeSettings.from_dict(profile.runtime_settings, backend="onnxruntime", threads=threads, batch=batch)
    with tempfile.TemporaryDirectory(prefix="augur-batch-") as d:
        os.makedirs(os.path.join(d, "nets"))
        os.makedirs(os.path.join(d, "anchors"))
        nets = prepare(items, os.path.join(d, "nets"), batch=batch)
        nets += prepare(anchors, os.path.join(d, "anchors"), batch=1)
        res = measure_networks(nets, settings, rounds=rounds, round_s=0.05, memory=False, retry_noise=0.05, retries=retries,
                               max_wait_s=max_wait_s, references=refs,
                               progress=stderr_progress(f"threads {threads} batch {batch}"))
    return {r["label"]: r["latency"] for r in res}


def score(rows, max_noise: float) -> dict:
    def share(sel):
        e = np.array([r["error_pct"] for r in sel]) / 100.0
        return {"n": len(sel), "within_15pct": float(np.mean(np.abs(e) <= TOLERANCE)) if len(sel) else None,
                "median_abs_error_pct": float(np.median(np.abs(e)) * 100) if len(sel) else None,
                "worst_error_pct": float(e[np.argmax(np.abs(e))] * 100) if len(sel) else None}

    clean = [r for r in rows if r["noise"] <= max_noise]
    noise = np.array([r["noise"] for r in rows]) if rows else np.zeros(1)
    return {"clean": share(clean), "all": share(rows), "excluded_noisy": len(rows) - len(clean),
            "noise_median_pct": float(np.median(noise) * 100), "noise_p90_pct": float(np.percentile(noise, 90) * 100)}


def run(args) -> dict:
    from augur_nas.profile import load_profile

    profiles = {1: load_profile(args.profile_1t)}
    if args.profile_2t:
        profiles[2] = load_profile(args.profile_2t)
    for t, p in profiles.items():
        if p.threads is not None and p.threads != t:
            sys.stderr.write(f"note: {p.name} says it describes {p.threads} thread(s), used here for {t}\n")
    items = zoo_items(QUICK_NETS if args.quick else args.networks)
    kept, left_out, est = choose(items, profiles, args.batches, args.rounds, args.budget_s)
    sys.stderr.write(f"{len(kept)} networks, estimated {est:.0f} s; left out for time: {', '.join(left_out) or 'none'}\n")
    rows, speeds = [], []
    t0 = time.monotonic()
    for threads, prof in profiles.items():
        for b in args.batches:
            lat = measure_pair(kept, prof, threads, b, args.rounds, args.max_wait_s, 0 if args.quick else 1)
            for lab, m in kept:
                L = lat[lab]
                meas = L.get("normalized_ms") or L["median_ms"]
                pred = predict(m, prof, b)
                rows.append({"network": lab, "threads": threads, "batch": b, "profile": prof.name,
                             "measured_ms": meas, "raw_ms": L["median_ms"], "predicted_ms": pred,
                             "error_pct": 100.0 * (pred / meas - 1.0), "noise": L["noise"],
                             "speed": L.get("speed"), "predicted_ips": b * 1000.0 / pred,
                             "measured_ips": b * 1000.0 / meas})
                if L.get("speed"):
                    speeds.append(L["speed"])
    wall = time.monotonic() - t0
    by_pair = {f"{t}t-b{b}": score([r for r in rows if r["threads"] == t and r["batch"] == b], args.max_noise)
               for t in profiles for b in args.batches}
    sp = np.array(speeds) if speeds else np.ones(1)
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]), "quick": args.quick,
            "profiles": {str(t): p.name for t, p in profiles.items()}, "batches": list(args.batches),
            "rounds": args.rounds, "networks": [lab for lab, _ in kept], "left_out": left_out,
            "wall_s": wall, "overall": score(rows, args.max_noise), "by_threads_batch": by_pair,
            "anchor_speed": {"min": float(sp.min()), "median": float(np.median(sp)), "max": float(sp.max())},
            "rows": rows}


def rescore(args) -> dict:
    """The measurements of an earlier run (``--rescore FILE.json``) against these profiles'
    predictions: a changed model checked on the same timings without measuring again (the
    timings keep their date, noise and anchor speeds)."""
    from augur_nas.profile import load_profile

    with open(args.rescore, encoding="utf-8") as f:
        old = json.load(f)
    profiles = {1: load_profile(args.profile_1t)}
    if args.profile_2t:
        profiles[2] = load_profile(args.profile_2t)
    models = dict(zoo_items(set(old["networks"])))
    rows = []
    for r in old["rows"]:
        prof = profiles.get(r["threads"])
        if prof is None:
            continue
        pred = predict(models[r["network"]], prof, r["batch"])
        rows.append(dict(r, profile=prof.name, predicted_ms=pred, error_pct=100.0 * (pred / r["measured_ms"] - 1.0),
                         predicted_ips=r["batch"] * 1000.0 / pred))
    batches = sorted({r["batch"] for r in rows})
    by_pair = {f"{t}t-b{b}": score([r for r in rows if r["threads"] == t and r["batch"] == b], args.max_noise)
               for t in profiles for b in batches}
    return dict(old, command=" ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
                timings_of=f"{old['date']}: `python experiments/{old['command']}`", profiles={str(t): p.name for t, p in profiles.items()}, rows=rows,
                overall=score(rows, args.max_noise), by_threads_batch=by_pair)


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def write_report(out: Path, rep: dict) -> None:
    from augur_nas._atomic import atomic_write

    o = rep["overall"]
    lines = [
        "# Batch and threads: predicted against measured latency (ONNX Runtime, this machine)", "",
        f"Run {rep['date']}: `python experiments/{rep['command']}`" + (" (quick smoke run)" if rep["quick"] else "")
        + (f" (nothing measured: the timings of the run of {rep['timings_of']}, predicted again)" if rep.get("timings_of")
           else ""),
        "", "Profiles: " + ", ".join(f"{t} thread(s): `{n}`" for t, n in rep["profiles"].items())
        + f"; batches {', '.join(map(str, rep['batches']))}; {rep['rounds']} interleaved rounds per pair; "
        f"measuring took {rep['wall_s']:.0f} s.", "",
        f"Networks ({len(rep['networks'])}): {', '.join(rep['networks'])}."
        + (f" Left out for time: {', '.join(rep['left_out'])}." if rep["left_out"] else ""), "",
        f"**Within ±15%: {_pct(o['clean']['within_15pct'])} of {o['clean']['n']} clean measurements** (noise <= 5%), "
        f"{_pct(o['all']['within_15pct'])} of all {o['all']['n']}; median |error| {o['clean']['median_abs_error_pct'] or 0:.1f}%.",
        f"Noise floor: split-half noise median {o['noise_median_pct']:.1f}%, p90 {o['noise_p90_pct']:.1f}%; the anchors' "
        f"speed (latency now / when the profile was built) ranged {rep['anchor_speed']['min']:.2f}..{rep['anchor_speed']['max']:.2f}."
        + (" **The anchors ran far from the profile's speed: the profile probably describes another machine "
           "(`augur-nas check --device P`); these errors say nothing about the batch model.**"
           if not 0.7 <= rep["anchor_speed"]["median"] <= 1.4 else ""),
        "", "| threads | batch | n clean | within ±15% (clean) | within ±15% (all) | median abs err | worst | noise p90 |",
        "|---|---|---|---|---|---|---|---|"]
    for key, s in rep["by_threads_batch"].items():
        t, b = key.split("-b")
        lines.append(f"| {t[:-1]} | {b} | {s['clean']['n']} | {_pct(s['clean']['within_15pct'])} | "
                     f"{_pct(s['all']['within_15pct'])} | {s['all']['median_abs_error_pct'] or 0:.1f}% | "
                     f"{s['all']['worst_error_pct'] or 0:+.1f}% | {s['noise_p90_pct']:.1f}% |")
    lines += ["", "| network | threads | batch | measured ms | predicted ms | error | noise | measured images/s |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rep["rows"]:
        lines.append(f"| {r['network']} | {r['threads']} | {r['batch']} | {r['measured_ms']:.2f} | "
                     f"{r['predicted_ms']:.2f} | {r['error_pct']:+.1f}% | {100 * r['noise']:.1f}% | {r['measured_ips']:.1f} |")
    atomic_write(out / "batch_threads.md", "\n".join(lines) + "\n")
    atomic_write(out / "batch_threads.json", json.dumps(rep, indent=1) + "\n")


def _names(text: str) -> tuple:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    known = {Path(p).stem for p in glob.glob(str(ROOT / "spaces/zoo/*.yaml"))}
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"not zoo networks (spaces/zoo/*.yaml): {', '.join(unknown) or text!r}")
    return names


def _batches(text: str) -> tuple:
    from augur_nas import AugurError
    from augur_nas._batch import parse_batches

    try:
        return parse_batches(text)
    except AugurError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile-1t", default="x86-2core-ort", help="the profile that prices 1 intra-op thread")
    ap.add_argument("--profile-2t", default=None, help="the profile that prices 2 intra-op threads (none: 1 thread only)")
    ap.add_argument("--batches", type=_batches, default=(1, 2, 4, 8, 16, 32))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget-s", type=float, default=600.0, help="time for measuring (default 600: ~12 min in all)")
    ap.add_argument("--max-noise", type=float, default=0.05)
    ap.add_argument("--max-wait-s", type=float, default=60.0)
    ap.add_argument("--networks", type=_names, default=None, metavar="A,B",
                    help="these zoo networks only (default: every zoo network the budget allows, cheapest first)")
    ap.add_argument("--quick", action="store_true", help=f"{', '.join(QUICK_NETS)} at batch 1 and 4, 3 rounds (~1 min)")
    ap.add_argument("--out", default=None, help="folder of the report (default experiments/; with --rescore "
                                                 "experiments/batch_threads_rescored/)")
    ap.add_argument("--rescore", default=None, metavar="FILE.json",
                    help="measure nothing: predict the timings of an earlier run's JSON with these profiles")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = str(ROOT / "experiments" / ("batch_threads_rescored" if args.rescore else ""))
    if args.quick:
        args.batches, args.rounds, args.max_wait_s = (1, 4), 3, 2.0
    rep = rescore(args) if args.rescore else run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, rep)
    o = rep["overall"]
    print(f"within ±15%: {_pct(o['clean']['within_15pct'])} of {o['clean']['n']} clean, {_pct(o['all']['within_15pct'])} "
          f"of {o['all']['n']} all; noise median {o['noise_median_pct']:.1f}%; wrote {out / 'batch_threads.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
