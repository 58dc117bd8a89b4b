"""Fitting the cost models of a profile to kernel and network timings.

- GEMM models (``PiecewiseGemm``) per family: the breakpoints on n and m are chosen by k-fold
  cross-validation among a few candidate sets (no breakpoint, one, two or three), the
  coefficients by non-negative least squares on relative errors (``PiecewiseGemm.fit``).
- memory-bound kinds (``OpModel``): ``t = a * MB moved + c`` per kind by NNLS on relative errors;
  kinds with fewer than ``MIN_KIND`` samples share the ``default`` entry (fitted on all of them).
- the memory model: ``peak RSS = F + w * weights + a * peak activations`` by NNLS.
"""

from __future__ import annotations

import numpy as np

from ..costmodel import PiecewiseGemm, nnls

N_BREAK_SETS = ((), (64,), (128,), (256,), (64, 256))
M_BREAK_SETS = ((), (196,), (784,), (3136,), (196, 1568), (196, 784, 3136))
# on an fc's weight elements (n*k): 1, 4, 16 and 64 MB of float32 weights (cache sizes)
W_BREAK_SETS = ((), (2 ** 18,), (2 ** 20,), (2 ** 22,), (2 ** 24,), (2 ** 20, 2 ** 24), (2 ** 18, 2 ** 22))
MIN_PER_REGION = 5
MIN_KIND = 3


def rel_errors(pred, meas) -> np.ndarray:
    return np.asarray(pred, dtype=np.float64) / np.asarray(meas, dtype=np.float64) - 1.0


def error_stats(pred, meas) -> dict:
    e = rel_errors(pred, meas)
    if len(e) == 0:
        return {"n": 0}
    return {"n": int(len(e)), "median_abs_error_pct": round(float(np.median(np.abs(e))) * 100, 2),
            "p90_abs_error_pct": round(float(np.quantile(np.abs(e), 0.9)) * 100, 2),
            "within_10pct": round(float(np.mean(np.abs(e) <= 0.10)), 3),
            "time_weighted_error_pct": round(float(np.sum(np.abs(np.asarray(pred) - np.asarray(meas)))
                                                   / max(np.sum(meas), 1e-12)) * 100, 2)}


def _regions_ok(n, m, nb, mb) -> bool:
    """Enough samples in every region (``n`` is the first axis's values: n, or n*k)."""
    ri = np.searchsorted(np.asarray(nb, dtype=float), n, side="right")
    rj = np.searchsorted(np.asarray(mb, dtype=float), m, side="right")
    counts = np.zeros((len(nb) + 1, len(mb) + 1), dtype=int)
    np.add.at(counts, (ri, rj), 1)
    return bool((counts >= MIN_PER_REGION).all())


def fit_gemm(n, m, k, t, folds: int = 5, seed: int = 0, n_sets=N_BREAK_SETS, m_sets=M_BREAK_SETS,
             outside: str = "extrapolate", n_axis: str = "n"):
    """``(PiecewiseGemm, stats)``: breakpoints by cross-validation, then a fit on all samples.
    ``n_axis: nk``: ``n_sets`` are breakpoints on the weight elements n*k."""
    n, m, k, t = (np.asarray(v, dtype=np.float64) for v in (n, m, k, t))
    ok = np.isfinite(t) & (t > 0)
    n, m, k, t = n[ok], m[ok], k[ok], t[ok]
    if len(t) == 0:
        raise ValueError("no samples")
    first = n * k if n_axis == "nk" else n
    if len(np.unique(first)) == 1:
        n_sets = ((),)
    if len(np.unique(m)) == 1:
        m_sets = ((),)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(t)) % max(2, min(folds, len(t)))
    best = None
    tried = []
    for nb in n_sets:
        for mb in m_sets:
            if (nb or mb) and not _regions_ok(first, m, nb, mb):
                continue
            if len(t) < 2 * (len(nb) + 1) * (len(mb) + 1) * 5:
                if nb or mb:
                    continue
            errs = np.empty(len(t))
            for f in np.unique(fold):
                tr, te = fold != f, fold == f
                if tr.sum() == 0:
                    errs[te] = 0
                    continue
                g = PiecewiseGemm.fit(n[tr], m[tr], k[tr], t[tr], nb, mb, n_axis=n_axis)
                errs[te] = np.abs(np.log(np.maximum(g.predict(n[te], m[te], k[te]), 1e-9) / t[te]))
            score = float(np.mean(errs))
            regions = (len(nb) + 1) * (len(mb) + 1)
            tried.append({"n_breaks": list(nb), "m_breaks": list(mb), "cv_mean_abs_log_error": round(score, 4)})
            # prefer fewer regions unless more of them cut the error by 2% (relative)
            if best is None or score < best[0] * 0.98 or (score <= best[0] * 1.02 and regions < best[3]):
                best = (score, nb, mb, regions)
    _, nb, mb, _ = best
    g = PiecewiseGemm.fit(n, m, k, t, nb, mb, outside=outside, n_axis=n_axis)
    stats = error_stats(g.predict(n, m, k), t)
    stats.update({f"{n_axis}_breaks" if n_axis != "n" else "n_breaks": list(nb), "m_breaks": list(mb), "cv_mean_abs_log_error": round(best[0], 4),
                  "candidates_tried": len(tried)})
    return g, stats


def fit_bytes(moved_mb, t, weight=None):
    """``(ms_per_mb, overhead_ms)`` of ``t = a * MB + c`` by NNLS on relative errors."""
    x = np.asarray(moved_mb, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    ok = np.isfinite(t) & (t > 0)
    x, t = x[ok], t[ok]
    if len(t) == 0:
        return 0.0, 0.0
    w = 1.0 / t
    A = np.stack([x, np.ones_like(x)], axis=1) * w[:, None]
    a, c = nnls(A, t * w)
    return float(a), float(c)


def fit_line(x, y):
    """``(intercept, slope)``, both non-negative, of ``y = a + b x`` by NNLS (absolute errors)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    A = np.stack([np.ones_like(x), x], axis=1)
    a, b = nnls(A, y)
    return float(a), float(b)


def fit_memory(weights_mb, act_mb, peak_mb, fc_mb=None):
    """``(F, w, a[, w_fc])`` of ``peak = F + w * (weights - fc) + w_fc * fc + a * activations`` by NNLS
    on relative errors (without ``fc_mb``: one coefficient for all weights, ``(F, w, a)``)."""
    W = np.asarray(weights_mb, dtype=np.float64)
    A_ = np.asarray(act_mb, dtype=np.float64)
    y = np.asarray(peak_mb, dtype=np.float64)
    w = 1.0 / y
    if fc_mb is None:
        A = np.stack([np.ones_like(W), W, A_], axis=1) * w[:, None]
        F, cw, ca = nnls(A, y * w)
        return float(F), float(cw), float(ca)
    fc = np.asarray(fc_mb, dtype=np.float64)
    A = np.stack([np.ones_like(W), W - fc, A_, fc], axis=1) * w[:, None]
    F, cw, ca, cf = nnls(A, y * w)
    return float(F), float(cw), float(ca), float(cf)
