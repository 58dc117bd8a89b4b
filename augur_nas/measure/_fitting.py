"""Fitting the cost models of a profile to kernel and network timings.

- GEMM models (``PiecewiseGemm``) per family: the breakpoints on n and m are chosen by k-fold
  cross-validation among a few candidate sets (no breakpoint, one, two or three), the
  coefficients by non-negative least squares on relative errors (``PiecewiseGemm.fit``).
- memory-bound kinds (``OpModel``): ``t = a * MB moved + c`` per kind by NNLS on relative errors;
  kinds with fewer than ``MIN_KIND`` samples share the ``default`` entry (fitted on all of them).
  ``fit_kind`` adds a per-channel-plane term and a cache knee of the kind's own.
- the memory model: ``peak RSS = F + w * weights + a * peak activations`` by NNLS.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..costmodel import PiecewiseGemm, nnls
from ..costmodel._gemm import FEATURES, gemm_features
from ..costmodel._ops import BYTES_PER_MB, Spill

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


# what a kernel pays more in place than alone (the in-place terms of ``fit_gemm``): a per-call
# constant and a cost per weight element (FEATURES' `1` and `nk`). A probe runs one kernel again
# and again, its weights hot in the caches; in a network every kernel's weights were last read
# a whole forward pass ago, so they stream in from the outer caches or memory: the larger the
# weights, the larger the gap (ORT's per-node times of the calibration networks against the probes'
# model, measured under load, provisional: ~+12% at 0.25-1 MB of conv weights, ~+60% above 4 MB)
IN_PLACE_FEATURES = (0, 2)
WEIGHT_POWER = 1.0


def _fit_two_settings(n, m, k, t, in_place, n_breaks, m_breaks, outside, n_axis):
    """``(in place, isolated)`` PiecewiseGemm: one NNLS on relative errors over probes and
    in-place kernels together, each region's five coefficients its own and the in-place terms
    (``IN_PLACE_FEATURES``, paid by the in-place samples only) shared by all regions. The gap
    does depend on the weights' size (an fc of 2-4 MB ran 2-3x slower in place than alone, its
    weights no longer hot in L2; one of 100 MB streams from memory either way), and each region's
    own coefficients, fitted on both kinds of samples, follow the in-place ones where they are
    many; terms of each region's own did worse on the diagnosis record (experiments/
    kernel_diagnosis.py ab: zoo shape 55% against 68%). A region without samples takes the fit
    on all samples."""
    nf = len(FEATURES)
    X = gemm_features(n, m, k)
    w = t ** -WEIGHT_POWER
    iso = PiecewiseGemm(np.zeros(nf), n_breaks, m_breaks, (n.min(), n.max()), (m.min(), m.max()),
                        (k.min(), k.max()), outside, n_axis)
    ri, rj = iso.regions(n, m, k)
    R = iso.coef.shape[0] * iso.coef.shape[1]
    region = ri * iso.coef.shape[1] + rj
    A = np.zeros((len(t), R * nf + len(IN_PLACE_FEATURES)))
    for r in range(R):
        A[region == r, r * nf:(r + 1) * nf] = X[region == r]
    A[:, R * nf:] = X[:, IN_PLACE_FEATURES] * in_place[:, None]
    c = nnls(A * w[:, None], t * w)
    shared = np.concatenate([X, X[:, IN_PLACE_FEATURES] * in_place[:, None]], axis=1)
    every = nnls(shared * w[:, None], t * w)[:nf]
    for r in range(R):
        i, j = divmod(r, iso.coef.shape[1])
        iso.coef[i, j] = c[r * nf:(r + 1) * nf] if (region == r).any() else every
    extra = np.zeros(nf)
    extra[list(IN_PLACE_FEATURES)] = c[R * nf:]
    placed = PiecewiseGemm(iso.coef + extra, n_breaks, m_breaks, iso.n_range, iso.m_range, iso.k_range, outside, n_axis)
    return placed, iso


def _predict_two(models, n, m, k, in_place):
    placed, iso = models
    return np.where(in_place, placed.predict(n, m, k), iso.predict(n, m, k))


def fit_gemm(n, m, k, t, folds: int = 5, seed: int = 0, n_sets=N_BREAK_SETS, m_sets=M_BREAK_SETS,
             outside: str = "extrapolate", n_axis: str = "n", in_place=None):
    """``(PiecewiseGemm, stats)``: breakpoints by cross-validation, then a fit on all samples.
    ``n_axis: nk``: ``n_sets`` are breakpoints on the weight elements n*k. ``in_place`` (bool per
    sample): which times were taken inside networks (the rest: isolated probes); with it, the model
    returned prices kernels in place (``_fit_two_settings``), its statistics over all samples,
    each as it was timed."""
    n, m, k, t = (np.asarray(v, dtype=np.float64) for v in (n, m, k, t))
    place = np.zeros(len(t), dtype=bool) if in_place is None else np.asarray(in_place, dtype=bool)
    ok = np.isfinite(t) & (t > 0)
    n, m, k, t, place = n[ok], m[ok], k[ok], t[ok], place[ok]
    if len(t) == 0:
        raise ValueError("no samples")
    two = in_place is not None

    def fit(sel, nb, mb):
        if two:
            return _fit_two_settings(n[sel], m[sel], k[sel], t[sel], place[sel], nb, mb, outside, n_axis)
        g = PiecewiseGemm.fit(n[sel], m[sel], k[sel], t[sel], nb, mb, outside=outside, n_axis=n_axis)
        return g, g

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
                pred = _predict_two(fit(tr, nb, mb), n[te], m[te], k[te], place[te])
                errs[te] = np.abs(np.log(np.maximum(pred, 1e-9) / t[te]))
            score = float(np.mean(errs))
            regions = (len(nb) + 1) * (len(mb) + 1)
            tried.append({"n_breaks": list(nb), "m_breaks": list(mb), "cv_mean_abs_log_error": round(score, 4)})
            # prefer fewer regions unless more of them cut the error by 2% (relative)
            if best is None or score < best[0] * 0.98 or (score <= best[0] * 1.02 and regions < best[3]):
                best = (score, nb, mb, regions)
    _, nb, mb, _ = best
    models = fit(np.ones(len(t), dtype=bool), nb, mb)
    stats = error_stats(_predict_two(models, n, m, k, place), t)
    stats.update({f"{n_axis}_breaks" if n_axis != "n" else "n_breaks": list(nb), "m_breaks": list(mb), "cv_mean_abs_log_error": round(best[0], 4),
                  "candidates_tried": len(tried)})
    if two:
        stats["in_place_terms"] = {"per_call_ms": _plain_coef(models[0].coef - models[1].coef, 0),
                                   "per_weight_element_ms": _plain_coef(models[0].coef - models[1].coef, 2)}
    return models[0], stats


def _plain_coef(diff, f):
    """A feature's coefficients over the regions, as a flat list of floats (the profile's fit record)."""
    return [float(v) for v in np.asarray(diff)[..., f].reshape(-1)]


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


# candidate cache knees (MB moved per layer or conversion) and slow-downs above them
SPILL_ABOVE_MB = (0.25, 0.5, 1.0, 2.0, 4.0)
SPILL_RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def fit_spill(groups: dict) -> Spill:
    """The ``Spill`` (one knee, one ratio) under which ``fit_bytes`` of each group ``{name: (MB,
    ms)}`` (its own ``(a, c)``) misses the times least: the absolute error summed over all samples
    relative to their total time (the knee matters where the time is: a few large tensors; the
    relative-error NNLS alone fits the many small ones and prices a 4 MB conversion at half its
    time). No knee (ratio 0) unless one cuts that error by 2%."""
    best, best_err = Spill(), None
    for ratio in SPILL_RATIOS:
        for above in (SPILL_ABOVE_MB if ratio else (0.0,)):
            sp = Spill(above, ratio)
            errs = []
            for mb, t in groups.values():
                mb, t = np.asarray(mb, dtype=np.float64), np.asarray(t, dtype=np.float64)
                x = sp.priced_bytes(mb * BYTES_PER_MB) / BYTES_PER_MB
                a, c = fit_bytes(x, t)
                errs.append(float(np.abs(a * x + c - t).sum()) / max(float(t.sum()), 1e-12))
            err = float(np.mean(errs))
            if best_err is None or err < best_err * (0.98 if not best.ratio else 1.0):
                best, best_err = sp, err
    return best


class KindFit(NamedTuple):
    """A memory-bound kind's model: ``ms_per_mb * priced MB + overhead_ms + per_span_ms * spans``
    with its cache knee (``spill``: ``Spill()`` where none pays)."""
    ms_per_mb: float
    overhead_ms: float
    per_span_ms: float
    spill: Spill

    def predict(self, mb, spans) -> np.ndarray:
        x = self.spill.priced_bytes(np.asarray(mb, dtype=np.float64) * BYTES_PER_MB) / BYTES_PER_MB
        return self.ms_per_mb * x + self.overhead_ms + self.per_span_ms * np.asarray(spans, dtype=np.float64)


def fit_kind(mb, t, spans=None, knee: bool = True) -> KindFit:
    """One memory-bound kind's ``KindFit`` from its in-place samples (MB moved, ms, channel planes):
    the coefficients by NNLS on relative errors (a per-plane term only where some samples walk
    planes: ``_ops.channel_spans``), the knee (with ``knee``) as ``fit_spill`` chooses one: the
    candidate that misses the total time least, no knee unless it cuts that error by 2%, and only
    knees with ``MIN_ABOVE_KNEE`` samples above them."""
    mb, t = np.asarray(mb, dtype=np.float64), np.asarray(t, dtype=np.float64)
    sp_ = np.zeros_like(mb) if spans is None else np.asarray(spans, dtype=np.float64)
    best, best_err = None, None
    for ratio in (SPILL_RATIOS if knee else (0.0,)):
        for above in (SPILL_ABOVE_MB if ratio else (0.0,)):
            if ratio and int(np.sum(mb > above)) < MIN_ABOVE_KNEE:
                continue
            fit = _kind_coef(mb, t, sp_, Spill(above, ratio))
            err = float(np.abs(fit.predict(mb, sp_) - t).sum()) / max(float(t.sum()), 1e-12)
            if best_err is None or err < best_err * (0.98 if not best.spill.ratio else 1.0):
                best, best_err = fit, err
    return best


def _kind_coef(mb, t, spans, spill: Spill) -> KindFit:
    """``fit_bytes`` with a per-plane column where any sample walks planes (NNLS, relative errors)."""
    x = spill.priced_bytes(mb * BYTES_PER_MB) / BYTES_PER_MB
    ok = np.isfinite(t) & (t > 0)
    if not ok.any():
        return KindFit(0.0, 0.0, 0.0, spill)
    cols = [x, np.ones_like(x)] + ([spans / SPANS_UNIT] if (spans[ok] > 0).any() else [])
    w = 1.0 / t[ok]
    coef = nnls(np.stack(cols, axis=1)[ok] * w[:, None], t[ok] * w)
    return KindFit(float(coef[0]), float(coef[1]), float(coef[2]) / SPANS_UNIT if len(coef) > 2 else 0.0, spill)


SPANS_UNIT = 1000.0
# a knee is tried only where this many samples lie above it: with one or two large samples the
# knee is an extrapolation (BatchNorm's: 1-2 of 15-20 samples above 0.25 MB on every record, its
# knee there priced every large standalone BatchNorm 3-4x)
MIN_ABOVE_KNEE = 10  # the per-plane column in thousands of planes: the NNLS columns of similar size


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
