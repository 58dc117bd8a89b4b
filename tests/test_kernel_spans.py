"""Memory-bound kinds' own forms (issue 11): a per-channel-plane term for a join broadcast per
channel (squeeze-excite's multiply) and a cache knee per kind; how they are priced (both paths),
stored, fitted and calibrated, and that profiles without them price exactly as before."""

import copy

import numpy as np
import pytest
from conftest import ROOT

import augur_nas as an
from augur_nas import ProfileError
from augur_nas.costmodel import LatencyModel, OpModel, PiecewiseGemm
from augur_nas.costmodel._ops import Spill, channel_spans
from augur_nas.lowering import lower
from augur_nas.measure import _profiling as P
from augur_nas.measure._calibrate import scaled_latency
from augur_nas.measure._fitting import MIN_ABOVE_KNEE, fit_kind
from augur_nas.models import load_space_dict
from augur_nas.oracle import _fast_costs, _table_costs
from augur_nas.profile import load_profile


def _se_spec(c=96, res=7):
    """A squeeze-excite block on a c x res x res tensor: the multiply reads x and a c x 1 x 1 gate;
    then a sum of two same-shaped tensors and a concat."""
    return {"name": "se", "input": {"channels": c, "resolution": res}, "layers": [
        {"conv": {"name": "x", "out": c, "kernel": 1}},
        {"globalpool": {"name": "pool"}},
        {"conv": {"name": "fc1", "out": c, "kernel": 1}},
        {"sigmoid": {"name": "gate"}},
        {"mul": {"name": "mul", "inputs": ["x", "gate"]}},
        {"add": {"name": "sum", "inputs": ["mul", "x"]}},
        {"concat": {"name": "cat", "inputs": ["sum", "x"]}}]}


def _table(c=96, res=7):
    return lower(load_space_dict(_se_spec(c, res)), np.zeros((1, 0), dtype=np.int64))


def _slot(table, name):
    return table.names.index(name)


def _spans_of(table, name):
    r, s = table.rows, _slot(table, name)
    return float(channel_spans(table.ops[s], r["in_elems"][s, 0], r["out_elems"][s, 0], r["out_c"][s, 0]))


def test_a_channel_broadcast_walks_one_plane_per_channel_and_nothing_else_does():
    t = _table(96, 7)
    assert _spans_of(t, "mul") == 96.0
    for name in ("sum", "cat", "pool", "gate"):  # same-shaped join, concat, pool, activation
        assert _spans_of(t, name) == 0.0, name
    # a 1x1 tensor's planes are single elements: nothing to walk apart from streaming
    assert _spans_of(_table(96, 1), "mul") == 0.0


def _ops_model(per_span=None, kind_spill=None, spill=None):
    return OpModel((0.02, 0.001), {"mul": (0.015, 0.0013), "add": (0.014, 0.0007), "concat": (0.02, 0.0005)},
                   spill, per_span, kind_spill)


def test_the_per_plane_term_and_a_kinds_knee_price_exactly():
    ops = _ops_model({"mul": 9e-6}, {"mul": Spill(1.0, 2.0)}, Spill(0.5, 1.0))
    moved = 3e6
    assert float(ops.time_ms("mul", moved, 2, 96.0)) == pytest.approx(
        0.015 * (3 + 2.0 * 2) * 2 + 9e-6 * 96 * 2 + 0.0013, rel=1e-12)
    # a kind without its own knee keeps the shared one; the plane term is the kind's alone
    assert float(ops.time_ms("add", moved, 1, 96.0)) == pytest.approx(0.014 * (3 + 1.0 * 2.5) + 0.0007, rel=1e-12)
    gemm = {"conv": PiecewiseGemm.linear(0.0, 1e-9)}
    table = _table(96, 7)
    with_term = LatencyModel(gemm, ops, {}, 0.0).slot_times(table, batch=3)[:, 0]
    without = LatencyModel(gemm, _ops_model(None, {"mul": Spill(1.0, 2.0)}, Spill(0.5, 1.0)), {}, 0.0) \
        .slot_times(table, batch=3)[:, 0]
    diff = with_term - without
    assert diff[_slot(table, "mul")] == pytest.approx(9e-6 * 96 * 3, rel=1e-12)
    assert np.count_nonzero(diff) == 1


def test_the_forms_round_trip_and_old_data_prices_as_before():
    ops = _ops_model({"mul": 9e-6}, {"mul": Spill(2.0, 1.5), "concat": Spill()})
    d = ops.to_dict()
    assert d["kinds"]["mul"]["per_span_ms"] == 9e-6 and d["kinds"]["mul"]["spill"] == {"above_mb": 2.0, "ratio": 1.5}
    assert "per_span_ms" not in d["kinds"]["add"] and "spill" not in d["kinds"]["add"]
    assert OpModel.from_dict(d) == ops
    # a profile without the keys: no plane term, no knee of a kind's own, the same times as the bare pair
    old = OpModel.from_dict({"default": {"ms_per_mb": 0.02}, "kinds": {"mul": {"ms_per_mb": 0.015, "overhead_ms": 0.0013}}})
    assert old.per_span == {} and old.kind_spill == {} and "per_span_ms" not in old.to_dict()["kinds"]["mul"]
    assert float(old.time_ms("mul", 3e6, 2, 96.0)) == pytest.approx(0.015 * 3 * 2 + 0.0013, rel=1e-15)
    with pytest.raises(ValueError):
        OpModel((0.0, 0.0), {"mul": (0.01, 0.0)}, per_span={"mul": -1.0})


def test_the_shipped_profiles_have_no_new_forms_and_price_as_they_did():
    """Profiles built before the forms load unchanged: their op entries have neither key, so the
    times are the plain bytes model's (the golden figures of test_profile keep them honest)."""
    for name in ("x86-2core-ort", "tx1-cpu"):
        ops = load_profile(name).latency.ops
        assert ops.per_span == {} and ops.kind_spill == {}, name
    ops = load_profile("x86-2core-ort").latency.ops
    a, c = ops.coef("mul")
    assert float(ops.time_ms("mul", 2e6, 1, 500.0)) == pytest.approx(a * 2 + c, rel=1e-15)
    # the Xeon profile was rebuilt with the forms (16:31): squeeze-excite's multiply pays per plane
    xeon = load_profile("x86-xeon-avx512-ort").latency.ops
    assert xeon.per_span.get("mul", 0) > 0
    assert float(xeon.time_ms("mul", 2e5, 1, 1536.0)) > float(xeon.time_ms("mul", 2e5, 1, 48.0))


def test_a_bad_per_plane_cost_in_a_profile_is_named(tmp_path):
    import yaml

    d = yaml.safe_load((ROOT / "augur_nas/device_profiles/x86-2core-ort.yaml").read_text())  # no forms of its own
    d["latency"]["ops"]["kinds"]["mul"]["per_span_ms"] = -1.0
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(ProfileError) as e:
        load_profile(str(p))
    assert "latency.ops.kinds.mul.per_span_ms" in str(e.value) and "bad.yaml" in str(e.value)
    d["latency"]["ops"]["kinds"]["mul"]["per_span_ms"] = 1e-5
    d["latency"]["ops"]["kinds"]["mul"]["spill"] = {"above_mb": 2.0, "ratio": 1.5}
    p.write_text(yaml.safe_dump(d))
    got = load_profile(str(p)).latency.ops
    assert got.per_span == {"mul": 1e-5} and got.kind_spill == {"mul": Spill(2.0, 1.5)}


def _samples(rng, n, per_span, knee, above_mb=1.0, mb_range=(0.01, 8.0)):
    mb = np.exp(rng.uniform(np.log(mb_range[0]), np.log(mb_range[1]), n))
    planes = rng.choice([16.0, 96.0, 576.0, 1536.0], n)
    t = 0.015 * (mb + knee * np.maximum(mb - above_mb, 0)) + 0.001 + per_span * planes
    return mb, t * np.exp(rng.normal(0, 0.02, n)), planes


def test_fit_kind_finds_the_plane_term_and_the_knee():
    rng = np.random.default_rng(0)
    mb, t, planes = _samples(rng, 200, 1e-5, 2.0)
    f = fit_kind(mb, t, planes)
    assert f.spill == Spill(1.0, 2.0)
    assert f.per_span_ms == pytest.approx(1e-5, rel=0.15) and f.ms_per_mb == pytest.approx(0.015, rel=0.1)
    # the same times without the planes' cost: no plane term worth the name; no knee in a line
    mb, t, planes = _samples(rng, 200, 0.0, 0.0)
    f = fit_kind(mb, t, planes)
    assert f.spill.ratio == 0.0 and f.per_span_ms < 1e-7
    # no samples walk planes (not a broadcast join): the plane column is not even fitted
    assert fit_kind(mb, t, np.zeros_like(mb)).per_span_ms == 0.0


def test_a_knee_needs_enough_samples_above_it():
    """With one or two large samples a knee is an extrapolation (BatchNorm's on every record)."""
    rng = np.random.default_rng(1)
    mb, t, _ = _samples(rng, 40, 0.0, 3.0, above_mb=0.25, mb_range=(0.01, 0.2))
    big = np.array([0.6, 0.9]), 0.015 * (np.array([0.6, 0.9]) + 3.0 * np.array([0.35, 0.65])) + 0.001
    mb, t = np.concatenate([mb, big[0]]), np.concatenate([t, big[1]])
    assert int(np.sum(mb > 0.25)) < MIN_ABOVE_KNEE
    assert fit_kind(mb, t, np.zeros_like(mb)).spill.ratio == 0.0


def test_an_old_record_gets_its_samples_planes_from_its_specs():
    spec = _se_spec(96, 14)
    table = _table(96, 14)
    r, s = table.rows, _slot(table, "mul")
    mb = float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4 / 1e6
    old = [{"kind": "mul", "mb": mb, "t": 0.01, "reorders": 0, "net": "n0"},
           {"kind": "add", "mb": 0.2, "t": 0.01, "reorders": 0, "net": "n0"}]
    got = P._with_spans(old, {"n0": spec})
    assert got[0]["spans"] == 96.0 and got[1]["spans"] == 0.0
    new = [dict(old[0], spans=5.0)]
    assert P._with_spans(new, {}) is new


def test_kernel_fit_prices_what_it_fitted():
    """The profiler's per-kind fit gives the model the plane term and the knees it chose, and the
    end-to-end scale multiplies the plane term as every other time coefficient."""
    rng = np.random.default_rng(2)
    mb, t, planes = _samples(rng, 120, 1e-5, 2.0)
    samples = [{"kind": "mul", "mb": float(a), "t": float(b), "spans": float(c), "net": "x"} for a, b, c in zip(mb, t, planes)]
    op_kinds, per_span, kind_spill, stats = P._fit_kind_forms(samples, (0.02, 0.0))
    assert kind_spill["mul"] == Spill(1.0, 2.0) and per_span["mul"] > 0 and stats["mul"]["spill"]["ratio"] == 2.0
    kf = P._KernelFit(gemm={}, kinds={}, default=(0.02, 0.0), op_kinds=op_kinds, reorder=(0, 0), gemm_stats={},
                      op_stats=stats, reorder_stats={}, per_span=per_span, kind_spill=kind_spill)
    one, two = kf.op_model(), kf.op_model(2.0)
    assert float(two.time_ms("mul", 3e6, 1, 96.0)) == pytest.approx(2 * float(one.time_ms("mul", 3e6, 1, 96.0)), rel=1e-12)


def _with_forms(profile):
    p = copy.deepcopy(profile)
    d = p.latency.to_dict()
    d["ops"]["kinds"]["mul"]["per_span_ms"] = 1.2e-5
    d["ops"]["kinds"]["mul"]["spill"] = {"above_mb": 1.0, "ratio": 2.0}
    d["ops"]["kinds"]["add"]["per_span_ms"] = 3e-6  # never walks planes in the shipped spaces: no effect
    d["ops"]["kinds"]["maxpool"]["spill"] = {"above_mb": 0.5, "ratio": 1.0}
    p.latency = LatencyModel.from_dict(d)
    return p


@pytest.mark.parametrize("path", ["spaces/mobile.yaml", "spaces/nb201.yaml", "spaces/resnet.yaml"])
def test_fast_path_equals_reference_with_the_forms(path):
    space = an.load_space(ROOT / path)
    X = space.sample(60, seed=3)
    base = load_profile("x86-xeon-avx512-ort")
    prof = _with_forms(base)
    fast, ref = _fast_costs(space, X, prof, 2), _table_costs(space, X, prof, 2)
    np.testing.assert_allclose(fast[0], ref[0], rtol=1e-9)
    for kind in ref[1]:
        np.testing.assert_allclose(fast[1][kind], ref[1][kind], rtol=1e-9, atol=1e-12, err_msg=kind)
    if "mobile" in path:  # squeeze-excite multiplies: the forms change the price
        assert np.all(ref[1]["mul"] > _table_costs(space, X, base, 2)[1]["mul"])


def test_calibration_scales_the_plane_term_as_a_per_call_cost_and_keeps_the_knee():
    lat = _with_forms(load_profile("x86-xeon-avx512-ort")).latency
    got = scaled_latency(lat, {"memory": 2.0, "call": 0.5, "pool": 3.0})
    assert got.ops.per_span["mul"] == pytest.approx(1.2e-5 * 0.5, rel=1e-12)
    assert got.ops.coef("mul")[0] == pytest.approx(lat.ops.coef("mul")[0] * 2.0, rel=1e-12)
    assert got.ops.kind_spill == lat.ops.kind_spill


def test_a_node_ort_fused_from_a_pattern_is_its_layers():
    """ONNX Runtime names the node it fuses swish's x * sigmoid(x) into "<layer>/QuickGeluFusion/":
    it is the swish layer's, not the conv's whose name is the dotted prefix."""
    from augur_nas.measure._ortnodes import layer_of

    names = {"c1": 0, "c1.bn": 1, "c1.act": 2, "fc": 5}
    assert layer_of("c1.act/QuickGeluFusion/", names) == 2
    assert layer_of("c1.bn_nchwc", names) == 1 and layer_of("fc.flatten", names) == 5
    assert layer_of("other/QuickGeluFusion/", names) is None


@pytest.mark.slow  # runs ONNX Runtime: `pytest -m "not slow"` leaves it out
def test_swish_time_goes_to_the_swish_layer_in_place(tmp_path):
    """Whatever nodes the runtime makes of a swish (one fused node, or Sigmoid and Mul), their
    time is the swish layer's and the conv's slot holds only its conv."""
    from augur_nas.measure._ortnodes import attribute
    from augur_nas.measure._settings import RuntimeSettings

    lat = load_profile("x86-xeon-avx512-ort").latency
    spec = {"name": "sw", "input": {"channels": 32, "resolution": 14}, "layers": [
        {"conv": {"name": "c1", "out": 128, "kernel": 1}}, {"batchnorm": {"name": "c1.bn"}},
        {"swish": {"name": "c1.act"}}, {"conv": {"name": "c2", "out": 32, "kernel": 1}}]}
    net = P._OrtNet("sw", load_space_dict(spec), str(tmp_path), lat.fuse)
    try:
        _, times, graph = P.profiled_runs(net, RuntimeSettings(), str(tmp_path), 0.02, 5, 20, want_graph=True)
    finally:
        net.remove()
    priced = [lat.family(op)[0] != "free" for op in net.table.ops]
    att = attribute(times, net.table, net.owner, priced, graph, layout_bucket=True)
    act, conv = net.table.names.index("c1.act"), net.table.names.index("c1")
    assert att.get(act), att
    assert {op for _, op, _, _ in att[conv]} == {"Conv"}
