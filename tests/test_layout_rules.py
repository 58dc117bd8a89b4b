"""The layout's channel rules, the fc model's regions on weight size, and a profile taking the
graph rules of another machine: plain data, exact arithmetic, no measurement."""

import numpy as np
import pytest

from augur_nas._errors import ProfileError
from augur_nas.costmodel import LatencyModel, LayoutRules, OpModel, PiecewiseGemm
from augur_nas.lowering import lower
from augur_nas.measure._ortrules import OrtRules, with_rules
from augur_nas.measure._profiling import _variant
from augur_nas.models import load_space_dict
from augur_nas.profile import load_profile

ORT_1_32_AVX512 = {"dense": "any", "grouped": "multiple", "depthwise": "any", "pool": "multiple"}


def test_channel_rules_decide_which_layers_run_blocked():
    lay = LayoutRules(["conv", "dwconv", "maxpool"], block=16, narrow_below=16, channels=ORT_1_32_AVX512)
    conv = lambda i, o, g: bool(lay.blockable_dims("conv", np.array(i), np.array(o), np.array(g)))  # noqa: E731
    assert conv(24, 64, 1)            # a dense conv's channels are padded to whole blocks
    assert conv(8, 64, 1)             # fewer than a block: read plain, run blocked
    assert conv(64, 64, 4)            # 16 channels a group: whole blocks
    assert not conv(64, 64, 8)        # 8 a group: plain (im2col and GEMM per group)
    assert not conv(96, 96, 4)        # 24 a group
    assert conv(24, 24, 24)           # depthwise: any count
    assert bool(lay.blockable_dims("maxpool", np.array(32), np.array(32), np.array(0)))
    assert not bool(lay.blockable_dims("maxpool", np.array(24), np.array(24), np.array(0)))


def test_profiles_without_channel_rules_block_every_layer():
    lay = LayoutRules(["conv", "maxpool"], block=8)
    assert lay.channels == {"dense": "any", "grouped": "any", "depthwise": "any", "pool": "any"}
    assert bool(lay.blockable_dims("conv", np.array(12), np.array(12), np.array(6)))
    assert "channels" not in lay.to_dict()
    d = LayoutRules(["conv"], block=16, channels=ORT_1_32_AVX512).to_dict()
    assert LayoutRules.from_dict(d).channels == ORT_1_32_AVX512


def test_bad_channel_rule_is_one_clear_error():
    d = LayoutRules(["conv"], block=16).to_dict()
    d["channels"] = {"grouped": "sometimes"}
    with pytest.raises(ProfileError, match="channels.grouped"):
        LayoutRules.from_dict(d, source="p.yaml")


def test_fc_regions_on_weight_elements():
    # two regions split at 1M weight elements: a fast in-cache rate, a slower one beyond
    coef = np.zeros((2, 1, 5))
    coef[0, 0, 2] = 1e-7
    coef[1, 0, 2] = 3e-7
    g = PiecewiseGemm(coef, n_breaks=[2 ** 20], n_axis="nk")
    small, big = g.predict(1000, 1, 1000), g.predict(4096, 1, 9216)
    assert small == pytest.approx(1000 * 1000 * 1e-7)
    assert big == pytest.approx(4096 * 9216 * 3e-7)
    back = PiecewiseGemm.from_dict(g.to_dict())
    assert back == g and back.n_axis == "nk"
    assert back.scaled(2.0).predict(4096, 1, 9216) == pytest.approx(2 * big)
    # fitted: recovers the two rates
    n = np.array([100, 200, 400, 800, 1000, 1500, 2048, 3000, 4096, 4096] * 2, dtype=float)
    k = np.array([256, 512, 1024] * 6 + [9216, 25088], dtype=float)
    t = np.where(n * k < 2 ** 20, 1e-7, 3e-7) * n * k
    fit = PiecewiseGemm.fit(n, np.ones_like(n), k, t, n_breaks=[2 ** 20], n_axis="nk", features=("nk",))
    assert np.allclose(fit.predict(n, 1, k), t, rtol=1e-6)


def test_a_profile_takes_this_machines_graph_rules():
    base = load_profile("x86-2core-ort")
    rules = OrtRules({"blocked": ["conv", "dwconv", "maxpool", "avgpool", "globalpool"],
                      "follow": ["batchnorm", "relu", "swish"], "joins": ["add", "concat"], "block": 16,
                      "narrow_below": 16, "channels": ORT_1_32_AVX512}, ["relu", "hswish"], 18)
    lat = with_rules(base.latency, rules)
    assert isinstance(lat, LatencyModel)
    assert lat.layout.block == 16 and lat.layout.channels == ORT_1_32_AVX512
    assert lat.layout.reorder == base.latency.layout.reorder  # costs unchanged
    assert lat.kinds["conv"]["narrow_below"] == 16
    assert "hswish" in lat.fuse.to_list()[0]["act"]
    assert lat.gemm.keys() == base.latency.gemm.keys()


def test_profiler_sorts_samples_by_the_rule_that_prices_them():
    """`_profiling._variant` (which GEMM model a timed kernel teaches) and `LatencyModel` (which one
    prices the layer) share `gemm_choice`: a stem on RGB is narrow, a conv with 8-channel groups on
    16-wide blocks plain (not narrow, though it has fewer input channels per group than
    `narrow_below`: the runtime cannot block it), a 1x1 pointwise, the rest conv; each layer's
    price comes from its variant."""
    spec = {"name": "variants", "input": {"channels": 3, "resolution": 32}, "layers": [
        {"conv": {"name": "stem", "out": 32, "kernel": 3}},
        {"conv": {"name": "grouped8", "out": 32, "kernel": 3, "groups": 4}},
        {"conv": {"name": "grouped16", "out": 32, "kernel": 3, "groups": 2}},
        {"conv": {"name": "pw", "out": 48, "kernel": 1}},
        {"conv": {"name": "dense", "out": 48, "kernel": 3}}]}
    table = lower(load_space_dict(spec), np.zeros((1, 0), dtype=np.int64))
    lay = LayoutRules(["conv", "dwconv", "maxpool"], block=16, narrow_below=16, channels=ORT_1_32_AVX512)
    names = ("conv", "conv_1x1", "conv_narrow", "conv_plain")
    gemm = {nm: PiecewiseGemm.linear(0.0, 1e-8 * (i + 1)) for i, nm in enumerate(names)}
    kinds = {"conv": {"gemm": "conv", "pointwise": "conv_1x1", "narrow": "conv_narrow", "narrow_below": 16,
                      "plain": "conv_plain"}}
    model = LatencyModel(gemm, OpModel((0.0, 0.0)), kinds, 0.0, layout=lay)
    st = model.slot_times(table)[:, 0]
    r = table.rows
    seen = {}
    for s, nm in enumerate(table.names):
        if table.ops[s] != "conv":
            continue
        n, m, k, g, cin = (int(r[f][s, 0]) for f in ("n", "m", "k", "groups", "in_c"))
        var = _variant("conv", n, k, g, cin // g, lay)
        seen[nm] = var
        assert st[s] == pytest.approx(float(gemm[var].predict(n, m, k)) * g, rel=1e-12), nm
    assert seen == {"stem": "conv_narrow", "grouped8": "conv_plain", "grouped16": "conv",
                    "pw": "conv_1x1", "dense": "conv"}
