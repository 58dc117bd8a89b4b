"""``--sampler exact``: the exact Pareto front by dynamic programming over segments
(``augur_nas.exact``), shaped like the other samplers' results so the usual outputs are written.

- **Exact** (objective ``macs`` or ``params``, a profile whose latency is a sum over segments, with
  or without fusion and layout rules):
  every Pareto-optimal trade-off of (latency, objective) under the limits. The front written
  (pareto.csv/json, arch-NNN.yaml, the figures) is thinned to ``front_size`` members spanning it
  (the fastest, the largest, evenly spaced latencies between); pareto.json says how many
  Pareto-optimal points exist in all, and trials.csv holds every one of them (plus a random sample
  of the space for the figures' background).
- **Seeded** (a user objective, or a profile whose latency adds a residual): the exact front of
  (layer-sum latency, MACs) is the first population of an NSGA-II search (``seeds``), and the
  outputs say which quantities were exact and which were searched.
"""

from __future__ import annotations

import time

import numpy as np

from .._errors import ConstraintError
from ..exact import _parts, exact_front, structural_obstacle, thin
from ._config import relative_constraints
from ._outputs import COST_KEYS
from ._pareto import violation

DEFAULT_FRONT_SIZE = 20
BACKGROUND = 2000  # random candidates priced for the figures' background
N_CLOSEST = 3


DEFAULT_MAX_PARTS = 8  # the exact front is the default (or seeds a search) on spaces of at most this many parts


def exact_applies(oracle, obj, default: bool = False) -> str | None:
    """``None`` when the exact front of (latency, objective) can be computed, else why not.
    ``default``: whether it is also the default, see ``default_obstacle``."""
    if getattr(oracle, "split", None) is not None:
        return "the latency is a device/server split's best total, not a sum over segments"
    if not obj.builtin:
        return f"the objective {obj.name} is a user function, not a sum over segments"
    if getattr(oracle.profile, "residual", None) is not None:
        return f"profile {oracle.device} corrects its latency with a residual model"

    return default_obstacle(oracle.space) if default else structural_obstacle(oracle.space)


def default_obstacle(space) -> str | None:
    """Why the exact front is not computed unasked on ``space``: it cannot be, or the space chooses
    between whole subnetworks in so many ways that one dynamic program per part would take minutes
    (spaces/classic.yaml: 54 parts, each with a front of thousands of points); ``--sampler exact``
    still computes it."""
    parts, why = _parts(space)
    if why is None and len(parts) > DEFAULT_MAX_PARTS:
        why = (f"{space.name} chooses between whole subnetworks in {len(parts)} ways (one dynamic program each, more "
               f"than the {DEFAULT_MAX_PARTS} computed unasked; --sampler exact computes them)")
    return why


def _rows(oracle, X, obj, limits, number):
    costs = oracle.evaluate(X, breakdown=False) if len(X) else {k: np.zeros(0) for k in COST_KEYS}
    C = relative_constraints(costs, limits)
    feas = (C <= 0).all(axis=1)
    return {"number": number, "state": np.array(["COMPLETE"] * len(X), dtype=object), "X": X, "feasible": feas,
            "violation": violation(C), "objective": np.asarray(costs[obj.name], dtype=np.float64),
            **{k: np.asarray(costs[k], dtype=np.float64) for k in COST_KEYS}}


def _cat(a, b):
    return {k: np.concatenate([a[k], b[k]]) for k in a}


def _closest(space, oracle, obj, limits, background):
    """The least violating candidates when nothing is feasible: the ends of the unconstrained
    exact front (the fastest network, the smallest ...; not on a space of many parts) and the
    background sample."""
    cands = [background]
    # the unconstrained fronts of a space of many parts take minutes: its background sample only
    ends = (("latency_ms", obj.name), ("latency_ms", "memory_mb", "params")) if default_obstacle(space) is None else ()
    for objectives in ends:
        f = exact_front(oracle, None, {}, objectives)
        cands.append(_rows(oracle, f.X, obj, limits, np.full(len(f), -1, dtype=np.int64)))
    allc = cands[0]
    for c in cands[1:]:
        allc = _cat(allc, c)
    _, first = np.unique(allc["X"], axis=0, return_index=True)
    order = first[np.argsort(allc["violation"][first], kind="stable")][:N_CLOSEST]
    return {"X": allc["X"][order], **{k: allc[k][order] for k in COST_KEYS}}


def exact_search(space, oracle, obj, limits, *, front_size=DEFAULT_FRONT_SIZE, seed=None, log=None):
    """(table, front table, closest, info) of ``--sampler exact``, as ``exhaustive`` returns them."""
    why = exact_applies(oracle, obj)
    if why is not None:
        raise ConstraintError(f"--sampler exact computes the exact front of additive quantities only, but {why}; "
                              f"leave out --sampler for NSGA-II seeded with the exact front of (layer-sum latency, MACs) where the profile's "
                              f"layer sum composes, or choose --sampler nsga2, tpe or random")
    t0 = time.time()
    f = exact_front(oracle, None, limits, ("latency_ms", obj.name))
    n_all = len(f)
    pick = thin(f, front_size) if n_all else np.zeros(0, dtype=np.int64)
    every = _rows(oracle, f.X, obj, limits, np.arange(n_all, dtype=np.int64))
    Xb = space.sample(BACKGROUND, seed=0 if seed is None else seed)
    background = _rows(oracle, Xb, obj, limits, np.full(BACKGROUND, -1, dtype=np.int64))
    table = _cat(every, background)
    table["n_complete"] = len(table["X"])
    table["on_front"] = np.isin(np.arange(len(table["X"])), pick)
    front = {k: every[k][pick] for k in ("number", "X", "objective", *COST_KEYS)}
    closest = _closest(space, oracle, obj, limits, background) if not n_all else None
    info = {"n_trials": len(table["X"]), "n_feasible": int(table["feasible"].sum()), "n_distinct": len(table["X"]),
            "interrupted": False, "workers": 1,
            "exact": {"pareto_optimal_points": n_all, "front_written": int(len(pick)), "front_size": front_size,
                      "latency_span_ms": [float(f.values["latency_ms"].min()), float(f.values["latency_ms"].max())]
                      if n_all else None,
                      "method": "dynamic programming over segments (states: a segment's entry shape and, on a "
                                "profile with fusion or layout rules, the entering tensor's fusion/layout state; genes "
                                "shared by several segments carried in the state; one program per option of a choice "
                                "between whole subnetworks)",
                      "dp": {k: v for k, v in f.stats.items() if k != "carried"}},
            "trials_csv": f"every Pareto-optimal architecture ({n_all}, trial = its index) and {BACKGROUND} random "
                          f"candidates (trial -1) for the figures",
            "exact_s": round(time.time() - t0, 3)}
    if log and n_all:  # an empty front is explained by the one-paragraph error that follows
        log(f.summary())
    return table, front, closest, info


def seed_encodings(oracle, limits, k) -> tuple:
    """Encodings of the exact front of (layer-sum latency, MACs) under the limits that are sums
    (thinned to ``k``), to seed a search whose objective or latency is not a sum; ``(X, note)``.
    ``X`` is empty (with the reason in ``note``) where the profile's layer sum does not compose."""
    why = default_obstacle(oracle.space)
    if why:
        return np.zeros((0, oracle.space.n_genes), dtype=np.int64), f"not seeded: {why}"
    lims = {k2: v for k2, v in limits.items() if not (k2 == "latency_ms" and getattr(oracle.profile, "residual", None) is not None)}
    f = exact_front(oracle, None, lims, ("latency_ms", "macs"), layer_sum=True)
    return f.X[thin(f, k)] if len(f) else f.X, (f"seeded with {min(len(f), k)} of the {len(f)} members of the exact "
                                                f"front of ({'layer-sum ' if f.layer_sum else ''}latency, MACs)")
