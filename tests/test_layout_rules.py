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


def _count(lm, spec, ch=32):
    m = load_space_dict({"name": "t", "input": {"channels": ch, "resolution": 8}, "layers": spec})
    t = lower(m, np.zeros((1, m.n_genes), dtype=np.int64))
    _, c, lay = lm.layout.reorders(t.ops, t.inputs, t.rows, lm.fused(t), t.select_pos, 0, lm.free_kinds(),
                                   lm.duplicates(t))
    return {nm: int(c[s, 0]) for s, nm in enumerate(t.names)}, {nm: int(lay[s, 0]) for s, nm in enumerate(t.names)}


# a residual sum of a blocked conv (c) and a plain tensor (an LRN's): ONNX Runtime's NCHWc
# transformer runs it plain, converting c's output to plain and the sum back for the next conv
MIXED_SUM = [{"conv": {"name": "a", "out": 32, "kernel": 3, "pad": 1}}, {"lrn": {"name": "q"}},
             {"conv": {"name": "c", "out": 32, "kernel": 3, "pad": 1, "inputs": ["a"]}},
             {"add": {"name": "j", "inputs": ["c", "q"]}}, {"conv": {"name": "z", "out": 64, "kernel": 3}}]


def _ort_rules_model(fused_joins=None, cse_through=True):
    from augur_nas.measure._profiling import ORT_CSE, _ort_model

    lay = {"blocked": ["conv", "dwconv", "maxpool", "avgpool", "globalpool"], "follow": ["batchnorm", "relu"],
           "joins": ["add", "concat"], "block": 16, "narrow_below": 16, "channels": ORT_1_32_AVX512}
    if fused_joins:
        lay["fused_joins"] = fused_joins
    lm = _ort_model({}, OpModel(), {}, (0.0, 0.0), rules={"layout": lay, "fused_acts": ["relu"]})
    if not cse_through:
        lm.cse = tuple(k for k in ORT_CSE if k not in ("identity", "dropout"))
    return lm


def test_a_fused_sum_with_a_plain_input_runs_plain():
    """`fused_joins: inputs`: the sum is blocked only when all its inputs are; its blocked input is
    converted to plain (charged to the sum) and the next conv converts the sum back. The old rule
    (profiles without the key) keeps the sum blocked in the conv and converts nothing."""
    count, lay = _count(_ort_rules_model("inputs"), MIXED_SUM)
    assert (count["q"], count["j"], count["z"]) == (1, 1, 1) and lay["j"] == 0
    count, lay = _count(_ort_rules_model(None), MIXED_SUM)
    assert (count["q"], count["j"], count["z"]) == (1, 0, 0) and lay["j"] == 1
    # both inputs blocked: the sum stays in the conv, blocked, under either rule
    both = MIXED_SUM[:1] + [{"conv": {"name": "q", "out": 32, "kernel": 3, "pad": 1}}] + MIXED_SUM[2:]
    for rule in ("inputs", None):
        count, lay = _count(_ort_rules_model(rule), both)
        assert sum(count.values()) == 1 and lay["j"] == 1  # the network input's conversion only


def test_fused_joins_rule_round_trips_and_is_checked():
    d = LayoutRules(["conv"], block=16, fused_joins="inputs").to_dict()
    assert d["fused_joins"] == "inputs" and LayoutRules.from_dict(d).fused_joins == "inputs"
    assert "fused_joins" not in LayoutRules(["conv"], block=16).to_dict()  # old profiles stay as they were
    assert LayoutRules.from_dict(LayoutRules(["conv"]).to_dict()).fused_joins == "blocked"
    d["fused_joins"] = "sometimes"
    with pytest.raises(ProfileError, match="fused_joins"):
        LayoutRules.from_dict(d, source="p.yaml")


def test_cse_looks_through_identity_when_the_profile_says_so():
    """ONNX Runtime removes an Identity before it merges duplicate ops: a ReLU of a tensor and a
    ReLU of its identity are one node, converted once (NAS-Bench-201's cells read their input
    both ways). A `cse` without `identity` (older profiles) compares the inputs as written."""
    spec = [{"conv": {"name": "a", "out": 32, "kernel": 3, "pad": 1}}, {"lrn": {"name": "p"}},
            {"identity": {"name": "i"}},
            {"relu": {"name": "r1", "inputs": ["p"]}}, {"conv": {"name": "c1", "out": 32, "kernel": 3, "pad": 1}},
            {"relu": {"name": "r2", "inputs": ["i"]}}, {"conv": {"name": "c2", "out": 32, "kernel": 3, "pad": 1}},
            {"add": {"name": "j", "inputs": ["c1", "c2"]}}]
    new, old = _ort_rules_model("inputs"), _ort_rules_model("inputs", cse_through=False)
    m = load_space_dict({"name": "t", "input": {"channels": 32, "resolution": 8}, "layers": spec})
    t = lower(m, np.zeros((1, 0), dtype=np.int64))
    r1, r2 = t.names.index("r1"), t.names.index("r2")
    assert new.duplicates(t)[r2, 0] == r1 and old.duplicates(t)[r2, 0] == -1
    count_new, _ = _count(new, spec)
    count_old, _ = _count(old, spec)
    assert count_new["c1"] + count_new["c2"] == 1 and count_old["c1"] + count_old["c2"] == 2
    assert new.slot_times(t)[r2, 0] == 0.0


def test_a_global_pool_on_a_plain_input_runs_plain_when_the_runtime_does():
    """`from_blocked: [globalpool]`: ONNX Runtime converts a plain input for a conv or a local pool
    but runs a global pool on it plain (NAS-Bench-201's classifier): no conversion in, none out
    for the fc. Without the key (older profiles) the pool converts its input and the fc back."""
    spec = [{"conv": {"name": "a", "out": 32, "kernel": 3, "pad": 1}}, {"lrn": {"name": "q"}},
            {"globalpool": {"name": "gp"}}, {"fc": {"name": "fc", "out": 10}}]
    lm = _ort_rules_model("inputs")
    lm.layout.from_blocked = ("globalpool",)
    count, lay = _count(lm, spec)
    assert (count["gp"], count["fc"], lay["gp"]) == (0, 0, 0)
    count, lay = _count(_ort_rules_model("inputs"), spec)
    assert (count["gp"], count["fc"], lay["gp"]) == (1, 1, 1)
    # on a blocked input the pool runs blocked under either rule
    blocked = spec[:1] + spec[2:]
    count, lay = _count(lm, blocked)
    assert (count["gp"], count["fc"], lay["gp"]) == (0, 1, 1)
    d = LayoutRules(["conv", "globalpool"], from_blocked=["globalpool"]).to_dict()
    assert LayoutRules.from_dict(d).from_blocked == ("globalpool",)
    assert "from_blocked" not in LayoutRules(["conv"]).to_dict()
