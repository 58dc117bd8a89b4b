"""Trials per second of `augur-nas search` by storage (in memory, sqlite, journal), with the study labels
(metric names, limits) of issue 17 in place.

    PYTHONPATH=. python experiments/storage_speed.py [--trials 600] [--repeats 3] [--space spaces/mobile.yaml]
        [--storages memory,sqlite,sqlite-plain,journal]

Each run is a fresh study (a temporary folder), nsga2 (not seeded), seed = repeat; the figure is trials this run /
elapsed seconds of the search (meta["elapsed_s"]), the median and range over the repeats.  Timings on a
shared machine move with its load: compare storages within one invocation, and re-run on a quiet one.
`sqlite` is augur-nas's (write-ahead log, synchronous=NORMAL); `sqlite-plain` is Optuna's own
``RDBStorage`` with SQLite's defaults (a rollback journal synced at every commit), as before.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from augur_nas.search import search  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--space", default=os.path.join(ROOT, "spaces", "mobile.yaml"))
    ap.add_argument("--device", default="tk1-gpu")
    ap.add_argument("--storages", default="memory,sqlite,sqlite-plain,journal")
    a = ap.parse_args(argv)
    for kind in a.storages.split(","):
        rates = []
        for r in range(a.repeats):
            with tempfile.TemporaryDirectory() as d:
                storage = _storage(kind, d)
                # nsga2 named: left to its default, an in-memory search first solves the exact front
                # to seed its population (seconds), which a persistent study does not
                res = search(a.space, a.device, latency_ms=100, trials=a.trials, seed=r, storage=storage,
                             study_name="speed" if storage else None, sampler="nsga2", progress=False)
                rates.append(res.meta.get("trials_this_run", res.meta["n_trials"]) / max(res.meta["elapsed_s"], 1e-9))
        print(f"{kind:12s} {np.median(rates):7.1f} trials/s (range {min(rates):.1f}-{max(rates):.1f}, "
              f"{a.repeats} runs of {a.trials} trials)", flush=True)


def _storage(kind: str, d: str):
    if kind == "sqlite-plain":
        import optuna

        return optuna.storages.RDBStorage(f"sqlite:///{d}/s.db")
    return {"memory": None, "sqlite": f"sqlite:///{d}/s.db", "journal": f"journal:{d}/s.log"}[kind]


if __name__ == "__main__":
    main()
