"""Accuracy figures of predicted against measured latency (or memory)."""

from __future__ import annotations

import numpy as np


def _ranks(v):
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="mergesort")
    r = np.empty(len(v))
    r[order] = np.arange(len(v), dtype=np.float64)
    # average ranks of ties
    _, inv, counts = np.unique(v, return_inverse=True, return_counts=True)
    sums = np.zeros(len(counts))
    np.add.at(sums, inv, r)
    return (sums / counts)[inv]


def spearman(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 3:
        return float("nan")
    ra, rb = _ranks(a), _ranks(b)
    ra -= ra.mean()
    rb -= rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else float("nan")


def accuracy(pred, meas) -> dict:
    """Share within +-10% and +-20%, RMSPE, median |error|, Spearman rank correlation."""
    p = np.asarray(pred, dtype=np.float64)
    m = np.asarray(meas, dtype=np.float64)
    ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
    p, m = p[ok], m[ok]
    if len(m) == 0:
        return {"n": 0}
    e = p / m - 1.0
    return {"n": int(len(m)), "within_10pct": float(np.mean(np.abs(e) <= 0.10)),
            "within_20pct": float(np.mean(np.abs(e) <= 0.20)), "rmspe_pct": float(np.sqrt(np.mean(e ** 2)) * 100),
            "median_abs_error_pct": float(np.median(np.abs(e)) * 100), "spearman": spearman(p, m)}


def macs_loglog_fit(macs, meas):
    """``(a, b)`` of ``log t = a + b log MACs`` (least squares): the MACs baseline."""
    x = np.log(np.maximum(np.asarray(macs, dtype=np.float64), 1.0))
    y = np.log(np.asarray(meas, dtype=np.float64))
    A = np.stack([np.ones_like(x), x], axis=1)
    a, b = np.linalg.lstsq(A, y, rcond=None)[0]
    return float(a), float(b)


def macs_loglog_predict(coef, macs):
    a, b = coef
    return np.exp(a + b * np.log(np.maximum(np.asarray(macs, dtype=np.float64), 1.0)))
