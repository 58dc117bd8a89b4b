"""The kernel model's forms that issue 11 added (plain data, exact arithmetic, no measurement):
a cache knee (``Spill``) for memory-bound layers and layout conversions, fitted by ``fit_spill``,
and a depthwise conv of stride 2 priced by a model of its own."""

import numpy as np
import pytest

from augur_nas.costmodel import LatencyModel, LayoutRules, OpModel, PiecewiseGemm
from augur_nas.costmodel._latency import PASS_FAMILIES, is_strided
from augur_nas.costmodel._ops import Spill
from augur_nas.lowering import lower
from augur_nas.measure._fitting import fit_spill
from augur_nas.measure._profiling import _gemm_sample, _KernelFit
from augur_nas.models import load_space_dict
from augur_nas.profile import load_profile


def test_spill_prices_bytes_above_the_knee_ratio_times_more():
    sp = Spill(above_mb=1.0, ratio=2.0)
    assert float(sp.priced_bytes(0.5e6)) == 0.5e6
    assert float(sp.priced_bytes(3e6)) == pytest.approx(3e6 + 2.0 * 2e6)
    ops = OpModel((0.0, 0.0), {"mul": (0.01, 0.001)}, sp)
    assert float(ops.predict("mul", 1.5e6, 1.5e6)) == pytest.approx(0.01 * (3 + 2 * 2) + 0.001)
    assert float(ops.predict("mul", 0.25e6, 0.25e6)) == pytest.approx(0.01 * 0.5 + 0.001)


def test_spill_round_trips_and_old_data_prices_as_before():
    ops = OpModel((0.02, 0.001), {"add": (0.01, 0.0)}, Spill(2.0, 1.0))
    assert OpModel.from_dict(ops.to_dict()) == ops
    assert OpModel.from_dict(ops.to_dict()).spill == Spill(2.0, 1.0)
    old = OpModel.from_dict({"default": {"ms_per_mb": 0.02, "overhead_ms": 0.001}})
    assert old.spill == Spill() and "spill" not in old.to_dict()
    assert float(old.predict("relu", 4e6, 4e6)) == pytest.approx(0.02 * 8 + 0.001)
    lay = LayoutRules(["conv"], block=16, reorder=(0.03, 0.0005), spill=(0.5, 3.0))
    assert LayoutRules.from_dict(lay.to_dict()).spill == Spill(0.5, 3.0)
    assert "spill" not in LayoutRules(["conv"], block=16).to_dict()
    with pytest.raises(ValueError):
        Spill.of((1.0, -1.0))
    # a profile built before the knee (the AVX2 EPYC one) loads and keeps pricing linearly
    p = load_profile("x86-2core-ort")
    assert p.latency.ops.spill == Spill() and p.latency.layout.spill == Spill()


def _se_net():
    """A blocked conv on a 1 MB input (converted to blocked), then a broadcast multiply (plain:
    its 4 MB input is converted back, its gate too; the network ends plain)."""
    return {"name": "se", "input": {"channels": 16, "resolution": 128}, "layers": [
        {"conv": {"name": "c", "out": 64, "kernel": 1}},
        {"globalpool": {"name": "pool"}},
        {"conv": {"name": "fc1", "out": 64, "kernel": 1}},
        {"sigmoid": {"name": "gate"}},
        {"mul": {"name": "mul", "inputs": ["c", "gate"]}}]}


def test_layout_conversions_of_large_tensors_pay_the_knee():
    table = lower(load_space_dict(_se_net()), np.zeros((1, 0), dtype=np.int64))
    gemm = {"conv": PiecewiseGemm.linear(0.0, 1e-9)}

    def reorder_ms(spill):
        lay = LayoutRules(["conv", "globalpool"], ["sigmoid"], ["add"], block=16, reorder=(0.03, 0.0), spill=spill)
        st, count = LatencyModel(gemm, OpModel((0.0, 0.0)), {}, 0.0, layout=lay).slot_costs(table)
        return float(st[:, 0].sum() - LatencyModel(gemm, OpModel((0.0, 0.0)), {}, 0.0).slot_times(table)[:, 0].sum()), \
            float(count[:, 0].sum())

    linear, n = reorder_ms(None)
    knee, n2 = reorder_ms((1.0, 2.0))
    big, entry = 64 * 128 * 128 * 4 / 1e6, 16 * 128 * 128 * 4 / 1e6  # MB of the multiplied tensor, the input
    assert n == n2 == 3
    assert linear > 0 and knee - linear == pytest.approx(0.03 * 2.0 * ((big - 1.0) + (entry - 1.0)), rel=1e-9)


def test_fit_spill_finds_a_knee_and_none_where_there_is_none():
    rng = np.random.default_rng(0)
    mb = np.exp(rng.uniform(np.log(0.01), np.log(8.0), 300))
    knee = 0.02 * (mb + 2.0 * np.maximum(mb - 1.0, 0)) + 0.002
    line = 0.02 * mb + 0.002
    noise = np.exp(rng.normal(0, 0.03, 300))
    got = fit_spill({"a": (mb, knee * noise), "b": (mb, 1.5 * knee * noise)})
    assert got.above_mb == 1.0 and got.ratio == 2.0
    assert fit_spill({"a": (mb, line * noise)}).ratio == 0.0


def test_strided_depthwise_has_its_own_model():
    spec = {"name": "dw", "input": {"channels": 32, "resolution": 32}, "layers": [
        {"dwconv": {"name": "s1", "kernel": 3}}, {"dwconv": {"name": "s2", "kernel": 3, "stride": 2}},
        {"dwconv": {"name": "s2k5", "kernel": 5, "stride": 2}}, {"dwconv": {"name": "tiny", "kernel": 3}}]}
    table = lower(load_space_dict(spec), np.zeros((1, 0), dtype=np.int64))
    r = table.rows
    assert [bool(is_strided(r["in_h"][s, 0], r["out_h"][s, 0])) for s in range(4)] == [False, True, True, False]
    gemm = {"conv": PiecewiseGemm.linear(0.0, 1e-9), "dwconv": PiecewiseGemm.linear(0.0, 1e-6),
            "dwconv_s2": PiecewiseGemm.linear(0.0, 3e-6)}
    kinds = {"dwconv": {"gemm": "dwconv", "strided": "dwconv_s2"}}
    model = LatencyModel(gemm, OpModel((0.0, 0.0)), kinds, 0.0)
    st = model.slot_times(table)[:, 0]
    for s in range(4):
        fam = _gemm_sample(table, s, 1.0, "probe")["family"]
        n, m, k, g = (int(r[f][s, 0]) for f in ("n", "m", "k", "groups"))
        assert fam == ("dwconv_s2" if s in (1, 2) else "dwconv")
        assert st[s] == pytest.approx(float(gemm[fam].predict(n, m, k)) * g, rel=1e-12)
    # a model without the variant prices every depthwise conv with `dwconv`, as before
    plain = LatencyModel(gemm, OpModel((0.0, 0.0)), {"dwconv": {"gemm": "dwconv"}}, 0.0).slot_times(table)[:, 0]
    assert plain[1] < st[1] and plain[0] == st[0]
    assert LatencyModel.from_dict(model.to_dict()) == model


def test_kernel_fit_of_an_old_record_has_no_knee():
    assert _KernelFit(*([None] * 8)).ops_spill == Spill() and _KernelFit(*([None] * 8)).layout_spill == Spill()


@pytest.mark.parametrize("path", ["spaces/mobile.yaml", "spaces/nb201.yaml"])
def test_fast_path_equals_reference_with_knees_and_a_strided_model(path):
    """The Oracle's segment tabulation and the reference path price the cache knees (layout and
    memory-bound kinds) and the stride-2 depthwise model alike."""
    import augur_nas as an

    p = load_profile("x86-xeon-avx512-ort")
    d = p.latency.to_dict()
    d["layout"]["spill"] = {"above_mb": 0.5, "ratio": 3.0}
    d["ops"]["spill"] = {"above_mb": 1.0, "ratio": 1.0}
    d["gemm"]["dwconv_s2"] = PiecewiseGemm.from_dict(d["gemm"]["dwconv"]).scaled(1.5).to_dict()
    d["kinds"]["dwconv"] = {"gemm": "dwconv", "strided": "dwconv_s2"}
    p.latency = LatencyModel.from_dict(d)
    space = an.load_space(path)
    X = space.sample(30, seed=9)
    o = an.Oracle(space, p)
    ref, fast = o.evaluate(X, reference=True), o.evaluate(X)
    np.testing.assert_allclose(fast["latency_ms"], ref["latency_ms"], rtol=1e-9, atol=1e-12)
    # and the knees and the variant change the price of the mobile space (NAS-Bench-201's tensors
    # are 64-256 KB and it has no depthwise conv: its price stays)
    if "nb201" in path:
        return
    base = an.Oracle(space, load_profile("x86-xeon-avx512-ort")).evaluate(X, reference=True)
    assert (np.abs(ref["latency_ms"] / base["latency_ms"] - 1) > 1e-3).any()


def test_a_strided_variant_shares_its_base_family_in_calibration():
    """`calibrate` and the profile's correction fit one factor for a kind's base model and its
    stride-2 variant: the variant is not a family of its own, and its factor scales both models."""
    from augur_nas.measure._calibrate import families, scaled_latency

    p = load_profile("x86-xeon-avx512-ort")
    d = p.latency.to_dict()
    d["gemm"]["dwconv_s2"] = PiecewiseGemm.from_dict(d["gemm"]["dwconv"]).scaled(1.5).to_dict()
    d["kinds"]["dwconv"] = {"gemm": "dwconv", "strided": "dwconv_s2"}
    lat = LatencyModel.from_dict(d)
    fams = families(lat)
    assert "dwconv" in fams and "dwconv_s2" not in fams
    scaled = scaled_latency(lat, {"dwconv": 2.0, "call": 1.0})
    for name in ("dwconv", "dwconv_s2"):
        before = np.asarray(lat.gemm[name].to_dict()["coef"], dtype=float)
        after = np.asarray(scaled.gemm[name].to_dict()["coef"], dtype=float)
        feats = lat.gemm[name].to_dict().get("features")
        work = np.array([f != "1" for f in feats]) if feats else np.ones(before.shape, dtype=bool)
        np.testing.assert_allclose(after[..., work], 2.0 * before[..., work])


# ------------------------------------------------------------------ a fused activation's pass


def _expand(act, readers=1):
    """A 1x1 expansion conv with BatchNorm and ``act`` (a second reader of the BatchNorm's output
    keeps the activation out of the conv's kernel)."""
    layers = [{"conv": {"name": "c", "out": 96, "kernel": 1}}, {"batchnorm": {"name": "bn"}}, {act: {"name": "a"}}]
    if readers > 1:
        layers.append({"add": {"name": "j", "inputs": ["bn", "a"]}})
    return lower(load_space_dict({"name": "e", "input": {"channels": 16, "resolution": 28}, "layers": layers}),
                 np.zeros((1, 0), dtype=np.int64))


def _every_family(rate):
    return {f: pytest.approx(rate) for f in PASS_FAMILIES}


def _ort_like(fused_pass=None):
    from augur_nas.costmodel import FusionRules

    fuse = FusionRules([{"into": ["conv"], "fold": ["batchnorm"], "join": ["add"], "act": ["relu", "relu6"]}])
    return LatencyModel({"conv": PiecewiseGemm.linear(0.01, 1e-9)}, OpModel((0.02, 0.001)), {}, 0.0, fuse,
                        fused_pass=fused_pass)


def test_a_fused_relu6_pays_a_pass_over_its_output():
    mb = 96 * 28 * 28 * 4 / 1e6
    t6 = _expand("relu6")
    without, with_pass = _ort_like().slot_times(t6, batch=3)[:, 0], _ort_like({"relu6": 0.03}).slot_times(t6, batch=3)[:, 0]
    # on the fused activation's slot, once per image; nothing else moves
    assert with_pass[2] - without[2] == pytest.approx(3 * 0.03 * mb, rel=1e-12) and without[2] == 0.0
    np.testing.assert_array_equal(with_pass[:2], without[:2])
    # ReLU is not in the pass list: it costs nothing, as before
    t1 = _expand("relu")
    np.testing.assert_array_equal(_ort_like({"relu6": 0.03}).slot_times(t1), _ort_like().slot_times(t1))
    # an activation that is not fused runs as a layer of its own, priced by its bytes, no pass on top
    t2 = _expand("relu6", readers=2)
    np.testing.assert_array_equal(_ort_like({"relu6": 0.03}).slot_times(t2), _ort_like().slot_times(t2))
    # the key round-trips; a profile without it prices fused activations at nothing
    m = _ort_like({"relu6": 0.03})
    assert LatencyModel.from_dict(m.to_dict()) == m and m.to_dict()["fused_pass"] == {"relu6": 0.03}
    assert "fused_pass" not in _ort_like().to_dict() and load_profile("x86-2core-ort").latency.fused_pass == {}
    # the Xeon profile was rebuilt with the pass after 1x1 convs on (16:31): a rate for that family only
    xeon = load_profile("x86-xeon-avx512-ort").latency.fused_pass
    assert xeon and all(not isinstance(v, dict) or set(k for k, r in v.items() if r) <= {"conv_1x1"} for v in xeon.values())


def test_a_bad_fused_pass_is_one_clear_error():
    from augur_nas._errors import ProfileError

    d = _ort_like({"relu6": 0.03}).to_dict()
    for bad in ({"relu7": 0.03}, {"relu6": -1.0}, {"relu6": "fast"}, ["relu6"], {"relu6": {"conv_1x1": 0.03}},
                {"relu6": {"conv_1x1": 0.03, "dwconv": -0.01, "conv": 0.02}},
                {"relu6": {"conv_1x1": 0.03, "dwconv": 0.01, "conv": 0.02, "fc": 0.0}}):
        with pytest.raises(ProfileError, match="fused_pass"):
            LatencyModel.from_dict(dict(d, fused_pass=bad))


def test_the_profile_fit_takes_the_pass_off_the_gemm_samples(monkeypatch):
    """Kernels timed with a fused ReLU6 (its pass included) and pairs with and without it: the
    fitted GEMM model prices the multiplication alone, and the latency model adds the pass back."""
    from augur_nas.measure import _profiling
    from augur_nas.measure._profiling import _fit_kernel_models, fit_fused_pass

    monkeypatch.setattr(_profiling, "FUSED_PASS", True)  # the form, whatever the shipped default
    monkeypatch.setattr(_profiling, "FUSED_PASS_FAMILIES", PASS_FAMILIES)

    rng = np.random.default_rng(1)
    true = PiecewiseGemm.linear(0.002, 4e-10, 0.0, 0.0, 2e-7)  # output-bound, as a 1x1 expansion is
    rate = 0.02  # the pass: ~20% of such a kernel's time, as ReLU6 took in ORT
    samples = []
    for i in range(80):
        n, m, cin = int(rng.choice([64, 96, 144, 192])), int(rng.choice([196, 784, 3136])), int(rng.choice([16, 24, 32]))
        act = {"relu6": n * m * 4 / 1e6} if i % 2 else {}
        t = float(true.predict(n, m, cin)) + rate * sum(act.values())
        samples.append({"family": "conv_1x1", "kind": "conv", "n": n, "m": m, "k": cin, "groups": 1, "in_c": cin,
                        "strided": False, "t": t, "source": "probe", "act_mb": act})
    conv = [dict(s, family="conv", k=9 * s["k"], act_mb={}, t=float(true.predict(s["n"], s["m"], 9 * s["k"])))
            for s in samples]
    pairs = [{"kind": "relu6", "mb": mb, "t_plain": 0.1 * mb, "t_act": (0.1 + rate) * mb} for mb in (0.5, 1.0, 3.5)]
    rates, stats = fit_fused_pass(pairs)
    # pairs of 1x1 convs only (a record from before the families): every family takes their rate
    assert rates == {"relu6": _every_family(rate)} and stats["relu6"]["pairs"] == 3
    raw = {"probes": samples + conv, "in_situ": [], "kinds": [], "layout": [], "act_pairs": pairs}
    n, m, k = (np.array([s[f] for s in samples]) for f in ("n", "m", "k"))
    got = _fit_kernel_models(raw, 0.0)
    assert got.fused_pass == {"relu6": _every_family(rate)}
    np.testing.assert_allclose(got.gemm["conv_1x1"].predict(n, m, k), true.predict(n, m, k), rtol=1e-6)
    # without the pairs (a record from before them) the pass stays in the GEMM model
    old = _fit_kernel_models(dict(raw, act_pairs=[]), 0.0)
    assert old.fused_pass == {}
    assert np.abs(old.gemm["conv_1x1"].predict(n, m, k) / true.predict(n, m, k) - 1).max() > 0.05
    # with the form switched off the pairs are recorded but the fit is the one without them
    monkeypatch.setattr(_profiling, "FUSED_PASS", False)
    off = _fit_kernel_models(raw, 0.0)
    assert off.fused_pass == {} and off.pass_stats["relu6"]["pairs"] == 3
    np.testing.assert_allclose(off.gemm["conv_1x1"].predict(n, m, k), old.gemm["conv_1x1"].predict(n, m, k))


RATES = {"conv_1x1": 0.03, "dwconv": 0.018, "conv": 0.025}  # a pass per producer family, all different


def _families_net():
    """A 1x1 conv, a depthwise conv, a 3x3 conv and a 1x1 conv joined with a residual, each with
    BatchNorm and a fused ReLU6 (after the join for the last): ``(table, {act slot: family})``."""
    layers = [{"conv": {"name": "p", "out": 96, "kernel": 1}}, {"batchnorm": {"name": "p_bn"}}, {"relu6": {"name": "p_a"}},
              {"dwconv": {"name": "d", "kernel": 5}}, {"batchnorm": {"name": "d_bn"}}, {"relu6": {"name": "d_a"}},
              {"conv": {"name": "c", "out": 96, "kernel": 3}}, {"batchnorm": {"name": "c_bn"}}, {"relu6": {"name": "c_a"}},
              {"conv": {"name": "q", "out": 96, "kernel": 1}}, {"batchnorm": {"name": "q_bn"}},
              {"add": {"name": "j", "inputs": ["q_bn", "c_a"]}}, {"relu6": {"name": "j_a"}}]
    model = load_space_dict({"name": "f", "input": {"channels": 16, "resolution": 28}, "layers": layers})
    table = lower(model, np.zeros((1, 0), dtype=np.int64))
    acts = {table.names.index(n): fam for n, fam in (("p_a", "conv_1x1"), ("d_a", "dwconv"), ("c_a", "conv"),
                                                     ("j_a", "conv_1x1"))}
    return table, acts


def _fused_into_both(fused_pass=None):
    from augur_nas.costmodel import FusionRules

    fuse = FusionRules([{"into": ["conv", "dwconv"], "fold": ["batchnorm"], "join": ["add"], "act": ["relu", "relu6"]}])
    gemm = {"conv": PiecewiseGemm.linear(0.01, 1e-9)}
    return LatencyModel(gemm, OpModel((0.02, 0.001)), {"dwconv": {"gemm": "conv"}}, 0.0, fuse, fused_pass=fused_pass)


def test_a_pass_is_priced_at_the_rate_of_its_producers_family():
    """The pass of a fused ReLU6 after a 1x1, a depthwise and a dense conv, and after a join
    (its chain's producer: the 1x1 conv), each at its family's rate; one number for a kind is
    every family's rate (the form of profiles before the families), and writes back as one."""
    table, acts = _families_net()
    base = _fused_into_both().slot_times(table)[:, 0]
    per = _fused_into_both({"relu6": RATES}).slot_times(table, batch=2)[:, 0] - 2 * base
    for s, fam in acts.items():
        mb = float(table.rows["out_elems"][s, 0]) * 4 / 1e6
        assert base[s] == 0.0 and per[s] == pytest.approx(2 * RATES[fam] * mb, rel=1e-12), table.names[s]
    assert np.count_nonzero(per) == len(acts)
    flat = _fused_into_both({"relu6": 0.03})
    assert flat.fused_pass == {"relu6": {f: 0.03 for f in PASS_FAMILIES}} and flat.to_dict()["fused_pass"] == {"relu6": 0.03}
    m = _fused_into_both({"relu6": RATES})
    assert m.to_dict()["fused_pass"] == {"relu6": RATES} and LatencyModel.from_dict(m.to_dict()) == m


def test_the_fit_takes_each_familys_pass_off_its_own_samples(monkeypatch):
    """Pairs of each family give each family's rate, and a depthwise sample's pass comes off at
    the depthwise rate: the depthwise GEMM model prices its multiplication alone (at the 1x1
    rate it would come out too fast)."""
    from augur_nas.measure import _profiling
    from augur_nas.measure._profiling import _fit_kernel_models, fit_fused_pass

    monkeypatch.setattr(_profiling, "FUSED_PASS", True)
    monkeypatch.setattr(_profiling, "FUSED_PASS_FAMILIES", PASS_FAMILIES)
    pairs = [{"kind": "relu6", "family": fam, "mb": mb, "t_plain": 0.1 * mb, "t_act": (0.1 + r) * mb}
             for fam, r in RATES.items() for mb in (0.3, 0.9, 3.5)]
    rates, stats = fit_fused_pass(pairs)
    assert rates == {"relu6": {f: pytest.approx(r) for f, r in RATES.items()}} and stats["relu6"]["pairs"] == 9
    rng = np.random.default_rng(2)
    true = PiecewiseGemm.linear(0.002, 4e-10, 0.0, 0.0, 2e-7)
    dw = []  # as the profiler records them: `groups` GEMMs of one output channel each
    for i in range(60):
        c, m, kk = int(rng.choice([96, 144, 192, 384])), int(rng.choice([196, 784, 3136])), int(rng.choice([9, 25, 49]))
        act = {"relu6": c * m * 4 / 1e6} if i % 3 else {}
        t = c * float(true.predict(1, m, kk)) + RATES["dwconv"] * sum(act.values())
        dw.append({"family": "dwconv", "kind": "dwconv", "n": 1, "m": m, "k": kk, "groups": c, "in_c": 1,
                   "strided": False, "t": t, "source": "probe", "act_mb": act})
    conv = [dict(s, family="conv", kind="conv", n=s["groups"], groups=1, in_c=s["k"], k=9 * s["k"], act_mb={},
                 t=float(true.predict(s["groups"], s["m"], 9 * s["k"]))) for s in dw]
    raw = {"probes": dw + conv, "in_situ": [], "kinds": [], "layout": [], "act_pairs": pairs}
    n, m, k = (np.array([s[f] for s in dw]) for f in ("n", "m", "k"))
    got = _fit_kernel_models(raw, 0.0)
    np.testing.assert_allclose(got.gemm["dwconv"].predict(n, m, k), true.predict(n, m, k), rtol=1e-6)
    flat = [dict(p, family="conv_1x1") for p in pairs if p["family"] == "conv_1x1"]
    one_rate = _fit_kernel_models(dict(raw, act_pairs=flat), 0.0)
    assert (one_rate.gemm["dwconv"].predict(n, m, k) < true.predict(n, m, k) * 0.999).any()
    # the pass of the 1x1 family only: the depthwise samples keep theirs (rate 0, nothing taken
    # off: the depthwise model prices kernel and pass together), the 1x1 rate stays
    monkeypatch.setattr(_profiling, "FUSED_PASS_FAMILIES", ("conv_1x1",))
    only = _fit_kernel_models(raw, 0.0)
    assert only.fused_pass == {"relu6": {"conv_1x1": pytest.approx(RATES["conv_1x1"]), "dwconv": 0.0, "conv": 0.0}}
    dw_t = np.array([s["t"] / s["groups"] for s in dw])
    assert np.abs(only.gemm["dwconv"].predict(n, m, k) / dw_t - 1).max() < \
        np.abs(got.gemm["dwconv"].predict(n, m, k) / dw_t - 1).max()


def test_a_chain_cut_between_segments_keeps_its_producers_family():
    """A conv whose grid is too large to merge with the layers after it ends a segment of the
    fast path; its BatchNorm and ReLU6 start the next, their chain entering through the
    segment's ``Boundary``, which carries the producer's family: the fast path prices the pass
    as the reference path does (a 1x1 or 3x3 conv, then a depthwise conv)."""
    import augur_nas as an
    from augur_nas.costmodel import _fusion

    widths = list(range(16, 416, 2))  # 200 widths x 3 kernels: a grid beyond the merge limit
    layers = [{"conv": {"name": "a", "out": {"choice": widths}, "kernel": {"choice": [1, 3, 5]}}},
              {"batchnorm": {"name": "a_bn"}}, {"relu6": {"name": "a_act"}},
              {"dwconv": {"name": "d", "kernel": {"choice": [3, 5, 7]}, "stride": {"choice": [1, 2]}}},
              {"batchnorm": {"name": "d_bn"}}, {"relu6": {"name": "d_act"}},
              {"conv": {"name": "b", "out": {"choice": widths}, "kernel": {"choice": [1, 3]}}},
              {"batchnorm": {"name": "b_bn"}}, {"relu6": {"name": "b_act"}}]
    space = an.load_space_dict({"name": "cut", "input": {"channels": 16, "resolution": 28}, "layers": layers})
    p = load_profile("x86-xeon-avx512-ort")
    p.latency = LatencyModel.from_dict(dict(p.latency.to_dict(), fused_pass={"relu6": RATES}))
    entered = []
    chain_stages = _fusion.FusionRules.chain_stages

    def spy(self, ops, inputs, mask, select_pos=None, entry=None, with_zero=False, family=None):
        out = chain_stages(self, ops, inputs, mask, select_pos, entry, with_zero, family)
        if isinstance(entry, _fusion.Boundary):
            entered.extend(ops[s] for s in range(len(ops)) if -1 in inputs[s] and (out[0][s] & (entry.stage >= 0)).any())
        return out

    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as mp:
        mp.setattr(_fusion.FusionRules, "chain_stages", spy)
        X = space.sample(300, seed=1)
        o = an.Oracle(space, p)
        fast, ref = o.evaluate(X)["latency_ms"], o.evaluate(X, reference=True)["latency_ms"]
    assert "batchnorm" in entered  # the case this test is about happened
    np.testing.assert_allclose(fast, ref, rtol=1e-9)


@pytest.mark.parametrize("path", ["spaces/mobile.yaml", "spaces/ofa_mbv3.yaml"])
def test_fast_path_equals_reference_with_fused_passes(path):
    import augur_nas as an

    p = load_profile("x86-xeon-avx512-ort")
    base = an.Oracle(an.load_space(path), load_profile("x86-xeon-avx512-ort"))
    p.latency = LatencyModel.from_dict(dict(p.latency.to_dict(), fused_pass={"relu6": 0.03, "hswish": 0.05,
                                                                             "hsigmoid": 0.04, "sigmoid": 0.06}))
    space = an.load_space(path)
    X = space.sample(30, seed=9)
    o = an.Oracle(space, p)
    for batch in (1, 4):
        ref, fast = o.evaluate(X, batch=batch, reference=True), o.evaluate(X, batch=batch)
        np.testing.assert_allclose(fast["latency_ms"], ref["latency_ms"], rtol=1e-9, atol=1e-12)
        assert (ref["latency_ms"] > base.evaluate(X, batch=batch, reference=True)["latency_ms"]).all()


def test_calibration_scales_the_pass_with_the_memory_bound_family():
    """`calibrate`'s families: the pass is memory-bound work (its factor is the `memory` one), so
    the families' contributions still add up to the layer sum."""
    from augur_nas.measure._calibrate import contributions, scaled_latency

    lat = _ort_like({"relu6": 0.03})
    assert scaled_latency(lat, {"memory": 2.0}).fused_pass == {"relu6": _every_family(0.06)}
    t6 = _expand("relu6")
    assert contributions(lat, [(t6, 1)]).sum() == pytest.approx(float(latency_ms_of(t6, lat)), rel=1e-9)


def latency_ms_of(table, lat):
    from augur_nas.costmodel import latency_ms

    return latency_ms(table, lat)[0][0]
