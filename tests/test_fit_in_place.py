"""The profile's GEMM fit prices kernels as they run in place (inside networks), and the
profiler's per-node cost comes off every node time before the fits: plain data, no measurement."""

import numpy as np
import pytest

from augur_nas.measure import _profiling
from augur_nas.measure._fitting import fit_gemm


def _shapes(rng, count):
    n = rng.choice([16, 32, 64, 128, 256], count).astype(float)
    m = rng.choice([49, 196, 784, 3136], count).astype(float)
    k = rng.choice([72, 144, 288, 576, 1152], count).astype(float)
    return n, m, k


def test_in_place_terms_are_learned_from_in_place_samples_only():
    rng = np.random.default_rng(0)
    n, m, k = _shapes(rng, 400)
    alone = 2e-3 + 1e-9 * n * m * k + 1e-7 * m * k
    extra_call, extra_weight = 3e-3, 4e-7
    place = rng.random(400) < 0.5
    t = alone + place * (extra_call + extra_weight * n * k)
    model, st = fit_gemm(n, m, k, t, n_sets=((),), m_sets=((),), in_place=place)
    # the model returned prices the in-place kernels (and probes' shapes as they would run in place)
    assert model.predict(n, m, k) == pytest.approx(alone + extra_call + extra_weight * n * k, rel=1e-3)
    assert st["in_place_terms"]["per_call_ms"][0] == pytest.approx(extra_call, rel=1e-3)
    assert st["in_place_terms"]["per_weight_element_ms"][0] == pytest.approx(extra_weight, rel=1e-3)
    # pooled as before, one model cannot price both: the in-place kernels come out too fast
    pooled, _ = fit_gemm(n, m, k, t, n_sets=((),), m_sets=((),))
    err = pooled.predict(n[place], m[place], k[place]) / t[place] - 1
    assert np.median(err) < -0.05


def test_without_in_place_samples_the_fit_is_the_pooled_one():
    rng = np.random.default_rng(1)
    n, m, k = _shapes(rng, 120)
    t = 1e-3 + 2e-9 * n * m * k
    a, _ = fit_gemm(n, m, k, t, in_place=np.zeros(120, dtype=bool))
    b, _ = fit_gemm(n, m, k, t)
    assert a.predict(n, m, k) == pytest.approx(b.predict(n, m, k), rel=1e-6)


def test_profiler_cost_comes_off_every_node_time_before_the_fits(monkeypatch):
    delta = 0.002
    seen = {}
    real_gemm, real_kinds = _profiling._fit_gemm_families, _profiling._fit_memory_bound_kinds

    def gemm(samples):
        seen["gemm"] = [s["t"] for s in samples]
        return real_gemm(samples)

    def kinds(samples, *spill):
        seen["kinds"] = [s["t"] for s in samples]
        return real_kinds(samples, *spill)

    monkeypatch.setattr(_profiling, "_fit_gemm_families", gemm)
    monkeypatch.setattr(_profiling, "_fit_memory_bound_kinds", kinds)
    rng = np.random.default_rng(2)
    n, m, k = _shapes(rng, 40)
    t = 1e-9 * n * m * k + delta + 0.001
    probes = [{"family": "conv", "kind": "conv", "n": int(a), "m": int(b), "k": int(c), "groups": 1, "in_c": int(c) // 9,
               "t": float(x), "source": "probe"} for a, b, c, x in zip(n, m, k, t)]
    relu = [{"kind": "relu", "mb": float(v), "t": 0.01 * v + delta + 0.0005} for v in (0.1, 0.5, 1.0, 2.0)]
    raw = {"probes": probes, "in_situ": [], "kinds": relu, "layout": [(0.5, 0.004), (1.0, 0.006), (2.0, 0.01)]}
    kf = _profiling._fit_kernel_models(raw, delta)
    assert seen["gemm"] == pytest.approx(list(t - delta))
    assert seen["kinds"] == pytest.approx([s["t"] - delta for s in relu])
    assert kf.op_kinds["relu"] == pytest.approx((0.01, 0.0005), rel=1e-6)
    assert kf.gemm["conv"].predict(n, m, k) == pytest.approx(t - delta, rel=1e-6)
    # a node shorter than the profiler's cost keeps a tenth of its time
    assert _profiling._less(0.001, delta) == pytest.approx(0.0001)


def test_a_kind_with_few_samples_gets_its_own_rate():
    """A kind with fewer than MIN_KIND samples keeps the default's overhead but its own rate: the
    default rate (adds, ReLUs, pools) priced a build's one GELU sample 80 % too fast."""
    cheap = [{"kind": k, "mb": mb, "t": 0.001 + 0.015 * mb} for k in ("add", "relu") for mb in (0.1, 0.5, 1.0, 2.0)]
    gelu = [{"kind": "gelu", "mb": 2.0, "t": 0.001 + 0.065 * 2.0}]
    default, kinds, stats = _profiling._fit_memory_bound_kinds(cheap + gelu)
    assert default[0] < 0.03
    assert kinds["gelu"][0] == pytest.approx(0.065, rel=0.05) and kinds["gelu"][1] == pytest.approx(default[1])
    assert stats["gelu"]["median_abs_error_pct"] < 5
    assert kinds["add"][0] == pytest.approx(0.015, rel=0.05)  # three or more: its own two terms
    # two samples: the median rate through them
    two = [{"kind": "gelu", "mb": mb, "t": default[1] + r * mb} for mb, r in ((1.0, 0.06), (3.0, 0.07))]
    _, kinds2, _ = _profiling._fit_memory_bound_kinds(cheap + two)
    assert kinds2["gelu"][0] == pytest.approx(0.065, rel=0.05)
    # the per-kind forms (what the profiler fits) treat a rare kind the same way
    forms, _, _, fstats = _profiling._fit_kind_forms(cheap + gelu, default)
    assert forms["gelu"][0] == pytest.approx(0.065, rel=0.05) and fstats["gelu"]["median_abs_error_pct"] < 5
