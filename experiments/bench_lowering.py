"""Lowering + analysis speed on spaces/mobile.yaml, batched versus one candidate at a time.

Run on one core:  taskset -c 0 python experiments/bench_lowering.py [--n 100000]
Both paths are timed side by side in the same run, in interleaved rounds; medians are reported
with the spread (min..max) of the rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")


import augur_nas as an  # noqa: E402
from augur_nas.analysis import analyze, totals  # noqa: E402
from augur_nas._segments import fast_totals  # noqa: E402


def batched(space, X, chunk, fn):
    for i in range(0, len(X), chunk):
        fn(space, X[i:i + chunk])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="spaces/mobile.yaml")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=200, help="candidates timed one at a time per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=131072)
    args = ap.parse_args()
    space = an.load_space(args.space)
    X = space.sample(args.n, seed=0)
    res = {"fast totals (batched)": [], "lower + totals (batched)": [], "decode + analyze (one at a time)": []}
    for _ in range(args.rounds):
        t = time.perf_counter()
        batched(space, X, args.chunk, fast_totals)
        res["fast totals (batched)"].append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        batched(space, X, args.chunk, lambda s, x: totals(an.lower(s, x)))
        res["lower + totals (batched)"].append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        for x in X[: args.single]:
            analyze(space.decode(x))
        res["decode + analyze (one at a time)"].append(args.single / (time.perf_counter() - t))
    single = statistics.median(res["decode + analyze (one at a time)"])
    print(f"space {space.name}: {space.n_genes} genes, {len(space.program.nodes)} layer slots; "
          f"{args.n:,} candidates, chunk {args.chunk}, {args.rounds} interleaved rounds, one process")
    print(f"{'path':36s} {'median cand/s':>14s} {'min..max':>22s} {'x one-at-a-time':>16s}")
    for k, v in res.items():
        print(f"{k:36s} {statistics.median(v):14,.0f} {min(v):10,.0f}..{max(v):<10,.0f} {statistics.median(v) / single:16.0f}")


if __name__ == "__main__":
    main()
