"""Pareto fronts and hypervolume of (latency: minimized, objective: maximized) points."""

from __future__ import annotations

import numpy as np


def pareto_mask(latency, objective) -> np.ndarray:
    """Which points are on the Pareto front (minimize latency, maximize objective).

    Points with NaN are never on it. Of several points with identical (latency, objective) only
    the first (lowest index) is kept, so the front lists each trade-off once.
    """
    lat = np.asarray(latency, dtype=np.float64)
    obj = np.asarray(objective, dtype=np.float64)
    keep = np.zeros(len(lat), dtype=bool)
    ok = np.flatnonzero(np.isfinite(lat) & np.isfinite(obj))
    if not len(ok):
        return keep
    # by latency ascending, then objective descending, then index ascending
    order = ok[np.lexsort((ok, -obj[ok], lat[ok]))]
    o = obj[order]
    best_before = np.concatenate(([-np.inf], np.maximum.accumulate(o)[:-1]))
    keep[order[o > best_before]] = True
    return keep


def hypervolume(latency, objective, ref_latency: float, ref_objective: float) -> float:
    """Area dominated by the points and bounded by the reference point (a worst latency, a worst
    objective); points outside the reference box contribute nothing."""
    lat = np.asarray(latency, dtype=np.float64)
    obj = np.asarray(objective, dtype=np.float64)
    m = pareto_mask(lat, obj)
    lat, obj = lat[m], obj[m]
    inside = (lat < ref_latency) & (obj > ref_objective)
    lat, obj = lat[inside], obj[inside]
    if not len(lat):
        return 0.0
    order = np.argsort(lat, kind="stable")
    lat, obj = lat[order], obj[order]  # objective ascends along the front
    prev = np.concatenate(([ref_objective], obj[:-1]))
    return float(np.sum((ref_latency - lat) * (obj - prev)))


def violation(constraint_values) -> np.ndarray:
    """The total violation of each candidate: the sum of its positive (relative) constraint values."""
    c = np.asarray(constraint_values, dtype=np.float64)
    if c.ndim == 1:
        c = c[:, None]
    if c.shape[1] == 0:
        return np.zeros(c.shape[0])
    return np.clip(c, 0, None).sum(axis=1)
