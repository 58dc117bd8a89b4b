"""The exact Pareto front by dynamic programming over segments (``augur_nas.exact_front``):
exactness on the enumerable spaces, speed and memory on spaces/mobile.yaml, and NSGA-II next to it.

1. Exactness: for spaces/nb201.yaml and spaces/mobile_small.yaml on every Jetson profile and on the
   measured profile x86-2core-ort without its residual (fusion and layout rules), and for
   spaces/resnet.yaml (a choice between whole subnetworks, conditioned on), the exact front of
   (latency, MACs) (no limit, and a latency limit at the median) against the front of every
   candidate priced by ``Oracle.evaluate``: sizes, and the largest relative difference of the DP's
   values from the oracle's re-pricing of its members.
2. Speed: spaces/mobile.yaml (2.5e19 candidates), tk1-gpu, latency <= 50 ms: the exact front of
   (latency, MACs), its wall time (one process, numpy single-threaded: run with
   ``OMP_NUM_THREADS=1``), the process's peak resident memory, the DP's state and point counts.
3. NSGA-II: ``--runs`` searches of ``--trials`` trials (default 20 x 3,000) on the same problem,
   plain NSGA-II (``sampler="nsga2"``: its first population random, not seeded with the exact
   front); for each, its front's size and span, and how many of its points dominate a member of
   the exact front (must be 0: the exact front cannot be beaten) and how many exact members each
   search's front finds.
4. Harder problems on spaces/mobile.yaml: the whole front without a limit, a latency limit of 80
   ms, and 80 ms with a memory limit of 200 MB (wall time, partial points).

The figures go to experiments/exact_front.json and experiments/exact_front.md (``--out`` to put
them elsewhere), each run's as it finishes.

    OMP_NUM_THREADS=1 taskset -c 1 python experiments/exact_front.py [--runs 20] [--trials 3000]
        [--skip-exhaustive] [--skip-more] [--out experiments/exact_front]

Run time on one core (`taskset -c 1`, 2026-11-29 03:56-04:16, a 2-core machine loaded by other
work on the other core): the mobile front 0.16 s, each NSGA-II run of 3,000 trials 20-64 s (20
runs: 929 s), the harder problems 170 s (the memory limit 157 s of it; 32-37 s on a lighter load),
so `--runs 20 --skip-exhaustive` about 18 minutes; the exactness section adds several minutes (the
measured profile prices mobile_small's 1.2M candidates and nb201's grids).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

from augur_nas import Oracle, exact_front, load_space
from augur_nas._atomic import atomic_write
from augur_nas.profile import load_profile
from augur_nas.search import pareto_mask, search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
JETSON = ("tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu")
MEASURED = "x86-2core-ort (no residual)"
REL = 1e-9


def _profile(dev):
    if dev != MEASURED:
        return dev
    p = load_profile("x86-2core-ort")
    p.residual = None  # a fresh object per call: the shipped profile is not shared
    return p


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def exactness(log) -> list:
    rows = []
    for name in ("nb201", "mobile_small", "resnet"):
        sp = load_space(os.path.join(ROOT, "spaces", f"{name}.yaml"))
        X = sp.enumerate()
        for dev in JETSON + (MEASURED,):
            o = Oracle(sp, _profile(dev))
            R = o.evaluate(X, breakdown=False)
            for limit in (None, float(np.median(R["latency_ms"]))):
                limits = {} if limit is None else {"latency_ms": limit}
                f = exact_front(o, None, limits)
                lat = R["latency_ms"] if limit is None else np.where(R["latency_ms"] <= limit, R["latency_ms"], np.nan)
                n_exh = int(pareto_mask(lat, R["macs"]).sum())
                again = o.evaluate(f.X, breakdown=False)
                err = max(float(np.max(np.abs(f.values[k] - again[k]) / np.abs(again[k]))) for k in
                          ("latency_ms", "macs", "params", "memory_mb"))
                row = {"space": name, "device": dev, "latency_limit_ms": limit, "exact_front": len(f),
                       "exhaustive_front": n_exh, "max_rel_diff_repriced": err, "dp_seconds": f.stats["seconds"]}
                rows.append(row)
                log(f"{name:13s} {dev:27s} limit {'-' if limit is None else f'{limit:7.2f}'}: exact {len(f):4d}, "
                    f"exhaustive {n_exh:4d}, re-priced max rel diff {err:.1e}, {f.stats['seconds']:.2f} s")
    return rows


def mobile(log) -> tuple:
    sp = load_space(os.path.join(ROOT, "spaces", "mobile.yaml"))
    t = time.perf_counter()
    f = exact_front(sp, "tk1-gpu", {"latency_ms": 50.0})
    wall = time.perf_counter() - t
    lat, macs = f.values["latency_ms"], f.values["macs"]
    row = {"space": "mobile", "size": float(sp.size), "device": "tk1-gpu", "latency_limit_ms": 50.0, "front": len(f),
           "latency_span_ms": [float(lat.min()), float(lat.max())], "macs_span_M": [float(macs.min() / 1e6),
                                                                                   float(macs.max() / 1e6)],
           "wall_s": wall, "grid_s": f.stats["grid_seconds"], "dp_s": f.stats["dp_seconds"],
           "peak_rss_gb": _peak_rss_gb(), "max_states": max(f.stats["states"]),
           "max_points": f.stats["peak_points"], "expanded": f.stats["expanded"]}
    log(f"mobile tk1-gpu <= 50 ms: {len(f)} Pareto-optimal points, latency {lat.min():.2f}-{lat.max():.2f} ms, "
        f"MACs {macs.min() / 1e6:.1f}-{macs.max() / 1e6:.1f} M; {wall:.2f} s (grids {row['grid_s']:.2f} s, "
        f"DP {row['dp_s']:.2f} s), peak RSS {row['peak_rss_gb']:.2f} GB, {row['max_states']} states and "
        f"{row['max_points']:,} partial points at most")
    return f, row


def mobile_more(log) -> list:
    """Harder problems on the same space: the whole front without a limit, and a memory limit
    next to the latency one (a third compared column: the additive memory terms)."""
    sp = load_space(os.path.join(ROOT, "spaces", "mobile.yaml"))
    rows = []
    for limits in ({}, {"latency_ms": 80.0}, {"latency_ms": 80.0, "memory_mb": 200.0}):
        t = time.perf_counter()
        f = exact_front(sp, "tk1-gpu", limits)
        wall = time.perf_counter() - t
        lat = f.values["latency_ms"]
        rows.append({"limits": limits, "front": len(f), "latency_span_ms": [float(lat.min()), float(lat.max())],
                     "wall_s": wall, "max_points": f.stats["peak_points"], "peak_rss_gb": _peak_rss_gb()})
        log(f"mobile tk1-gpu {limits or 'no limit'}: {len(f)} Pareto-optimal points, {lat.min():.2f}-{lat.max():.2f} ms, "
            f"{wall:.2f} s, {f.stats['peak_points']:,} partial points at most, peak RSS {_peak_rss_gb():.2f} GB")
    return rows


def nsga2_runs(f, runs, trials, log, seeded=False):
    """One row per run, as each finishes. ``seeded``: the default search of ``--trials N`` (its first
    population is the exact front of the layer sum, so it starts on the front); else plain NSGA-II."""
    el, em = f.values["latency_ms"], f.values["macs"]
    for seed in range(runs):
        t = time.perf_counter()
        try:
            r = search(os.path.join(ROOT, "spaces", "mobile.yaml"), "tk1-gpu", latency_ms=50.0, trials=trials,
                       seed=seed, progress=False, sampler=None if seeded else "nsga2")  # named: not seeded
            sl = np.array([m["latency_ms"] for m in r.front])
            sm = np.array([m["macs"] for m in r.front])
        except Exception as e:  # nothing feasible found: an empty front
            log(f"  NSGA-II seed {seed}: {type(e).__name__}: {str(e)[:80]}")
            sl = sm = np.zeros(0)
        # a search point dominates an exact member: beyond the summation tolerance, better in one, no worse in both
        dom = sum(bool(((sl <= a * (1 + REL)) & (sm >= b * (1 - REL)) & ((sl < a * (1 - REL)) | (sm > b * (1 + REL)))).any())
                  for a, b in zip(el, em))
        found = sum(bool(((np.abs(sl - a) <= REL * a) & (np.abs(sm - b) <= REL * b)).any()) for a, b in zip(el, em))
        row = {"seed": seed, "front": int(len(sl)), "latency_span_ms": [float(sl.min()), float(sl.max())] if len(sl) else None,
               "macs_span_M": [float(sm.min() / 1e6), float(sm.max() / 1e6)] if len(sm) else None,
               "exact_members_dominated": dom, "exact_members_found": found, "seconds": time.perf_counter() - t}
        span = (f"{sl.min():.2f}-{sl.max():.2f} ms, {sm.min() / 1e6:.1f}-{sm.max() / 1e6:.1f} M MACs" if len(sl)
                else "nothing feasible")
        log(f"  NSGA-II seed {seed:2d}: {len(sl)} points, {span}; exact members dominated {dom}, found {found}/{len(el)}")
        yield row


def _markdown(out, runs, trials) -> str:
    """The figures as a Markdown page (experiments/exact_front.md)."""
    m = out.get("mobile")
    lines = ["# The exact front (experiments/exact_front.py)", "",
             "Written by `OMP_NUM_THREADS=1 taskset -c 1 python experiments/exact_front.py`; every figure below "
             "comes from experiments/exact_front.json of the same run. Times are wall seconds on the machine it "
             "ran on (see the docs for its load).", ""]
    if m:
        lines += ["## spaces/mobile.yaml, tk1-gpu, latency <= 50 ms", "",
                  f"Exact front of (latency, MACs): **{m['front']} Pareto-optimal architectures**, latency "
                  f"{m['latency_span_ms'][0]:.2f}-{m['latency_span_ms'][1]:.2f} ms, MACs {m['macs_span_M'][0]:.1f}-"
                  f"{m['macs_span_M'][1]:.1f} M, in {m['wall_s']:.2f} s (grids {m['grid_s']:.2f} s, DP {m['dp_s']:.2f} s), "
                  f"peak RSS {m['peak_rss_gb']:.2f} GB, {m['max_states']} DP states and {m['max_points']:,} partial "
                  f"points at most.", ""]
    rows = out.get("nsga2") or []
    if rows:
        dom = sum(r["exact_members_dominated"] for r in rows)
        how = "seeded with the exact front" if out.get("nsga2_seeded") else "plain, first population random"
        lines += [f"## NSGA-II, {len(rows)} runs of {trials:,} trials (seeds 0-{len(rows) - 1}, {how})", "",
                  f"Exact members dominated by any NSGA-II point, all runs: **{dom}**. Runs that found every exact "
                  f"member: {sum(r['exact_members_found'] == (m['front'] if m else -1) for r in rows)}; runs that found "
                  f"none (their whole front dominated by the exact one): "
                  f"{sum(r['exact_members_found'] == 0 for r in rows)}.", "",
                  "| seed | front | latency span (ms) | MACs span (M) | exact members found | dominated | s |",
                  "|---:|---:|---|---|---:|---:|---:|"]
        for r in rows:
            ls = "-" if r["latency_span_ms"] is None else f"{r['latency_span_ms'][0]:.2f}-{r['latency_span_ms'][1]:.2f}"
            ms = "-" if r["macs_span_M"] is None else f"{r['macs_span_M'][0]:.1f}-{r['macs_span_M'][1]:.1f}"
            lines.append(f"| {r['seed']} | {r['front']} | {ls} | {ms} | {r['exact_members_found']}/{m['front'] if m else '?'} "
                         f"| {r['exact_members_dominated']} | {r['seconds']:.1f} |")
        lines.append("")
    if out.get("mobile_more"):
        lines += ["## Harder problems on spaces/mobile.yaml (tk1-gpu)", "", "| limits | front | latency span (ms) | s | "
                  "partial points at most | peak RSS (GB) |", "|---|---:|---|---:|---:|---:|"]
        for r in out["mobile_more"]:
            lines.append(f"| {r['limits'] or 'none'} | {r['front']} | {r['latency_span_ms'][0]:.2f}-"
                         f"{r['latency_span_ms'][1]:.2f} | {r['wall_s']:.2f} | {r['max_points']:,} | {r['peak_rss_gb']:.2f} |")
        lines.append("")
    if out.get("exactness"):
        lines += ["## Exactness against every candidate priced by Oracle.evaluate", "",
                  "| space | profile | latency limit (ms) | exact front | exhaustive front | max rel. diff re-priced | DP s |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for r in out["exactness"]:
            lim = "-" if r["latency_limit_ms"] is None else f"{r['latency_limit_ms']:.2f}"
            lines.append(f"| {r['space']} | {r['device']} | {lim} | {r['exact_front']} | {r['exhaustive_front']} | "
                         f"{r['max_rel_diff_repriced']:.1e} | {r['dp_seconds']:.2f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20, help="NSGA-II runs (seeds 0..runs-1)")
    ap.add_argument("--trials", type=int, default=3000, help="trials per NSGA-II run")
    ap.add_argument("--seeded", action="store_true", help="run the default search (NSGA-II seeded with the exact "
                    "front) instead of plain NSGA-II")
    ap.add_argument("--skip-exhaustive", action="store_true", help="skip the exactness check (minutes)")
    ap.add_argument("--skip-more", action="store_true", help="skip the harder mobile problems (a minute)")
    ap.add_argument("--out", default=os.path.join(ROOT, "experiments", "exact_front"),
                    help="write the figures to OUT.json and OUT.md (default experiments/exact_front)")
    a = ap.parse_args(argv)
    log = lambda s: print(s, flush=True)  # noqa: E731
    out = {"runs": a.runs, "trials": a.trials, "nsga2_seeded": a.seeded}

    def save():  # after every section: a long run interrupted keeps what it measured
        atomic_write(a.out + ".json", json.dumps(out, indent=1) + "\n")
        atomic_write(a.out + ".md", _markdown(out, a.runs, a.trials) + "\n")

    f, out["mobile"] = mobile(log)  # first: the peak memory is the DP's own
    save()
    out["nsga2"] = []
    for row in nsga2_runs(f, a.runs, a.trials, log, a.seeded):
        out["nsga2"].append(row)
        save()
    if out["nsga2"]:
        dom = sum(r["exact_members_dominated"] for r in out["nsga2"])
        log(f"NSGA-II, {a.runs} runs x {a.trials} trials: {dom} exact members dominated in all; fronts of "
            f"{min(r['front'] for r in out['nsga2'])}-{max(r['front'] for r in out['nsga2'])} points against "
            f"the exact {len(f)}")
    if not a.skip_more:
        out["mobile_more"] = mobile_more(log)
        save()
    if not a.skip_exhaustive:
        out["exactness"] = exactness(log)
        save()
    log(f"figures: {a.out}.json, {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
