"""Cold oracle speed of an old revision and the working tree, interleaved in ONE process.

Run:  taskset -c 0 python experiments/compare_in_process.py 55292c2 [--rounds 7] [--n 100000]
          [--cases mobile:x86-xeon-avx512-ort,mobile:tk1-gpu,nb201:x86-xeon-avx512-ort,...]

``compare_revisions.py`` alternates one process per round; on a loaded machine one process can
land in a slow spell and the other in a quick one. Here the old revision's package is unpacked
(``git archive``) under another name (``augur_nas_old``: its imports are relative) and both are
timed in the same process, old and new back to back per case and round (the order alternating),
so that each pair sees the same spell. Reports per case: each side's median cold cand/s with
min..max, the ratio of the medians, and the median of the per-round ratios (new / old).
"""

from __future__ import annotations

import argparse
import importlib
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CASES = ("mobile:x86-xeon-avx512-ort,mobile:tk1-gpu,mobile:x86-2core-ort,"
                 "nb201:x86-xeon-avx512-ort,nb201:x86-2core-ort")


def _old_package(rev: str, where: str):
    """The package of ``rev`` importable as ``augur_nas_old``."""
    tar = os.path.join(where, "old.tar")
    subprocess.run(["git", "-C", ROOT, "archive", "-o", tar, rev, "augur_nas"], check=True)
    with tarfile.open(tar) as t:
        t.extractall(where, filter="data")
    os.rename(os.path.join(where, "augur_nas"), os.path.join(where, "augur_nas_old"))
    sys.path.insert(0, where)
    return importlib.import_module("augur_nas_old")


def _cold(pkg, space, device, X) -> float:
    oracle = pkg.Oracle(space, device)
    t = time.perf_counter()
    oracle.evaluate(X, breakdown=False)
    return len(X) / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old_rev")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--cases", default=DEFAULT_CASES, help="space:device pairs, comma-separated")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    new = importlib.import_module("augur_nas")
    with tempfile.TemporaryDirectory() as tmp:
        old = _old_package(args.old_rev, tmp)
        cases = [c.split(":") for c in args.cases.split(",")]
        setup = {}
        for sp, dev in cases:
            path = os.path.join(ROOT, "spaces", f"{sp}.yaml")
            spaces = {"old": old.load_space(path), "new": new.load_space(path)}
            X = spaces["new"].sample(args.n, seed=0)
            for side, pkg in (("old", old), ("new", new)):  # load each profile once (not timed)
                pkg.Oracle(spaces[side], dev).evaluate(X[:1000], breakdown=False)
            setup[sp, dev] = (spaces, X)
        got = {(c, s): [] for c in setup for s in ("old", "new")}
        for r in range(args.rounds):
            for case, (spaces, X) in setup.items():
                order = ("old", "new") if r % 2 == 0 else ("new", "old")
                for side in order:
                    got[case, side].append(_cold(old if side == "old" else new, spaces[side], case[1], X))
        print(f"cold cand/s, {args.n:,} candidates, {args.rounds} rounds, old = {args.old_rev}, new = working tree, "
              f"one process (pid {os.getpid()}), load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for case in setup:
            a, b = got[case, "old"], got[case, "new"]
            paired = statistics.median(y / x for x, y in zip(a, b))
            print(f"{case[0]:7s} {case[1]:20s} old {statistics.median(a):>11,.0f} ({min(a):,.0f}..{max(a):,.0f})   "
                  f"new {statistics.median(b):>11,.0f} ({min(b):,.0f}..{max(b):,.0f})   "
                  f"ratio of medians {statistics.median(b) / statistics.median(a):.2f}, median paired ratio {paired:.2f}")


if __name__ == "__main__":
    main()
