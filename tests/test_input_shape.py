"""Models at their real input size: a factory's (module, shape), --input-shape, ONNX dynamic axes,
and the record of where the shape came from."""

import os

import pytest

from augur_nas import SpecError, analyze, load_model
from augur_nas.models import parse_input_shape

from conftest import ROOT

torch = pytest.importorskip("torch")

FACTORY = '''
import torch.nn as nn

def _net():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10))

def plain():
    return _net()

def with_shape():
    return _net(), (1, 3, 32, 32)

def with_attr():
    m = _net()
    m.input_shape = (1, 3, 64, 64)
    return m
'''


@pytest.fixture
def factory(tmp_path):
    p = tmp_path / "mymodel.py"
    p.write_text(FACTORY)
    return str(p)


def _macs(model):
    return analyze(model)["totals"]["macs"]


def test_parse_input_shape():
    assert parse_input_shape("1x3x32x32") == (1, 3, 32, 32)
    assert parse_input_shape("3x32x32") == (1, 3, 32, 32)
    assert parse_input_shape((1, 3, 8, 16)) == (1, 3, 8, 16)
    for bad in ("3x32", "1x3x0x32", "ax3x32x32", "8x3x32x32"):
        with pytest.raises(SpecError):
            parse_input_shape(bad)


def test_factory_shapes_and_their_sources(factory):
    plain = load_model(f"{factory}:plain")
    assert plain.input_info.shape == (1, 3, 224, 224) and plain.input_info.source == "default"
    assert "default" in plain.input_info.describe() and "--input-shape" in plain.input_info.describe()
    own = load_model(f"{factory}:with_shape")
    assert own.input_info == ((1, 3, 32, 32), "factory")
    attr = load_model(f"{factory}:with_attr")
    assert attr.input_info == ((1, 3, 64, 64), "module attribute")
    flag = load_model(f"{factory}:with_shape", input_shape="3x16x16")
    assert flag.input_info == ((1, 3, 16, 16), "flag")
    conv_macs = 3 * 8 * 9
    # conv MACs scale with the pixels: 224^2 / 32^2 = 49
    assert _macs(plain) - _macs(own) == conv_macs * (224 * 224 - 32 * 32)
    assert plain.name == own.name == "mymodel"  # the file's stem, as measure labels it


def test_yaml_input_override():
    path = os.path.join(ROOT, "spaces", "zoo")
    yamls = sorted(f for f in os.listdir(path) if f.endswith(".yaml"))
    m = load_model(os.path.join(path, yamls[0]))
    assert m.input_info.source == "file"
    c = m.input_info.shape[1]
    small = load_model(os.path.join(path, yamls[0]), input_shape=f"{c}x64x64")
    assert small.input_info == ((1, c, 64, 64), "flag")
    assert _macs(small) < _macs(m)


def test_onnx_dynamic_axes(tmp_path, factory):
    pytest.importorskip("onnx")
    import importlib.util

    spec = importlib.util.spec_from_file_location("mm", factory)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    net = mod.plain().eval()
    path = str(tmp_path / "dyn.onnx")
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), path, input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}}, dynamo=False)
    with pytest.raises(SpecError, match="fixed shape"):
        load_model(path)
    m = load_model(path, input_shape="1x3x48x48")
    assert m.input_info == ((1, 3, 48, 48), "flag")
    assert analyze(m)["input"] == [3, 48, 48]
