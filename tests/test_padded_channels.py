"""Two forms of the kernel model (plain data, exact arithmetic, no measurement): channels padded to
whole blocks where a conv runs blocked (``LayoutRules.padded``, ``pad_channels``) and a plain conv
of stride 2 priced by a model of its own (``plain_strided``)."""

import copy

import numpy as np
import pytest

from augur_nas import _errors
from augur_nas.costmodel import LatencyModel, LayoutRules, OpModel, PiecewiseGemm
from augur_nas.costmodel._latency import gemm_choice
from augur_nas.lowering import lower
from augur_nas.measure import _profiling as P
from augur_nas.models import load_space_dict
from augur_nas.oracle import _fast_costs, _table_costs
from augur_nas.profile import load_profile

CHANNELS = {"dense": "any", "grouped": "multiple", "depthwise": "any", "pool": "multiple"}


def _rules(pad=True):
    return LayoutRules(["conv", "dwconv", "globalpool"], ["batchnorm", "relu"], ["add", "concat"], block=16,
                       narrow_below=16, reorder=(0.02, 0.0005), channels=CHANNELS, pad_channels=pad)


def test_a_blocked_conv_works_on_whole_blocks():
    lay = _rules()
    # a 1x1 conv 58 -> 58 (ShuffleNetV2's half widths): 64 outputs from 64 inputs
    n, k, f = lay.padded("conv", 58, 58, 1, 58)
    assert (int(n), int(k), float(f)) == (64, 64, 1.0)
    # a 3x3 conv 40 -> 24: k = 48 channels x 9 taps, n = 32
    n, k, f = lay.padded("conv", 24, 40 * 9, 1, 40)
    assert (int(n), int(k)) == (32, 48 * 9)
    # whole blocks stay as they are
    n, k, f = lay.padded("conv", 64, 128 * 9, 1, 128)
    assert (int(n), int(k)) == (64, 128 * 9)
    # a stem on RGB reads its input plain: only its outputs are padded
    n, k, f = lay.padded("conv", 24, 27, 1, 3)
    assert (int(n), int(k)) == (32, 27)
    # a depthwise conv of 40 channels computes 48 (n = 1 and k = taps per group stay)
    n, k, f = lay.padded("dwconv", 1, 9, 40, 40)
    assert (int(n), int(k)) == (1, 9) and float(f) == pytest.approx(48 / 40)
    # a grouped conv of 8-channel groups runs plain on 16-wide blocks: nothing padded
    n, k, f = lay.padded("conv", 8, 72, 13, 104)
    assert (int(n), int(k), float(f)) == (8, 72, 1.0)
    # an fc is never blocked; without pad_channels nothing is padded
    assert int(lay.padded("fc", 1000, 1020, 1, 1020)[0]) == 1000
    assert int(_rules(pad=False).padded("conv", 58, 58, 1, 58)[0]) == 58


def test_pad_channels_round_trips_and_old_layouts_do_not_pad():
    lay = _rules()
    d = lay.to_dict()
    assert d["pad_channels"] is True and LayoutRules.from_dict(d) == lay
    assert "pad_channels" not in _rules(pad=False).to_dict()
    assert load_profile("x86-2core-ort").latency.layout.pad_channels is False
    with pytest.raises(_errors.AugurError, match="pad_channels"):
        LayoutRules.from_dict(dict(d, pad_channels="yes"), source="p.yaml")


def _net(out):
    return load_space_dict({"name": "n", "input": {"channels": 64, "resolution": 28}, "layers": [
        {"conv": {"name": "a", "out": out, "kernel": 1}},
        {"conv": {"name": "b", "out": 64, "kernel": 3, "pad": 1}}]})


def test_an_unaligned_conv_is_priced_as_its_padded_twin():
    gemm = {"conv": PiecewiseGemm.linear(0.001, 1e-9, 1e-7, 1e-7, 1e-7)}
    model = lambda pad: LatencyModel(gemm, OpModel((0.0, 0.0)), {}, 0.0, layout=_rules(pad))  # noqa: E731
    z = np.zeros((1, 0), dtype=np.int64)
    t58, t64 = (model(True).slot_costs(lower(_net(c), z))[0][:, 0] for c in (58, 64))
    # conv a (58 outputs) costs what 64 outputs cost; conv b reads 58 channels, padded to 64
    assert t58[0] == pytest.approx(t64[0]) and t58[1] == pytest.approx(t64[1])
    unpadded = model(False).slot_costs(lower(_net(58), z))[0][:, 0]
    assert unpadded[0] < t58[0] and unpadded[1] < t58[1]


def test_a_plain_conv_of_stride_2_takes_its_own_model():
    lay = _rules()
    fam = {"gemm": "conv", "pointwise": "conv_1x1", "narrow": "conv_narrow", "narrow_below": 16,
           "plain": "conv_plain", "plain_strided": "conv_plain_s2"}
    # RegNet's grouped 3x3 of 8-channel groups (13 groups of 104 channels), stride 1 and 2, and a dense conv
    n, k, g, cin = np.array([8, 8, 64]), np.array([72, 72, 576]), np.array([13, 13, 1]), np.array([104, 104, 64])
    got = {name: sel.tolist() for name, sel in gemm_choice(fam, lay, "conv", n, k, g, cin, np.array([False, True, True]))}
    assert got["conv_plain_s2"] == [False, True, False]
    assert got["conv_plain"] == [True, False, False]
    assert got["conv"] == [False, False, True]
    # a sample of an old record filed under conv_plain is refitted as the stride-2 variant
    s = {"family": "conv_plain", "strided": True}
    assert P._plain_variant(s) == ("conv_plain_s2" if P.PLAIN_STRIDED else "conv_plain")
    assert P._plain_variant({"family": "conv_plain", "strided": False}) == "conv_plain"


def _with_forms(on=True):
    """The shipped Xeon profile with both forms switched on (a plain_strided model twice as slow
    as conv_plain) or off."""
    p = copy.copy(load_profile("x86-xeon-avx512-ort"))
    d = p.latency.to_dict()
    d["layout"]["pad_channels"] = on
    d["gemm"]["conv_plain_s2"] = copy.deepcopy(d["gemm"]["conv_plain"])
    d["gemm"]["conv_plain_s2"]["coef"] = (2 * np.asarray(d["gemm"]["conv_plain"]["coef"])).tolist()
    d["kinds"]["conv"].pop("plain_strided", None)
    if on:
        d["kinds"]["conv"]["plain_strided"] = "conv_plain_s2"
    p.latency = LatencyModel.from_dict(d)
    p.residual = None
    return p


REGNET = {"name": "regnetish", "input": {"channels": 3, "resolution": 96}, "layers": [
    {"conv_bn_act": {"out": 24, "kernel": 3, "stride": 2}},
    {"bottleneck": {"mid": {"choice": [56, 112]}, "out": {"choice": [56, 64]}, "groups": 7, "stride": 2,
                    "se": 0.25}},
    {"shufflev2": {"out": {"choice": [116, 128]}, "stride": 2}},
    {"mbconv": {"out": {"choice": [40, 48]}, "kernel": 3, "expand": 3}},
    {"globalpool": {"mode": "avg"}}, {"fc": {"out": 10}}]}


def test_fast_path_equals_the_layer_table_with_both_forms():
    space = load_space_dict(REGNET)
    prof = _with_forms()
    X = space.sample(16, seed=0)
    fast = _fast_costs(space, X, prof, 1)
    ref = _table_costs(space, X, prof, 1)
    np.testing.assert_allclose(fast.latency_ms, ref.latency_ms, rtol=1e-9)
    # and the forms change the price: every candidate has unaligned channels or a plain stride-2 conv
    off = _table_costs(space, X, _with_forms(on=False), 1)
    assert np.all(ref.latency_ms > off.latency_ms)


def test_the_shipped_xeon_profile_has_both_forms_and_the_large_anchor():
    p = load_profile("x86-xeon-avx512-ort")
    assert p.latency.layout.pad_channels and p.latency.kinds["conv"]["plain_strided"] == "conv_plain_s2"
    assert "conv_plain_s2" in p.latency.gemm and P.LARGE_ANCHOR in p.fit["anchors"]["latency_ms"]
    # its correction step kept the anchors of its own minute, applied or not
    assert set(p.calibration["anchors_ms"]) == set(p.fit["anchors"]["latency_ms"])
    old = load_profile("x86-2core-ort")
    assert not old.latency.layout.pad_channels and "plain_strided" not in (old.latency.kinds.get("conv") or {})
