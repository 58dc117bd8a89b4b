"""Oracle speed: latency + memory of 100,000 candidates of spaces/mobile.yaml on one core.

Run:  taskset -c 0 python experiments/bench_oracle.py [--device tk1-gpu] [--n 100000]
Timed side by side, in interleaved rounds of one process (medians with min..max):
- cold: a fresh Oracle each round (made before the clock starts: loading the profile is paid
  once per process), so every segment grid is priced again (the figure quoted);
- warm: one Oracle asked again, its segment grids kept from the earlier rounds (what a search
  that asks for batch after batch of the same space sees);
- one at a time: the same oracle asked candidate by candidate (its grids kept from the batch:
  what NAS code that prices one candidate per call sees after its first call).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import augur_nas as an  # noqa: E402
from augur_nas.oracle import Oracle  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--space", default="spaces/mobile.yaml")
    ap.add_argument("--device", default="tk1-gpu")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--single", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    space = an.load_space(args.space)
    X = space.sample(args.n, seed=0)
    warm_oracle = Oracle(space, args.device)
    warm_oracle.evaluate(X[:1000], breakdown=False)
    cold, warm, single = [], [], []
    for _ in range(args.rounds):
        oracle = Oracle(space, args.device)
        t = time.perf_counter()
        res = oracle.evaluate(X, breakdown=False)
        cold.append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        warm_oracle.evaluate(X, breakdown=False)
        warm.append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        for x in X[: args.single]:
            oracle.evaluate(x[None, :], breakdown=False)
        single.append(args.single / (time.perf_counter() - t))
    mc, mw, ms = statistics.median(cold), statistics.median(warm), statistics.median(single)
    print(f"{space.name} on {oracle.device}: {args.n:,} candidates (latency_ms + memory_mb, lowering included), "
          f"{args.rounds} interleaved rounds, one process")
    print(f"batched, cold  median {mc:12,.0f} cand/s   min..max {min(cold):,.0f}..{max(cold):,.0f}   (fresh Oracle)")
    print(f"batched, warm  median {mw:12,.0f} cand/s   min..max {min(warm):,.0f}..{max(warm):,.0f}   (grids kept)")
    print(f"one at a time  median {ms:12,.0f} cand/s   min..max {min(single):,.0f}..{max(single):,.0f}")
    print(f"ratio cold / one at a time (medians) {mc / ms:,.0f}x; latency of the batch: median "
          f"{float(statistics.median(res['latency_ms'])):.2f} ms")


if __name__ == "__main__":
    main()
