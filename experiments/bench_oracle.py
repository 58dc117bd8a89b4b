"""Oracle speed: latency + memory of 100,000 candidates of spaces/mobile.yaml on one core.

Run:  taskset -c 0 python experiments/bench_oracle.py [--device tk1-gpu] [--n 100000]
The batched oracle (lowering included) and the same oracle asked one candidate at a time are
timed side by side, in interleaved rounds of one process; medians with min..max.
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
    oracle = Oracle(space, args.device)
    X = space.sample(args.n, seed=0)
    batched, single = [], []
    for _ in range(args.rounds):
        t = time.perf_counter()
        res = oracle.evaluate(X, breakdown=False)
        batched.append(len(X) / (time.perf_counter() - t))
        t = time.perf_counter()
        for x in X[: args.single]:
            oracle.evaluate(x[None, :], breakdown=False)
        single.append(args.single / (time.perf_counter() - t))
    mb, ms = statistics.median(batched), statistics.median(single)
    print(f"{space.name} on {oracle.device}: {args.n:,} candidates (latency_ms + memory_mb, lowering included), "
          f"{args.rounds} interleaved rounds, one process")
    print(f"batched       median {mb:12,.0f} cand/s   min..max {min(batched):,.0f}..{max(batched):,.0f}")
    print(f"one at a time median {ms:12,.0f} cand/s   min..max {min(single):,.0f}..{max(single):,.0f}")
    print(f"ratio (medians) {mb / ms:,.0f}x; latency of the batch: median {float(statistics.median(res['latency_ms'])):.2f} ms")


if __name__ == "__main__":
    main()
