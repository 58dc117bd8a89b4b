"""The mobile zoo networks (spaces/zoo/*.yaml) against their published figures, and the three
ways into each (the YAML, the PyTorch definition of tests/torch_zoo_mobile.py imported with
``from_torch``, the YAML's ONNX export read back) agree on parameters, conv+fc MACs and the GEMM
dimensions (n, k, m, groups) of every conv and fc layer, in execution order.

Published figures: GhostNet's from its official definition (the paper rounds: 5.2M, 141M);
the others are torchvision 0.29's ``sum(p.numel())`` with weights=None (exact), and conv+fc
MACs from a forward hook on every Conv2d/Linear of the torchvision model (which agree with
torchvision's documented GFLOPS, which are MACs, to their printed precision). The MACs must be
within 1% of those counts; here they are equal.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

import augur_nas

from conftest import ROOT, ZOO

PROFILES = ("tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu", "x86-2core-ort")

# name: (params, conv+fc MACs of the torchvision reference, torchvision's documented GFLOPS, input)
PUBLISHED = {
    "mobilenet_v3_large": (5_483_032, 216_589_760, 0.22, 224),
    "mobilenet_v3_small": (2_542_856, 56_510_400, 0.06, 224),
    "mnasnet1_0": (4_383_312, 314_415_872, 0.31, 224),
    "mnasnet0_5": (2_218_512, 104_455_968, 0.10, 224),
    "efficientnet_b0": (5_288_548, 385_814_752, 0.39, 224),
    "efficientnet_b1": (7_794_184, 686_802_832, 0.69, 240),
    "efficientnet_v2_s": (21_458_488, 8_365_617_152, 8.37, 384),
    # the official code's definition (huawei-noah ghostnet_pytorch); the paper: 5.2M, 141M FLOPs
    "ghostnet": (5_182_508, 141_150_512, 0.141, 224),
    "shufflenet_v2_x0_5": (1_366_792, 40_476_448, 0.04, 224),
    "shufflenet_v2_x1_0": (2_278_604, 144_907_992, 0.14, 224),
    # conv + fc (the channels-last Linears as 1x1 convs, at every position): torchvision documents
    # 4.46 GFLOPS (a Linear hook counting in*out once per call would undercount it)
    "convnext_tiny": (28_589_128, 4_455_531_264, 4.46, 224),
}
# networks whose ONNX/torch round trips take more than a few seconds
SLOW = {"efficientnet_v2_s", "efficientnet_b1", "convnext_tiny"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def _summary(model) -> tuple:
    a = augur_nas.analyze(model)
    layers = [l for l in a["layers"] if l["type"] in ("conv", "fc")]
    gemms = [(l["gemm"]["n"], l["gemm"]["k"], l["gemm"]["m"], l["gemm"]["groups"]) for l in layers]
    return a["totals"]["macs"], a["totals"]["params"], gemms


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_params_and_macs(name):
    model = augur_nas.load_model(ZOO / f"{name}.yaml")
    macs, params, _ = _summary(model)
    p_ref, m_ref, gflops, res = PUBLISHED[name]
    assert params == p_ref
    assert abs(macs - m_ref) <= 0.01 * m_ref
    assert abs(macs / 1e9 - gflops) <= 0.006 + 0.01 * gflops  # the documented figure, 2 decimals
    assert model.__class__  # loaded as a single model
    text = (ZOO / f"{name}.yaml").read_text()
    assert "Held out: never sampled for calibration or the residual." in text
    assert f"resolution: {res}" in text


@pytest.mark.parametrize("name", _params(PUBLISHED))
def test_yaml_torch_onnx_agree(name, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from augur_nas.io.onnx import export_onnx
    from torch_zoo_mobile import ZOO_MOBILE

    yaml_model = augur_nas.load_model(ZOO / f"{name}.yaml")
    onnx_path = tmp_path / f"{name}.onnx"
    export_onnx(yaml_model, onnx_path)
    factory, shape = ZOO_MOBILE[name]
    ref = _summary(yaml_model)
    assert ref[1] == PUBLISHED[name][0]
    for source, model in (("onnx", augur_nas.load_model(onnx_path)),
                          ("torch", augur_nas.from_torch(factory(), shape, name=name))):
        macs, params, gemms = _summary(model)
        assert (macs, params) == ref[:2], f"{name}: {source} disagrees with the YAML"
        assert gemms == ref[2], f"{name}: {source} GEMM dims (n, k, m, groups), in order"


# stochastic depth (identity at inference) before the residual adds, as the references have it:
# every block but the first (p = 0); in blocks without a residual the layer is inactive too
DROP_PATHS = {"efficientnet_b0": 15, "efficientnet_b1": 22, "efficientnet_v2_s": 39, "convnext_tiny": 18}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_stochastic_depth_where_the_reference_has_it(name):
    nodes = augur_nas.load_space(ZOO / f"{name}.yaml").program.nodes
    drops = [n for n in nodes if n.name.endswith(".drop_path")]
    assert len(drops) == DROP_PATHS.get(name, 0)
    assert all(n.op == "identity" for n in drops)


def test_torch_definitions_have_published_params():
    pytest.importorskip("torch")
    from torch_zoo_mobile import ZOO_MOBILE

    assert set(ZOO_MOBILE) == set(PUBLISHED)
    for name, (factory, _) in ZOO_MOBILE.items():
        assert sum(p.numel() for p in factory().parameters()) == PUBLISHED[name][0], name


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_predict_on_every_profile(name):
    # in process (the CLI's main): a child per profile cost 3 s of the suite per network
    from augur_nas.cli import main

    for device in PROFILES:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(["predict", str(ZOO / f"{name}.yaml"), "--device", device])
        assert rc == 0, f"{name} on {device}: {err.getvalue()}"
        assert "latency" in out.getvalue().lower()


# --------------------------------------------------------------------------------- the new macros


def _net(*layers, res=32, channels=16):
    return {"input": {"channels": channels, "resolution": res}, "layers": list(layers)}


def _layers(spec):
    return [l for l in augur_nas.analyze(augur_nas.load_space_dict(spec))["layers"]]


def test_mbconv_efficientnet_se_squeezes_the_block_input():
    se = {"se": 0.25, "se_base": "input", "se_divisor": 1, "se_act": "swish", "se_gate": "sigmoid"}
    layers = _layers(_net({"mbconv": {"name": "b", "out": 16, "expand": 6, "act": "swish", **se}}))
    by_name = {l["name"]: l for l in layers}
    assert by_name["b.se.reduce"]["out_shape"][0] == 4          # 16 // 4, not 96 // 4
    assert by_name["b.se.act"]["op"] == "swish" and by_name["b.se.gate"]["op"] == "sigmoid"
    assert "b.add" in by_name                                     # stride 1, in == out
    default = {l["name"]: l for l in _layers(_net({"mbconv": {"name": "b", "out": 16, "se": 0.25}}))}
    assert default["b.se.reduce"]["out_shape"][0] == 24           # make_divisible(96 / 4, 8)
    assert default["b.se.relu"]["op"] == "relu" and default["b.se.gate"]["op"] == "hsigmoid"


def test_mbconv_hidden_and_grouped_pointwise():
    by_name = {l["name"]: l for l in _layers(_net({"mbconv": {"name": "b", "out": 24, "hidden": 16, "groups": 2}}))}
    assert by_name["b.expand"]["out_shape"][0] == 16              # built although hidden == in
    assert by_name["b.expand"]["gemm"]["groups"] == 2 and by_name["b.project"]["gemm"]["groups"] == 2
    assert by_name["b.expand"]["params"] == 16 * 8


def test_fused_mbconv_and_ghost_shapes():
    by_name = {l["name"]: l for l in _layers(_net({"fused_mbconv": {"name": "f", "out": 32, "stride": 2}}))}
    assert by_name["f.expand"]["out_shape"] == [64, 16, 16] and by_name["f.expand"]["params"] == 16 * 64 * 9
    assert by_name["f.project"]["out_shape"] == [32, 16, 16] and "f.add" not in by_name
    by_name = {l["name"]: l for l in _layers(_net({"fused_mbconv": {"name": "f", "out": 16, "expand": 1}}))}
    assert "f.conv" in by_name and "f.add" in by_name
    by_name = {l["name"]: l for l in _layers(_net({"ghost_bottleneck": {"name": "g", "mid": 48, "out": 24,
                                                                         "stride": 2, "se": 0.25}}))}
    assert by_name["g.ghost1.concat"]["out_shape"] == [48, 32, 32]
    assert by_name["g.dw"]["out_shape"] == [48, 16, 16]
    assert by_name["g.se.reduce"]["out_shape"][0] == 12           # make_divisible(48 / 4, 4)
    assert by_name["g.shortcut.conv"]["out_shape"] == [24, 16, 16]
    same = {l["name"] for l in _layers(_net({"ghost_bottleneck": {"name": "g", "mid": 32, "out": 16}}))}
    assert "g.shortcut.conv" not in same and "g.dw" not in same   # identity shortcut, no strided dw


@pytest.mark.parametrize("layer, match", [
    ({"fused_mbconv": {"out": 16, "expand": {"choice": [1, 4]}}}, "cannot be a choice"),
    ({"fused_mbconv": {"out": 16, "expand": 0.5}}, "must be >= 1"),
    ({"ghost": {"out": 15}}, "multiple of its ghost `ratio`"),
    ({"ghost": {"out": 16, "ratio": 1}}, "at least 2"),
    ({"ghost_bottleneck": {"mid": 15, "out": 16}}, "multiple of its ghost `ratio`"),
    ({"mbconv": {"out": 16, "se": 0.25, "se_gate": "relu"}}, "se_gate"),
    ({"mbconv": {"out": 16, "se_base": {"choice": ["input", "expanded"]}}}, "cannot be a choice"),
])
def test_new_macro_bad_input(layer, match):
    with pytest.raises(augur_nas.SpecError, match=match):
        augur_nas.load_space_dict(_net(layer))
