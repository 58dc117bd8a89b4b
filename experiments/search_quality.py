"""How close does the default search get to the exact Pareto front, and how fast is it?

For spaces/nb201.yaml (15,625 architectures) and spaces/mobile_small.yaml (1,179,648) on one
device profile, the exact front of (predicted latency: min, MACs: max) is computed by enumerating
every candidate with the oracle (``--sampler exhaustive``); the default sampler (NSGA-II) then
runs 2,000 trials for several seeds, and the hypervolume of its front is compared with the
exact front's. Two scenarios per space: no limit, and a binding latency limit (the 25th
percentile of the space's latencies).

Hypervolume reference points (both reported; the pass criterion uses the first):
- ``nadir``: the worst feasible latency and the worst feasible objective of the whole space;
- ``front+10%``: the exact front's own nadir pushed out by 10% of the front's range (stricter:
  only the region between the front's extremes counts).

Then trials/s of a search with in-memory, journal-file and PostgreSQL storage (a throw-away
server, skipped with the reason when PostgreSQL or psycopg2 is missing), one worker each and
``--workers 2`` for the two shared storages.

    python experiments/search_quality.py [--device tk1-gpu] [--trials 2000] [--seeds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

from augur_nas import load_space
from augur_nas.oracle import Oracle
from augur_nas.search import hypervolume, iter_chunks, pareto_mask, search

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACES = [os.path.join(ROOT, "spaces", "nb201.yaml"), os.path.join(ROOT, "spaces", "mobile_small.yaml")]


def exact(space, oracle, limit):
    """Latency, MACs and feasibility of every candidate, by enumeration (chunks of 50,000)."""
    lat, macs = [], []
    for _, X in iter_chunks(space, 50000):
        r = oracle.evaluate(X)
        lat.append(r["latency_ms"])
        macs.append(r["macs"])
    lat, macs = np.concatenate(lat), np.concatenate(macs)
    feas = np.ones(len(lat), bool) if limit is None else lat <= limit
    return lat, macs, feas


def refs(lat, obj, feas):
    fl, fo = lat[feas], obj[feas]
    m = pareto_mask(fl, fo)
    el, eo = fl[m], fo[m]
    out = {"nadir": (float(fl.max()), float(fo.min()))}
    if len(el) > 1:
        out["front+10%"] = (float(el.max() + 0.1 * np.ptp(el)), float(eo.min() - 0.1 * np.ptp(eo)))
    return out, el, eo


def quality(args):
    rows = []
    for path in SPACES:
        space = load_space(path)
        oracle = Oracle(space, args.device)
        t = time.time()
        lat, macs, _ = exact(space, oracle, None)
        t_enum = time.time() - t
        for scen, limit in (("no limit", None), ("latency <= p25", float(np.percentile(lat, 25)))):
            feas = np.ones(len(lat), bool) if limit is None else lat <= limit
            R, el, eo = refs(lat, macs, feas)
            # the same front through the exhaustive sampler of augur-nas search (checks it too)
            ex = search(space, args.device, sampler="exhaustive", latency_ms=limit, out=None)
            ex_pts = sorted((round(r["latency_ms"], 9), r["macs"]) for r in ex.front)
            mine = sorted(zip(np.round(el, 9).tolist(), eo.tolist()))
            assert ex_pts == mine, "exhaustive sampler front differs from the direct enumeration"
            for sampler in args.samplers:
                for seed in range(args.seeds):
                    t = time.time()
                    res = search(space, args.device, sampler=sampler, trials=args.trials, seed=seed, latency_ms=limit,
                                 out=None, progress=False)
                    el_s = time.time() - t
                    fl = np.array([r["latency_ms"] for r in res.front])
                    fo = np.array([r["objective"] for r in res.front])
                    ratios = {}
                    for name, (rl, ro) in R.items():
                        hv_exact = hypervolume(el, eo, rl, ro)
                        ratios[name] = hypervolume(fl, fo, rl, ro) / hv_exact if hv_exact > 0 else float("nan")
                    rows.append({"space": space.name, "size": int(space.size), "scenario": scen, "limit_ms": limit,
                                 "sampler": sampler, "seed": seed, "trials": res.n_trials, "feasible": res.n_feasible,
                                 "front": len(res.front), "exact_front": int(len(el)),
                                 "hv_ratio_nadir": ratios["nadir"], "hv_ratio_front10": ratios.get("front+10%"),
                                 "seconds": el_s, "trials_per_s": res.n_trials / el_s, "enumeration_s": t_enum})
                    r = rows[-1]
                    print(f"{r['space']:<13} {scen:<15} {sampler:<7} seed {seed}: HV ratio {r['hv_ratio_nadir']:.4f} "
                          f"(front+10%: {r['hv_ratio_front10'] if r['hv_ratio_front10'] is None else round(r['hv_ratio_front10'], 4)}), "
                          f"front {r['front']} vs exact {r['exact_front']}, {r['seconds']:.1f} s", flush=True)
    return rows


def throughput(args):
    from augur_nas.search._pgserver import TempPostgres, find_postgres

    space = load_space(SPACES[1])
    rows = []
    tmp = tempfile.mkdtemp(prefix="augur-sq-")

    def bench(label, storage, workers, n):
        t = time.time()
        res = search(space, args.device, trials=n, seed=0, storage=storage, workers=workers, out=None, progress=False,
                     study_name=f"bench-{label}-{workers}".replace(" ", "_"))
        el = time.time() - t
        rows.append({"storage": label, "workers": workers, "trials": res.meta["trials_this_run"], "seconds": el,
                     "trials_per_s": res.meta["trials_this_run"] / el})
        print(f"{label:<11} workers {workers}: {res.meta['trials_this_run']} trials in {el:.1f} s = "
              f"{rows[-1]['trials_per_s']:.1f} trials/s", flush=True)

    bench("in-memory", None, 1, args.bench_trials)
    bench("journal", f"journal:{os.path.join(tmp, 'j1.log')}", 1, args.bench_trials)
    bench("journal", f"journal:{os.path.join(tmp, 'j2.log')}", 2, args.bench_trials)
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)
    b, why = find_postgres()
    if b is None:
        print(f"postgresql: skipped ({why})")
        rows.append({"storage": "postgresql", "skipped": why})
    else:
        with TempPostgres() as url:
            bench("postgresql", url, 1, args.bench_trials_pg)
            bench("postgresql", url, 2, args.bench_trials_pg)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="tk1-gpu")
    ap.add_argument("--trials", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--samplers", nargs="+", default=["nsga2", "random"],
                    help="samplers to compare (the default sampler is nsga2; tpe is slow at 2,000 trials)")
    ap.add_argument("--bench-trials", type=int, default=1000)
    ap.add_argument("--bench-trials-pg", type=int, default=300)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--json", default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    q = quality(args)
    print()
    print("| space | scenario | sampler | HV ratio (nadir ref) min / mean | HV ratio (front+10% ref) min / mean | front / exact | s per run |")
    print("|---|---|---|---|---|---|---|")
    keys = sorted({(r["space"], r["scenario"], r["sampler"]) for r in q}, key=lambda k: [r for r in q].index(
        next(r for r in q if (r["space"], r["scenario"], r["sampler"]) == k)))
    ok = True
    for k in keys:
        rs = [r for r in q if (r["space"], r["scenario"], r["sampler"]) == k]
        a = np.array([r["hv_ratio_nadir"] for r in rs])
        b = np.array([r["hv_ratio_front10"] if r["hv_ratio_front10"] is not None else np.nan for r in rs])
        fr = f"{np.mean([r['front'] for r in rs]):.0f} / {rs[0]['exact_front']}"
        bb = "n/a (one-point front)" if np.isnan(b).all() else f"{np.nanmin(b):.4f} / {np.nanmean(b):.4f}"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {a.min():.4f} / {a.mean():.4f} | {bb} | {fr} | "
              f"{np.mean([r['seconds'] for r in rs]):.1f} |")
        if k[2] == "nsga2" and a.min() < 0.95:
            ok = False
    t = [] if args.skip_throughput else throughput(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": args.device, "quality": q, "throughput": t}, f, indent=1)
    print("\nPASS: default sampler (nsga2) HV ratio >= 0.95 in every scenario and seed" if ok
          else "\nFAIL: default sampler below 0.95 somewhere")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
