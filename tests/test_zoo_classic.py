"""The classic published CNNs of the zoo (issue 13): ResNet-34/101, ResNeXt-50 32x4d,
Wide ResNet-50-2, VGG-11, SqueezeNet 1.0/1.1, DenseNet-121, Inception-v3, RegNetX/Y-400MF/800MF.

For each network:
- spaces/zoo/NAME.yaml has torchvision's published parameter count exactly, and its conv+fc MACs
  are within 1 % of torchvision's documented GFLOPS (``_ops`` of the weights' meta, which count
  conv and linear multiply-adds once, as fvcore does; torch.utils.flop_counter's FLOPs / 2 agree
  exactly); here they are equal to the multiply-add count, except Inception-v3, whose file holds the auxiliary classifier that torchvision's
  eval-mode count leaves out (+0.1 %);
- the YAML, its ONNX export read back and the PyTorch definition of tests/torch_zoo_classic.py
  (imported with ``from_torch``) give the same params, conv+fc MACs and GEMM dims (n, k, m,
  groups) of every conv and fc layer, in execution order;
- ``augur-nas analyze`` and ``augur-nas predict`` work on every shipped profile;
- the header names the source, the figures and says the network is held out of calibration.

The figures were copied from torchvision 0.29.1 (``weights=None``; num_params and _ops of
``get_model_weights(name).DEFAULT.meta``); the tests do not need torchvision.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import pytest

import augur_nas
from augur_nas.cli import main

from conftest import ZOO

DEVICES = ("tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu", "x86-2core-ort")

# name: (torchvision num_params, torchvision _ops in GMACs, our conv+fc MACs, conv+fc layers = the
# Conv2d and Linear modules of torchvision's model)
PUBLISHED = {
    "resnet34": (21_797_672, 3.664, 3_663_761_408, 37),
    "resnet101": (44_549_160, 7.801, 7_801_405_440, 105),
    "resnext50_32x4d": (25_028_904, 4.230, 4_230_479_872, 54),
    "wide_resnet50_2": (68_883_240, 11.398, 11_398_021_120, 54),
    "vgg11": (132_863_336, 7.609, 7_609_090_048, 11),
    "squeezenet1_0": (1_248_424, 0.819, 818_924_576, 26),
    "squeezenet1_1": (1_235_496, 0.349, 349_151_936, 26),
    "densenet121": (7_978_856, 2.834, 2_834_161_664, 121),
    # aux classifier included (torchvision's default aux_logits=True counts its parameters):
    # 5,713,216,096 MACs without it (= _ops), + 5,683,200 for the aux head
    "inception_v3": (27_161_264, 5.713, 5_718_899_296, 98),
    "regnet_x_400mf": (5_495_976, 0.414, 413_812_608, 72),
    "regnet_x_800mf": (7_259_656, 0.800, 799_699_712, 54),
    "regnet_y_400mf": (4_344_144, 0.402, 401_842_848, 86),
    "regnet_y_800mf": (6_432_512, 0.834, 833_856_256, 76),
}
NAMES = list(PUBLISHED)
# ONNX export writes every weight: the big ones take seconds
SLOW = {"resnet101", "wide_resnet50_2", "vgg11", "inception_v3", "densenet121"}

# torchvision's ResBottleneckBlock computes the projection shortcut BEFORE the residual branch
# (``proj(x) + f(x)``), the YAML's bottleneck after it: the same layers in another valid
# topological order, so for those sources the GEMM lists are compared sorted.
UNORDERED = {(n, "torch") for n in NAMES if n.startswith("regnet")}


def _summary(model) -> tuple:
    a = augur_nas.analyze(model)
    layers = [l for l in a["layers"] if l["type"] in ("conv", "fc")]
    assert layers == [l for l in a["layers"] if l["gemm"] is not None]  # the GEMM layers
    gemms = [(l["gemm"]["n"], l["gemm"]["k"], l["gemm"]["m"], l["gemm"]["groups"]) for l in layers]
    return a["totals"]["macs"], a["totals"]["params"], gemms


def _slow_marked(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@pytest.mark.parametrize("name", NAMES)
def test_params_and_macs_as_published(name):
    params, gmacs, macs, n_gemm = PUBLISHED[name]
    m, p, gemms = _summary(augur_nas.load_model(ZOO / f"{name}.yaml"))
    assert p == params
    assert m == macs
    assert len(gemms) == n_gemm
    assert m == pytest.approx(gmacs * 1e9, rel=0.01)


def test_inception_v3_counts_the_aux_classifier():
    a = augur_nas.analyze(augur_nas.load_model(ZOO / "inception_v3.yaml"))
    aux = [l for l in a["layers"] if l["name"].startswith("AuxLogits.")]
    assert sum(l["params"] for l in aux) == 27_161_264 - 23_834_568
    aux_macs = sum(l["macs"] for l in aux if l["type"] in ("conv", "fc"))
    assert aux_macs == 5_683_200
    assert a["totals"]["macs"] - aux_macs == 5_713_216_096  # torchvision's eval-mode count
    # the main path does not read the aux head: the network ends at fc
    assert a["layers"][-1]["name"] == "fc"


@pytest.mark.parametrize("name", _slow_marked(NAMES))
def test_yaml_torch_and_onnx_agree(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from augur_nas.io.onnx import export_onnx
    from torch_zoo_classic import ZOO_TORCH_CLASSIC

    yaml_model = augur_nas.load_model(ZOO / f"{name}.yaml")
    export_onnx(yaml_model, tmp_path / f"{name}.onnx")
    factory, shape = ZOO_TORCH_CLASSIC[name]
    models = {"onnx": augur_nas.load_model(tmp_path / f"{name}.onnx"),
              "torch": augur_nas.from_torch(factory(), shape, name=name)}
    ref_macs, ref_params, ref_gemms = _summary(yaml_model)
    assert ref_params == PUBLISHED[name][0]
    for source, model in models.items():
        m, p, gemms = _summary(model)
        assert (m, p) == (ref_macs, ref_params), f"{name}: {source} disagrees with the YAML"
        if (name, source) in UNORDERED:
            assert sorted(gemms) == sorted(ref_gemms), f"{name}: {source} GEMM dims (sorted)"
        else:
            assert gemms == ref_gemms, f"{name}: {source} GEMM dims (n, k, m, groups), in order"


def _cli_json(*argv) -> dict:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("name", NAMES)
def test_analyze_and_predict_on_every_profile(name):
    path = str(ZOO / f"{name}.yaml")
    a = _cli_json("analyze", path, "--json")
    assert a["totals"]["params"] == PUBLISHED[name][0]
    for device in DEVICES:
        r = _cli_json("predict", path, "--device", device, "--json")
        assert r["model"] == name and r["params"] == PUBLISHED[name][0]
        assert math.isfinite(r["latency_ms"]) and r["latency_ms"] > 0, (name, device)
        assert r["layers"], (name, device)


@pytest.mark.parametrize("name", NAMES)
def test_hot_path_equals_the_layer_table(name):
    """Segment tabulation (the oracle's hot path) prices these DAGs (Inception's side branch,
    DenseNet's concats, RegNetY's squeeze-excite) exactly like the full layer table."""
    import numpy as np
    from augur_nas.analysis import totals
    from augur_nas._segments import fast_totals
    from augur_nas.oracle import _fast_costs, _table_costs
    from augur_nas.profile import load_profile

    model = augur_nas.load_model(ZOO / f"{name}.yaml")
    x = np.zeros((1, 0), dtype=np.int64)
    ref = totals(augur_nas.lower(model, x))
    for key, v in fast_totals(model, x).items():
        np.testing.assert_array_equal(v, ref[key], err_msg=key)
    for device in ("tk1-gpu", "tx1-cpu"):
        a, b = _table_costs(model, x, load_profile(device), 1), _fast_costs(model, x, load_profile(device), 1)
        for i in (0, 2, 3, 4):  # latency, memory, macs, params
            np.testing.assert_allclose(b[i], a[i], rtol=1e-9, err_msg=f"{device} [{i}]")


@pytest.mark.parametrize("name", NAMES)
def test_header_names_source_figures_and_held_out(name):
    text = (ZOO / f"{name}.yaml").read_text()
    header = "\n".join(line for line in text.splitlines() if line.startswith("#")).lower()
    assert f"torchvision.models.{name}" in header
    assert f"{PUBLISHED[name][0]:,}" in header
    assert f"{PUBLISHED[name][2]:,}" in header
    assert "held out: never sampled for calibration or the residual" in header


# --------------------------------------------------------------------------------------------- macros
# The macro parameters these networks added (docs/language.md); the old defaults keep every
# shipped file's expansion unchanged (tests/golden and test_space check that).


def _layers(layers, channels=16, resolution=8):
    spec = {"name": "t", "input": {"channels": channels, "resolution": resolution}, "layers": layers}
    return augur_nas.analyze(augur_nas.load_space_dict(spec))["layers"]


def test_bottleneck_groups_and_regnet_se():
    layers = _layers([{"bottleneck": {"name": "b", "mid": 24, "out": 24, "groups": 3, "stride": 2,
                                      "se": 0.25}}])
    by = {l["name"]: l for l in layers}
    assert by["b.conv2"]["gemm"]["groups"] == 3 and by["b.conv2"]["params"] == 24 * 8 * 9
    # squeeze = round(0.25 * the block's INPUT channels (16)) = 4, sigmoid gate, after conv2's relu
    assert by["b.se.reduce"]["out_shape"][0] == 4 and by["b.se.expand"]["out_shape"][0] == 24
    assert by["b.se.gate"]["op"] == "sigmoid"
    names = [l["name"] for l in layers]
    assert names.index("b.conv2.act") < names.index("b.se.pool") < names.index("b.se.mul") < names.index("b.conv3")
    # defaults: no groups, no squeeze-excite
    plain = _layers([{"bottleneck": {"name": "b", "mid": 24, "out": 24}}])
    assert not any(".se." in l["name"] for l in plain)
    assert {l["name"]: l for l in plain}["b.conv2"]["gemm"]["groups"] == 1


def test_se_squeeze_and_gate():
    old = {l["name"]: l for l in _layers([{"se": {"name": "s"}}], channels=40)}
    assert old["s.reduce"]["out_shape"][0] == 16 and old["s.gate"]["op"] == "hsigmoid"  # make_divisible(10, 8)
    new = {l["name"]: l for l in _layers([{"se": {"name": "s", "squeeze": 10, "gate": "sigmoid"}}], channels=40)}
    assert new["s.reduce"]["out_shape"][0] == 10 and new["s.gate"]["op"] == "sigmoid"
    with pytest.raises(augur_nas.SpecError, match="gate"):
        _layers([{"se": {"gate": "relu"}}])
    with pytest.raises(augur_nas.SpecError, match="gate"):
        _layers([{"se": {"gate": {"choice": ["sigmoid", "hsigmoid"]}}}])


def test_conv_bn_act_pad():
    by = {l["name"]: l for l in _layers([
        {"conv_bn_act": {"name": "valid", "out": 8, "kernel": 3, "stride": 2, "pad": 0}},
        {"conv_bn_act": {"name": "same", "out": 8, "kernel": [1, 7]}},
        {"conv_bn_act": {"name": "hw", "out": 8, "kernel": [3, 1], "pad": [0, 2]}}], resolution=17)}
    assert by["valid.conv"]["out_shape"] == [8, 8, 8]      # (17 - 3) // 2 + 1
    assert by["same.conv"]["out_shape"] == [8, 8, 8]       # pad same of 1x7 is [0, 3]
    assert by["hw.conv"]["out_shape"] == [8, 6, 12]        # 8 - 3 + 1, 8 + 4


def test_torch_broadcast_mul_in_either_order():
    """torchvision's SqueezeExcitation returns ``scale * input``: the [C,1,1] factor first."""
    torch = pytest.importorskip("torch")

    class SE(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Conv2d(8, 8, 1)

        def forward(self, x):
            scale = torch.sigmoid(self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1)))
            return scale * x

    a = augur_nas.analyze(augur_nas.from_torch(SE(), (1, 8, 5, 5)))
    mul = [l for l in a["layers"] if l["op"] == "mul"]
    assert len(mul) == 1 and mul[0]["out_shape"] == [8, 5, 5]


@pytest.mark.parametrize("layer, message", [
    ({"bottleneck": {"name": "b", "mid": 24, "out": 24, "groups": 5}}, "`groups` of layer `b.conv2`.*must divide"),
    ({"bottleneck": {"name": "b", "mid": 24, "out": 24, "se": -0.5}}, "`se` of layer `b` \\(bottleneck\\) must be >= 0"),
    ({"se": {"name": "s", "squeeze": 0}}, "`squeeze` of layer `s` \\(se\\) must be >= 1"),
    ({"conv_bn_act": {"name": "c", "out": 8, "kernel": 3, "pad": -1}}, "`pad` of layer `c` \\(conv_bn_act\\)"),
])
def test_bad_macro_parameters_are_named(layer, message):
    with pytest.raises(augur_nas.AugurError, match=message):
        _layers([layer])


def test_regnet_se_keeps_at_least_one_channel():
    by = {l["name"]: l for l in _layers([{"bottleneck": {"name": "b", "mid": 24, "out": 24, "se": 0.01}}])}
    assert by["b.se.reduce"]["out_shape"][0] == 1   # round(0.01 * 16) = 0 -> 1
