"""lower(space, X): batch = one at a time, shape formulas (property tests), memory bounds."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from augur_nas import ShapeError, analyze_batch, load_space_dict, lower, totals
from conftest import SHIPPED_SPACES, ZOO_MODELS, shipped_space, zoo_model

FIELDS = ("mask", "in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "n", "k", "m", "groups", "macs",
          "params", "weight_elems", "in_elems", "out_elems", "workspace_elems")
# ops that write into their input's buffer (in place) or are views of it
IN_PLACE_OR_VIEW = {"relu", "relu6", "sigmoid", "tanh", "hsigmoid", "hswish", "swish", "batchnorm", "scale",
                    "dropout", "flatten", "identity", "zero", "select"}


def _field(table, f):
    """A field candidate-major, ``[B, L]`` (the table's own arrays are ``[L, B]``)."""
    return np.asarray(getattr(table, f)).T


# --------------------------------------------------------------------------------------------- batch


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_batch_equals_one_at_a_time(name):
    space = shipped_space(name)
    X = space.sample(20, seed=7)
    batch = lower(space, X)
    assert batch.B == 20 and batch.L == len(batch.names)
    for f in FIELDS:
        assert _field(batch, f).shape == (20, batch.L), f
    for b in range(len(X)):
        one = lower(space, X[b:b + 1])
        for f in FIELDS:
            np.testing.assert_array_equal(_field(one, f)[0], _field(batch, f)[b], err_msg=f"{name} {f} candidate {b}")


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_batch_totals_equal_one_at_a_time(name):
    space = shipped_space(name)
    X = space.sample(20, seed=9)
    tb = totals(lower(space, X))
    fast = analyze_batch(space, X)
    for b in range(len(X)):
        t1 = totals(lower(space, X[b:b + 1]))
        for key, v in t1.items():
            assert tb[key][b] == pytest.approx(float(v[0]), rel=1e-12), (key, b)
    for key, v in tb.items():
        np.testing.assert_allclose(np.asarray(fast[key], dtype=float), np.asarray(v, dtype=float), rtol=1e-12,
                                   err_msg=f"analyze_batch vs totals(lower): {key}")


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_batch_order_and_duplicates(name):
    """A candidate's row does not depend on its neighbours: permuting and repeating X permutes rows."""
    space = shipped_space(name)
    X = space.sample(10, seed=10)
    perm = np.array([3, 3, 0, 9, 1, 1, 5])
    t, tp = lower(space, X), lower(space, X[perm])
    for f in FIELDS:
        np.testing.assert_array_equal(_field(tp, f), _field(t, f)[perm], err_msg=f)


def test_models_lower_like_themselves():
    for name in ZOO_MODELS:
        m = zoo_model(name)
        t1 = lower(m, np.zeros((1, 0), dtype=np.int64))
        t3 = lower(m, np.zeros((3, 0), dtype=np.int64))
        for f in FIELDS:
            np.testing.assert_array_equal(_field(t3, f), np.repeat(_field(t1, f), 3, axis=0), err_msg=f"{name} {f}")


# --------------------------------------------------------------------------------------------- shapes


def _out(i, k, s, p, d=1, ceil=False):
    """The language's spatial formula (docs/language.md), written independently of lowering."""
    span = i + 2 * p - d * (k - 1) - 1
    if not ceil:
        return span // s + 1  # floor
    o = -(-span // s) + 1  # ceil
    if (o - 1) * s >= i + p:  # Caffe's clip: the last window must start inside the input
        o -= 1
    return o


@st.composite
def stacks(draw):
    c0 = draw(st.integers(1, 8))
    h0, w0 = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    c, h, w = c0, h0, w0
    layers, expect = [], []
    for _ in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(["conv", "conv", "maxpool", "avgpool"]))
        kh = draw(st.integers(1, 7))
        kw = draw(st.sampled_from([kh, draw(st.integers(1, 7))]))
        s = draw(st.integers(1, 3))
        p = draw(st.integers(0, 3))
        kernel = [kh, kw] if kh != kw else kh
        if kind == "conv":
            d = draw(st.integers(1, 2))
            out = draw(st.integers(1, 12))
            groups = draw(st.sampled_from([g for g in range(1, 5) if c % g == 0 and out % g == 0]))
            bias = draw(st.booleans())
            layers.append({"conv": {"out": out, "kernel": kernel, "stride": s, "pad": p, "dilation": d,
                                    "groups": groups, "bias": bias}})
            oh, ow = _out(h, kh, s, p, d), _out(w, kw, s, p, d)
            kvol = (c // groups) * kh * kw
            expect.append({"in": (c, h, w), "out": (out, oh, ow), "macs": out * kvol * oh * ow,
                           "params": out * kvol + (out if bias else 0), "k": kvol, "n": out // groups,
                           "m": oh * ow, "groups": groups})
        else:
            ceil = draw(st.booleans())
            layers.append({kind: {"kernel": kernel, "stride": s, "pad": p, "ceil": ceil}})
            oh, ow = _out(h, kh, s, p, 1, ceil), _out(w, kw, s, p, 1, ceil)
            out = c
            expect.append({"in": (c, h, w), "out": (c, oh, ow), "params": 0})
        if oh < 1 or ow < 1:
            return {"input": {"channels": c0, "resolution": [h0, w0]}, "layers": layers}, expect, False
        c, h, w = out, oh, ow
    return {"input": {"channels": c0, "resolution": [h0, w0]}, "layers": layers}, expect, True


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stacks())
def test_conv_pool_shapes(case):
    spec, expect, feasible = case
    if not feasible:
        with pytest.raises(ShapeError) as err:
            load_space_dict(spec, source="<stack>")
        msg = str(err.value)
        assert f"layers[{len(expect) - 1}]" in msg and "<stack>" in msg
        assert "larger than its input" in msg
        return
    model = load_space_dict(spec, source="<stack>")
    t = lower(model, np.zeros((1, 0), dtype=np.int64))
    assert t.L == len(expect)
    for s, e in enumerate(expect):
        got_in = tuple(int(_field(t, f)[0, s]) for f in ("in_c", "in_h", "in_w"))
        got_out = tuple(int(_field(t, f)[0, s]) for f in ("out_c", "out_h", "out_w"))
        assert got_in == e["in"], (s, spec["layers"][s])
        assert got_out == e["out"], (s, spec["layers"][s])
        assert all(v >= 1 for v in got_out)
        assert int(_field(t, "params")[0, s]) == e["params"]
        assert int(_field(t, "out_elems")[0, s]) == math.prod(e["out"])
        if "macs" in e:  # conv: MACs = out * k * m
            assert float(_field(t, "macs")[0, s]) == e["macs"]
            for f in ("k", "n", "m", "groups"):
                assert int(_field(t, f)[0, s]) == e[f], f
            assert int(_field(t, "weight_elems")[0, s]) == e["params"]


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 64), st.integers(1, 9), st.integers(1, 4), st.integers(0, 4), st.integers(1, 3))
def test_conv_shape_choices_batch(res, k, s, p, d):
    """A space of kernel/stride/pad/dilation choices lowers every candidate by the formula."""
    spec = {"input": {"channels": 2, "resolution": res},
            "layers": [{"conv": {"out": 4, "kernel": {"choice": sorted({1, k})}, "stride": {"choice": sorted({1, s})},
                                 "pad": {"choice": sorted({0, p})}, "dilation": {"choice": sorted({1, d})}}}]}
    feasible = all(_out(res, kk, ss, pp, dd) >= 1 for kk in (1, k) for ss in (1, s) for pp in (0, p) for dd in (1, d))
    if not feasible:  # a small space has every candidate checked when it is loaded
        with pytest.raises(ShapeError, match=r"<choices>, layers\[0\]\.conv"):
            load_space_dict(spec, source="<choices>")
        return
    space = load_space_dict(spec, source="<choices>")
    X = space.enumerate()
    t = lower(space, X)
    for b, x in enumerate(X):
        kk, ss, pp, dd = _named(space, x)
        o = _out(res, kk, ss, pp, dd)
        assert int(_field(t, "out_h")[b, 0]) == o and int(_field(t, "out_w")[b, 0]) == o
        assert float(_field(t, "macs")[b, 0]) == 4 * 2 * kk * kk * o * o


def _named(space, x):
    vals = {"kernel": 1, "stride": 1, "pad": 0, "dilation": 1}
    for i, g in enumerate(space.genes):
        vals[g.name.rsplit(".", 1)[1]] = g.options[x[i]]
    return vals["kernel"], vals["stride"], vals["pad"], vals["dilation"]


def test_kernel_larger_than_input_names_the_candidate():
    spec = {"input": {"channels": 3, "resolution": {"choice": [4, 32]}}, "layers": [{"conv": {"out": 8, "kernel": 7}}]}
    with pytest.raises(ShapeError, match=r"input.resolution=4.*layers\[0\]\.conv"):
        load_space_dict(spec, source="<x>")


# --------------------------------------------------------------------------------------------- memory


def _memory_bounds(table):
    """Check peak memory against its bounds for every candidate of a table."""
    t = totals(table)
    mask = _field(table, "mask")
    in_b, out_b = 4 * _field(table, "in_elems").astype(float), 4 * _field(table, "out_elems").astype(float)
    owning = np.array([op not in IN_PLACE_OR_VIEW for op in table.ops])
    multi = np.array([len(set(ins)) > 1 for ins in table.inputs])
    for b in range(table.B):
        peak_act = t["peak_memory_bytes"][b] - t["weights_bytes"][b]
        sel = mask[b] & owning
        # a layer's inputs and its output are alive together when it runs (joins whose inputs may
        # alias one buffer are bounded by their largest input instead)
        single = sel & ~multi
        lower_bound = (in_b[b][single] + out_b[b][single]).max(initial=0)
        joins = sel & multi
        lower_bound = max(lower_bound, out_b[b][joins].max(initial=0))
        assert peak_act >= lower_bound - 1e-6, (table.source, b)
        assert t["peak_memory_bytes"][b] <= (t["weights_bytes"][b] + t["activation_bytes"][b]
                                             + t["workspace_bytes"][b] + 1e-6), (table.source, b)
        assert t["workspace_bytes"][b] == (4 * _field(table, "workspace_elems")[b]).max(initial=0)
        assert t["activation_bytes"][b] >= out_b[b][sel].max(initial=0)


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_peak_memory_bounds(name):
    _memory_bounds(lower(zoo_model(name), np.zeros((1, 0), dtype=np.int64)))


@pytest.mark.parametrize("name", SHIPPED_SPACES)
def test_space_peak_memory_bounds(name):
    space = shipped_space(name)
    _memory_bounds(lower(space, space.sample(20, seed=13)))


@settings(max_examples=100, deadline=None)
@given(stacks())
def test_stack_peak_memory_bounds(case):
    spec, expect, feasible = case
    if feasible:
        spec = {**spec, "layers": spec["layers"] + ["relu"]}
        _memory_bounds(lower(load_space_dict(spec), np.zeros((1, 0), dtype=np.int64)))
