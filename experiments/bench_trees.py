"""The residual's numpy trees of two revisions side by side: 100,000 rows of real features.

Run:  taskset -c 0 python experiments/bench_trees.py [OLD_REV] [--rounds 15] [--n 100000]

The features are those the oracle hands the trees for ``--n`` candidates of spaces/mobile.yaml
on x86-2core-ort (300 trees, 22 features split on). ``costmodel/_trees.py`` of ``OLD_REV``
(default: the main branch) is read with ``git show`` and loaded beside this tree's; both parse
the profile's model and predict the same rows in interleaved rounds (one process, medians with
min..max, and the ratio). Also checks that the two agree with LightGBM's own predict to 1e-12.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import augur_nas as an  # noqa: E402
from augur_nas.costmodel import _trees  # noqa: E402
from augur_nas.oracle import Oracle  # noqa: E402
from augur_nas.profile import load_profile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEVICE = "x86-2core-ort"


def _features(n: int):
    """The ``[features, n]`` rows the trees read for ``n`` mobile candidates (the oracle's own)."""
    space = an.load_space(ROOT / "spaces" / "mobile.yaml")
    oracle = Oracle(space, DEVICE)
    residual = oracle.profile.residual
    got = []
    plain = residual.raw_score
    residual.raw_score = lambda XT: (got.append(np.array(XT)), plain(XT))[1]
    oracle.evaluate(space.sample(n, seed=0), breakdown=False)
    return residual, np.ascontiguousarray(np.concatenate(got, axis=1))


def _old_module(rev: str):
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:augur_nas/costmodel/_trees.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp(prefix="augur-trees-")) / "old_trees.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("old_trees", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old_rev", nargs="?", default="main")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--n", type=int, default=100_000)
    args = ap.parse_args()
    residual, XT = _features(args.n)
    forests = {args.old_rev: _old_module(args.old_rev).parse(residual.model), "this tree": _trees.parse(residual.model)}
    want = load_profile(DEVICE).residual.booster.predict(XT[:, :20_000].T, num_threads=1)
    for name, f in forests.items():
        diff = float(np.abs(f.predict_columns(np.ascontiguousarray(XT[:, :20_000])) - want).max())
        print(f"{name}: max |numpy trees - LightGBM| over 20,000 rows {diff:.1e}")
        if diff > 1e-12:
            sys.exit(f"{name} does not reproduce LightGBM")
    times = {k: [] for k in forests}
    for _ in range(args.rounds):
        for name, f in forests.items():  # interleaved: a slow spell of the machine hits both alike
            t = time.perf_counter()
            f.predict_columns(XT)
            times[name].append(time.perf_counter() - t)
    print(f"{XT.shape[1]:,} rows, {len(residual.features)} features, one process, {args.rounds} interleaved rounds, "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name, v in times.items():
        print(f"{name:>12}: median {statistics.median(v) * 1e3:7.1f} ms   min..max {min(v) * 1e3:.1f}..{max(v) * 1e3:.1f}")
    old, new = (statistics.median(v) for v in times.values())
    print(f"ratio old / new (medians): {old / new:.2f}x")


if __name__ == "__main__":
    main()
