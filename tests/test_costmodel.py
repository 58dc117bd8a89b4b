"""Tests of augur_nas.costmodel: NNLS, the piecewise GEMM model, the op and memory models, the
vectorized latency, and the oracle built on them."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from augur_nas import ConstraintError, ProfileError, load_model, load_space, lower, totals
from augur_nas.costmodel import (FEATURES, LatencyModel, MemoryModel, OpModel, PiecewiseGemm, gemm_features,
                                 latency_ms, memory_mb, nnls)
from augur_nas.oracle import Oracle

from conftest import SPACES, ZOO


# --------------------------------------------------------------------------------------------- NNLS


def _nnls_brute(A, b):
    """Exhaustive NNLS over every support set (small problems only)."""
    c = A.shape[1]
    best, best_x = np.inf, np.zeros(c)
    for r in range(c + 1):
        for sup in itertools.combinations(range(c), r):
            x = np.zeros(c)
            if sup:
                x[list(sup)] = np.linalg.lstsq(A[:, sup], b, rcond=None)[0]
            if (x < -1e-12).any():
                continue
            res = np.linalg.norm(A @ x - b)
            if res < best - 1e-12:
                best, best_x = res, x
    return best_x, best


def test_nnls_matches_exhaustive_search():
    rng = np.random.default_rng(0)
    for _ in range(60):
        r, c = int(rng.integers(2, 12)), int(rng.integers(1, 5))
        A = rng.normal(size=(r, c)) * 10.0 ** rng.uniform(-4, 4, size=c)
        b = rng.normal(size=r)
        x = nnls(A, b)
        assert (x >= 0).all()
        _, best = _nnls_brute(A, b)
        assert np.linalg.norm(A @ x - b) <= best * (1 + 1e-9) + 1e-12


def test_nnls_recovers_exact_nonnegative_solution():
    rng = np.random.default_rng(1)
    A = rng.uniform(size=(30, 5)) * np.array([1, 1e9, 1e5, 1e5, 1e4])  # feature scales of a GEMM fit
    x0 = np.array([0.5, 2e-9, 0.0, 3e-6, 1e-5])
    x = nnls(A, A @ x0)
    assert np.allclose(x, x0, rtol=1e-8, atol=1e-15)


# --------------------------------------------------------------------------------------------- GEMM


def _sweep():
    """The paper's GEMM sweep (section 5.2), with two m per region of the fits below."""
    n = [16, 32, 64, 96, 128, 256, 512, 1024]
    m = [49, 196, 784, 1600, 3136, 12544]
    k = [64, 576, 1152, 1600, 2304, 3136]
    return (np.array(v, dtype=float).reshape(-1) for v in np.meshgrid(n, m, k, indexing="ij"))


def test_gemm_fit_recovers_a_known_piecewise_function():
    rng = np.random.default_rng(2)
    true = PiecewiseGemm(rng.uniform(size=(2, 3, 5)) * np.array([1.0, 1e-8, 1e-6, 1e-6, 1e-5]),
                         n_breaks=[128], m_breaks=[784, 3136])
    n, m, k = _sweep()
    t = true.predict(n, m, k)
    fit = PiecewiseGemm.fit(n, m, k, t, n_breaks=[128], m_breaks=[784, 3136])
    assert np.allclose(fit.predict(n, m, k), t, rtol=1e-8)
    assert np.allclose(fit.coef, true.coef, rtol=1e-5, atol=1e-12)
    # and it generalises to dims inside the regions that were never sampled
    n2, m2, k2 = np.array([200.0, 40, 1000]), np.array([1000.0, 100, 20000]), np.array([300.0, 3000, 64])
    assert np.allclose(fit.predict(n2, m2, k2), true.predict(n2, m2, k2), rtol=1e-6)
    assert fit.n_range == (16, 1024) and fit.m_range == (49, 12544) and fit.k_range == (64, 3136)


def test_gemm_fit_on_noisy_linear_cpu_data_and_empty_regions():
    rng = np.random.default_rng(3)
    n, m, k = _sweep()
    t = (0.2 + 4e-7 * n * m * k / 1e3) * rng.lognormal(0, 0.02, size=n.shape)
    one = PiecewiseGemm.fit(n, m, k, t)
    assert one.coef.shape == (1, 1, 5)
    assert np.median(np.abs(one.predict(n, m, k) / t - 1)) < 0.03
    # a region without samples takes the all-sample model
    pw = PiecewiseGemm.fit(n, m, k, t, n_breaks=[100000])
    assert np.allclose(pw.coef[1, 0], PiecewiseGemm.fit(n, m, k, t).coef[0, 0])
    # features can be left out
    only = PiecewiseGemm.fit(n, m, k, t, features=("1", "nmk"))
    assert (only.coef[0, 0, 2:] == 0).all()


def test_gemm_predict_is_elementwise_on_any_shape():
    g = PiecewiseGemm([[[0.1, 1e-9, 0, 0, 0], [0.2, 2e-9, 0, 0, 0]], [[0.3, 3e-9, 0, 0, 0], [0.4, 4e-9, 0, 0, 0]]],
                      n_breaks=[128], m_breaks=[1000])
    rng = np.random.default_rng(4)
    n = rng.integers(1, 600, size=(7, 11))
    m = rng.integers(1, 5000, size=(7, 11))
    k = rng.integers(1, 3000, size=(7, 11))
    t = g.predict(n, m, k)
    assert t.shape == (7, 11)
    for i, j in [(0, 0), (3, 5), (6, 10)]:
        ni, mi, ki = float(n[i, j]), float(m[i, j]), float(k[i, j])
        c = g.coef[int(ni >= 128), int(mi >= 1000)]
        assert t[i, j] == pytest.approx(c @ gemm_features(ni, mi, ki))
    # scalars and broadcasting
    assert g.predict(128, 1000, 10) == pytest.approx(0.4 + 4e-9 * 128 * 1000 * 10)
    assert g.predict(np.array([64, 256]), 10, 10).shape == (2,)
    # region bounds: n_breaks[i-1] <= n < n_breaks[i]
    assert g.predict(127, 1, 1) == pytest.approx(0.1 + 1e-9 * 127)


def test_gemm_outside_rules():
    coef = [0.5, 1e-6, 0.0, 0.0, 0.0]
    kw = dict(n_range=(32, 512), m_range=(49, 12544), k_range=(64, 4608))
    ext = PiecewiseGemm(coef, **kw)
    clip = PiecewiseGemm(coef, outside="clip", **kw)
    rai = PiecewiseGemm(coef, outside="raise", **kw)
    inside = (256, 784, 576)
    assert ext.predict(*inside) == clip.predict(*inside) == rai.predict(*inside)
    big = (1024, 784, 576)  # n above the fitted range
    assert ext.predict(*big) == pytest.approx(0.5 + 1e-6 * 1024 * 784 * 576)   # linear beyond the range
    assert clip.predict(*big) == pytest.approx(0.5 + 1e-6 * 512 * 784 * 576)   # priced at the edge
    assert clip.predict(1, 1, 1) == pytest.approx(0.5 + 1e-6 * 32 * 49 * 64)
    with pytest.raises(ProfileError) as e:
        rai.predict(np.array([[256, 1024]]).T, 784, 576, names=["conv3", "conv4"], profile="tk1-gpu")
    msg = str(e.value)
    assert "conv4" in msg and "n=1024" in msg and "m=784" in msg and "k=576" in msg and "tk1-gpu" in msg
    assert "n 32..512" in msg and "outside: raise" in msg
    # masked-out GEMMs (absent layers) are not checked
    assert rai.predict(np.array([256, 1024]), 784, 576, mask=np.array([True, False])).shape == (2,)
    with pytest.raises(ValueError):
        PiecewiseGemm(coef, outside="wrap")


def test_gemm_dict_round_trip_and_validation():
    g = PiecewiseGemm(np.arange(30, dtype=float).reshape(2, 3, 5) * 1e-3, n_breaks=[128], m_breaks=[196, 784],
                      n_range=(16, 2048), m_range=(49, 50176), k_range=(27, 4608), outside="clip")
    d = g.to_dict()
    assert d["features"] == list(FEATURES)
    assert PiecewiseGemm.from_dict(d) == g
    bad = dict(d, coef=d["coef"][:1])
    with pytest.raises(ProfileError, match=r"coef.*2 n-region"):
        PiecewiseGemm.from_dict(bad, "x.yaml", "latency.gemm.conv")
    neg = PiecewiseGemm(np.ones(5)).to_dict()
    neg["coef"][0][0][1] = -1.0
    with pytest.raises(ProfileError, match=r"latency\.gemm\.conv\.coef\[0\]\[0\]\[1\].*>= 0"):
        PiecewiseGemm.from_dict(neg, "x.yaml", "latency.gemm.conv")
    unsorted = dict(d, n_breaks=[128, 64])
    with pytest.raises(ProfileError, match="increase"):
        PiecewiseGemm.from_dict(unsorted)


# --------------------------------------------------------------------------------------------- op / memory


def test_op_model_default_fallback():
    ops = OpModel(default=(1.0, 0.5), kinds={"lrn": (10.0, 0.0)})
    assert ops.predict("lrn", 1e6, 1e6) == pytest.approx(20.0)
    assert ops.predict("sigmoid", 1e6, 0) == pytest.approx(1.5)  # not listed: default
    assert OpModel.from_dict(ops.to_dict()) == ops
    with pytest.raises(ProfileError, match=r"ops\.default.*ms_per_mb"):
        OpModel.from_dict({"default": {"overhead_ms": 1}}, "p.yaml", "latency.ops")


@pytest.fixture(scope="module")
def tables():
    out = {}
    for net in ("alexnet", "vgg16", "googlenet", "resnet50", "nin"):
        model = load_model(ZOO / f"{net}.yaml")
        out[net] = lower(model, np.zeros((1, model.n_genes), dtype=np.int64))
    return out


def test_memory_model_components(tables):
    t = tables["alexnet"]
    tot = totals(t)
    mm = MemoryModel(framework_overhead_mb=100, weight_copies=2, activations="caffe", workspace="max")
    w = tot["weights_bytes"][0] / 2**20
    a = tot["activation_bytes"][0] / 2**20
    ws = tot["workspace_bytes"][0] / 2**20
    assert mm.predict(t)[0] == pytest.approx(100 + 2 * w + a + ws)
    assert w == pytest.approx(232.6, abs=0.1)  # Table 4: AlexNet weights 233 MB
    # Caffe keeps one im2col buffer per conv layer
    s = MemoryModel(workspace="sum").components(t)["workspace_mb"][0]
    assert s == pytest.approx(t.rows["workspace_elems"].sum() * 4 / 2**20)
    assert s > ws
    # activations scale with the batch, weights and workspace do not
    b4 = MemoryModel(framework_overhead_mb=100, weight_copies=2, workspace="max").predict(t, batch=4)[0]
    assert b4 == pytest.approx(100 + 2 * w + 4 * a + ws)
    peak = MemoryModel(activations="peak", workspace="none").predict(t)[0]
    assert peak == pytest.approx(tot["peak_memory_bytes"][0] / 2**20)
    assert MemoryModel.from_dict(mm.to_dict()) == mm
    with pytest.raises(ProfileError, match="activations"):
        MemoryModel.from_dict({"framework_overhead_mb": 1, "activations": "lazy"})


# --------------------------------------------------------------------------------------------- latency


def _toy_model():
    conv = PiecewiseGemm([[[0.5, 1e-8, 1e-7, 1e-7, 1e-7]], [[0.1, 1e-8, 1e-7, 1e-7, 1e-7]]], n_breaks=[128])
    fc = PiecewiseGemm([0.0, 1e-8, 1e-6, 0.0, 0.0])
    return LatencyModel({"conv": conv, "fc": fc}, OpModel(default=(0.05, 0.01), kinds={"lrn": (3.0, 0.0)}),
                        layer_overhead_ms=0.02)


def test_latency_sums_layer_models(tables):
    lm = _toy_model()
    t = tables["alexnet"]
    total, by_kind = latency_ms(t, lm)
    r = t.rows
    expect = {}
    for s, op in enumerate(t.ops):
        if not r["mask"][s, 0] or op in ("dropout",):
            continue
        if op == "conv":
            n, m, k, g = (float(r[d][s, 0]) for d in ("n", "m", "k", "groups"))
            c = lm.gemm["conv"].coef[int(n >= 128), 0]
            v = g * (c @ gemm_features(n, m, k))
        elif op == "fc":
            v = lm.gemm["fc"].coef[0, 0] @ gemm_features(float(r["n"][s, 0]), 1.0, float(r["k"][s, 0]))
        else:
            per_mb, ov = lm.ops.coef(op)
            v = per_mb * float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4 / 1e6 + ov
        expect[op] = expect.get(op, 0.0) + v + 0.02
    assert set(by_kind) == set(expect)
    for op, v in expect.items():
        assert by_kind[op][0] == pytest.approx(v)
    assert total[0] == pytest.approx(sum(expect.values()))
    assert LatencyModel.from_dict(lm.to_dict()) == lm


def test_latency_batch_scaling(tables):
    lm = _toy_model()
    t = tables["vgg16"]
    _, k1 = latency_ms(t, lm, batch=1)
    _, k8 = latency_ms(t, lm, batch=8)
    # conv: 8 rounds of GEMMs; memory-bound: 8x the bytes, the same per-layer overheads
    n_conv = sum(1 for o in t.ops if o == "conv")
    assert k8["conv"][0] == pytest.approx(8 * (k1["conv"][0] - 0.02 * n_conv) + 0.02 * n_conv)
    _, ov = lm.ops.coef("relu")
    n_relu = sum(1 for o in t.ops if o == "relu")
    assert k8["relu"][0] == pytest.approx(8 * (k1["relu"][0] - (ov + 0.02) * n_relu) + (ov + 0.02) * n_relu)
    # fc: one GEMM with m = batch: the weights stream once
    fc = lm.gemm["fc"].coef[0, 0]
    r = t.rows
    exp = sum(fc @ gemm_features(float(r["n"][s, 0]), 8.0, float(r["k"][s, 0])) + 0.02
              for s, o in enumerate(t.ops) if o == "fc")
    assert k8["fc"][0] == pytest.approx(exp)
    assert k8["fc"][0] < 8 * k1["fc"][0]
    with pytest.raises(ProfileError):
        latency_ms(t, lm, batch=0)


def test_latency_vectorized_matches_per_candidate():
    space = load_space(SPACES / "mobile.yaml")
    X = space.sample(40, seed=5)
    lm = _toy_model()
    table = lower(space, X)
    total, by_kind = latency_ms(table, lm)
    assert total.shape == (40,)
    for i in (0, 7, 39):
        one, kinds1 = latency_ms(lower(space, X[i:i + 1]), lm)
        assert one[0] == pytest.approx(total[i])
        for k, v in kinds1.items():
            assert v[0] == pytest.approx(by_kind[k][i])
    assert np.allclose(sum(by_kind.values()), total)
    # a family per op kind: price dwconv apart from dense conv
    dw = LatencyModel(dict(lm.gemm, dwconv=PiecewiseGemm([5.0, 0, 0, 0, 0])), lm.ops,
                      kinds={"dwconv": {"gemm": "dwconv"}}, layer_overhead_ms=0.02)
    _, k2 = latency_ms(table, dw)
    assert not np.allclose(k2["dwconv"], by_kind["dwconv"])
    assert np.allclose(k2["conv"], by_kind["conv"])


def test_latency_kind_map_validation():
    lm = _toy_model()
    d = lm.to_dict()
    d["kinds"] = {"dwconv": {"gemm": "depthwise"}}
    with pytest.raises(ProfileError, match=r"`depthwise`.*latency\.kinds\.dwconv"):
        LatencyModel.from_dict(d, "p.yaml")
    d["kinds"] = {"relu": {"gemm": "conv"}}
    with pytest.raises(ProfileError, match="not matrix multiplications"):
        LatencyModel.from_dict(d, "p.yaml")
    d["kinds"] = {"warp": "bytes"}
    with pytest.raises(ProfileError, match="not an op kind"):
        LatencyModel.from_dict(d, "p.yaml")
    d["kinds"] = {"relu": "cheap"}
    with pytest.raises(ProfileError, match="bytes`, `free`"):
        LatencyModel.from_dict(d, "p.yaml")


# --------------------------------------------------------------------------------------------- oracle


def test_oracle_evaluate_chunks_explain_constraints(tables):
    space = load_space(SPACES / "resnet.yaml")
    X = space.sample(25, seed=1)
    o = Oracle(space, "tx1-gpu")
    res = o.evaluate(X)
    for key in ("latency_ms", "memory_mb", "macs", "params"):
        assert res[key].shape == (25,)
    kinds = [k for k in res if k.startswith("latency_ms.")]
    assert "latency_ms.conv" in kinds
    assert np.allclose(sum(res[k] for k in kinds), res["latency_ms"])
    small = Oracle(space, "tx1-gpu", chunk=4).evaluate(X)
    for key in res:
        assert np.allclose(small[key], res[key])
    assert np.allclose(res["macs"], totals(lower(space, X))["macs"])
    # explain: per-layer times that add up to the latency
    layers = o.explain(X[3])
    assert sum(layer["ms"] for layer in layers) == pytest.approx(res["latency_ms"][3])
    assert {"name", "type", "op", "gemm", "ms"} <= set(layers[0])
    assert any(layer["gemm"] and layer["gemm"]["n"] > 0 for layer in layers)
    # throughput: batches of b images back to back
    assert o.throughput(X[:2], batch=4) == pytest.approx(4000 / o.latency(X[:2], batch=4))
    # constraints: value - limit, <= 0 feasible
    lim = float(np.median(res["latency_ms"]))
    c = o.constraints(latency_ms=lim, params=1e9)
    assert c.names == ["latency_ms", "params"]
    v = c(X)
    assert v.shape == (25, 2) and np.allclose(v[:, 0], res["latency_ms"] - lim)
    assert c(X[0]) == pytest.approx([res["latency_ms"][0] - lim, res["params"][0] - 1e9])
    assert (c.feasible(X) == (res["latency_ms"] <= lim)).all()
    with pytest.raises(ConstraintError):
        o.constraints()
    with pytest.raises(ConstraintError):
        o.constraints(memory_mb=-5)
    with pytest.raises(ConstraintError):
        Oracle(space, "tx1-gpu", batch=0)


def test_memory_mb_with_profile(tables):
    o = Oracle(load_model(ZOO / "alexnet.yaml"), "tk1-gpu")
    t = tables["alexnet"]
    assert memory_mb(t, o.profile)[0] == pytest.approx(o.memory(np.zeros(0, dtype=np.int64))[0])
    # the GPU run holds a second copy of the weights (Table 4): tk1-gpu - tk1-cpu ~ the weights
    cpu = Oracle(load_model(ZOO / "alexnet.yaml"), "tk1-cpu")
    diff = o.memory(np.zeros(0, dtype=np.int64))[0] - cpu.memory(np.zeros(0, dtype=np.int64))[0]
    assert 200 < diff < 260
