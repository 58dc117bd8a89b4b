"""Tests of augur_nas.io.torch.torch_to_spec (PyTorch -> model language)."""

from __future__ import annotations

import math
import sys
from collections import Counter

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from augur_nas._errors import AugurError, SpecError, UnsupportedOpError  # noqa: E402
from augur_nas.io.torch import torch_to_spec  # noqa: E402


MOBILENET_V2_PARAMS = 3_504_872
MOBILENET_V2_MACS = 300_774_272
RESNET18_PARAMS = 11_689_512
RESNET18_MACS = 1_814_073_344


# ---------------------------------------------------------------------------------------------
# torchvision's mobilenet_v2 and resnet18, defined with the other zoo networks in tests/torch_zoo.py

from torch_zoo import MobileNetV2, resnet18  # noqa: E402

from conftest import ZOO


# ---------------------------------------------------------------------------------------------
# a small model written with functional calls


class FunctionalNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, stride=2, padding=1)
        self.a = nn.Conv2d(16, 8, 1)
        self.b = nn.Conv2d(16, 8, 3, padding="same", bias=False)
        self.se_reduce = nn.Conv2d(16, 4, 1)
        self.se_expand = nn.Conv2d(4, 16, 1)
        self.head = nn.Linear(16 * 5 * 5, 10)

    def forward(self, x):
        x = F.relu(self.stem(x))                          # 16 x 16 x 16
        y = torch.cat([F.relu(self.a(x)), F.relu6(self.b(x))], dim=1)
        x = x + y
        s = x.mean([2, 3], keepdim=True)                  # squeeze-excite
        s = torch.sigmoid(self.se_expand(F.relu(self.se_reduce(s))))
        x = x * s
        x = F.max_pool2d(x, 2)                            # 8 x 8
        x = F.avg_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)  # 5 x 5 (ceil)
        x = torch.flatten(x, 1)
        return self.head(F.dropout(x, 0.3, self.training))


class ViewNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        x = F.hardswish(self.conv(x))
        x = F.adaptive_avg_pool2d(x, 6)                   # 6x6 -> 6x6: identity
        x = x.view(x.size(0), -1)
        return F.softmax(self.fc(x), dim=1)


# ---------------------------------------------------------------------------------------------
# an independent walker of the spec dict: shapes, params, conv+fc MACs


def _pair(v):
    return (v, v) if isinstance(v, int) else (v[0], v[1])


def _out(i, k, s, p, d=1, ceil=False):
    num = i + 2 * p - d * (k - 1) - 1
    o = (-(-num // s) if ceil else num // s) + 1
    if ceil and (o - 1) * s >= i + p:
        o -= 1
    return o


def walk(spec):
    """Return (params, conv+fc MACs, output shape, Counter of ops) computed from the spec."""
    shapes = {"input": (spec["input"]["channels"], *spec["input"]["resolution"])}
    params = macs = 0
    ops = Counter()
    last = None
    for entry in spec["layers"]:
        (op, a), = entry.items()
        ops[op] += 1
        ins = [shapes[n] for n in a["inputs"]]
        x = ins[0]
        if op == "conv":
            c, h, w = x
            kh, kw = _pair(a["kernel"])
            sh, sw = _pair(a.get("stride", 1))
            ph, pw = _pair(a.get("pad", 0))
            dh, dw = _pair(a.get("dilation", 1))
            g = a.get("groups", 1)
            assert c % g == 0 and a["out"] % g == 0
            oh, ow = _out(h, kh, sh, ph, dh), _out(w, kw, sw, pw, dw)
            per = kh * kw * (c // g) * a["out"]
            params += per + (a["out"] if a.get("bias", True) else 0)
            macs += per * oh * ow
            y = (a["out"], oh, ow)
        elif op == "fc":
            k = math.prod(x)
            params += k * a["out"] + (a["out"] if a.get("bias", True) else 0)
            macs += k * a["out"]
            y = (a["out"],)
        elif op == "batchnorm":
            params += 2 * x[0] if a.get("affine", True) else 0
            y = x
        elif op in ("maxpool", "avgpool"):
            c, h, w = x
            kh, kw = _pair(a["kernel"])
            sh, sw = _pair(a.get("stride", a["kernel"]))
            ph, pw = _pair(a.get("pad", 0))
            y = (c, _out(h, kh, sh, ph, ceil=a.get("ceil", False)),
                 _out(w, kw, sw, pw, ceil=a.get("ceil", False)))
        elif op == "globalpool":
            y = (x[0], 1, 1)
        elif op == "flatten":
            y = (math.prod(x),)
        elif op == "concat":
            assert all(s[1:] == x[1:] for s in ins)
            y = (sum(s[0] for s in ins), *x[1:])
        elif op in ("add", "mul"):
            assert len(ins) >= 2
            y = max(ins, key=math.prod)
            assert all(s == y or (op == "mul" and s == (y[0], 1, 1)) for s in ins)
        else:
            assert op in {"relu", "relu6", "hswish", "hsigmoid", "swish", "sigmoid", "tanh",
                          "dropout", "identity", "softmax", "lrn"}, op
            y = x
        assert a["name"] not in shapes, a["name"]
        shapes[a["name"]] = y
        last = a["name"]
    return params, macs, shapes[last], ops


def torch_macs(model, shape):
    """conv+fc MACs counted by torch forward hooks (independent of the spec)."""
    total = [0]

    def hook(m, inp, out):
        if isinstance(m, nn.Conv2d):
            total[0] += m.weight.numel() * out.shape[2] * out.shape[3]
        else:
            total[0] += m.weight.numel()

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(shape))
    for h in hs:
        h.remove()
    return total[0], tuple(out.shape[1:])


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# the zoo models


@pytest.fixture(scope="module")
def mbv2():
    model = MobileNetV2()
    return model, torch_to_spec(model, (1, 3, 224, 224), name="mobilenet_v2")


@pytest.fixture(scope="module")
def r18():
    model = resnet18()
    return model, torch_to_spec(model, (1, 3, 224, 224), name="resnet18")


def test_mobilenet_v2_torch_params():
    assert n_params(MobileNetV2()) == MOBILENET_V2_PARAMS


def test_resnet18_torch_params():
    assert n_params(resnet18()) == RESNET18_PARAMS


@pytest.mark.slow
def test_mobilenet_v2_spec(mbv2):
    model, spec = mbv2
    assert spec["name"] == "mobilenet_v2"
    assert spec["input"] == {"channels": 3, "resolution": [224, 224]}
    params, macs, out, ops = walk(spec)
    assert ops == Counter({"conv": 52, "batchnorm": 52, "relu6": 35, "add": 10, "globalpool": 1,
                           "flatten": 1, "dropout": 1, "fc": 1})
    assert params == MOBILENET_V2_PARAMS == n_params(model)
    assert macs == MOBILENET_V2_MACS
    assert (macs, out) == torch_macs(model, (1, 3, 224, 224))
    # Depthwise convs keep their groups; the stem is explicit about everything.
    first = spec["layers"][0]["conv"]
    assert first == {"out": 32, "kernel": 3, "stride": 2, "pad": 1, "groups": 1, "bias": False,
                     "name": "features.0.0", "inputs": ["input"]}
    dw = [e["conv"] for e in spec["layers"] if "conv" in e and e["conv"]["groups"] > 1]
    assert len(dw) == 17
    fc = spec["layers"][-1]["fc"]
    assert fc == {"out": 1000, "bias": True, "name": "classifier.1", "inputs": ["classifier.0"]}
    drop = spec["layers"][-2]["dropout"]
    assert drop["ratio"] == pytest.approx(0.2)


def test_mobilenet_v2_residual_wiring(mbv2):
    _, spec = mbv2
    adds = [e["add"] for e in spec["layers"] if "add" in e]
    first = adds[0]
    # block features.3 (24 -> 24, stride 1): x + conv(x), x being the output of features.2
    assert first == {"name": "features.3.add", "inputs": ["features.2.conv.3", "features.3.conv.3"]}
    assert spec["layers"][-4]["globalpool"] == {"mode": "avg", "name": "adaptive_avg_pool2d",
                                                "inputs": ["features.18.2"]}


@pytest.mark.slow
def test_resnet18_spec(r18):
    model, spec = r18
    params, macs, out, ops = walk(spec)
    assert ops == Counter({"conv": 20, "batchnorm": 20, "relu": 17, "maxpool": 1, "add": 8,
                           "globalpool": 1, "flatten": 1, "fc": 1})
    assert params == RESNET18_PARAMS == n_params(model)
    assert macs == RESNET18_MACS
    assert (macs, out) == torch_macs(model, (1, 3, 224, 224))
    names = [next(iter(e.values()))["name"] for e in spec["layers"]]
    assert len(names) == len(set(names))
    # The block's ReLU module is called twice: two layers with distinct names.
    assert "layer1.0.relu" in names and "layer1.0.relu_1" in names
    pool = next(e["maxpool"] for e in spec["layers"] if "maxpool" in e)
    assert (pool["kernel"], pool["stride"], pool["pad"], pool["ceil"]) == (3, 2, 1, False)
    adds = [e["add"] for e in spec["layers"] if "add" in e]
    assert [a["name"] for a in adds[:3]] == ["layer1.0.add", "layer1.1.add", "layer2.0.add"]
    assert adds[0]["inputs"] == ["layer1.0.bn2", "maxpool"]
    assert adds[2]["inputs"] == ["layer2.0.bn2", "layer2.0.downsample.1"]


def test_functional_model():
    model = FunctionalNet()
    spec = torch_to_spec(model, (1, 3, 32, 32))
    assert spec["name"] == "FunctionalNet"
    params, macs, out, ops = walk(spec)
    assert ops == Counter({"conv": 5, "relu": 3, "relu6": 1, "concat": 1, "add": 1, "globalpool": 1,
                           "sigmoid": 1, "mul": 1, "maxpool": 1, "avgpool": 1, "flatten": 1,
                           "dropout": 1, "fc": 1})
    assert params == n_params(model)
    assert (macs, out) == torch_macs(model, (1, 3, 32, 32))
    by_op = {op: a for e in spec["layers"] for op, a in e.items()}
    assert by_op["concat"]["inputs"] == ["relu_1", "relu6"]
    assert by_op["add"]["inputs"] == ["relu", "cat"]
    assert sorted(by_op["mul"]["inputs"]) == sorted(["add", "sigmoid"])
    assert by_op["avgpool"]["ceil"] is True
    assert by_op["dropout"]["ratio"] == pytest.approx(0.3)
    b = next(e["conv"] for e in spec["layers"] if "conv" in e and e["conv"]["name"] == "b")
    assert (b["kernel"], b["pad"], b["bias"]) == (3, 1, False)    # padding="same" made explicit


def test_view_softmax_and_trivial_adaptive_pool():
    model = ViewNet()
    spec = torch_to_spec(model, (1, 3, 8, 8))
    params, macs, out, ops = walk(spec)
    assert ops == Counter({"conv": 1, "hswish": 1, "identity": 1, "flatten": 1, "fc": 1, "softmax": 1})
    assert (macs, out) == torch_macs(model, (1, 3, 8, 8))
    assert params == n_params(model)


def test_output_not_last_node_and_modules_listed_in_brief():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8, affine=False), nn.Hardswish(),
                nn.Hardsigmoid(), nn.SiLU(), nn.Sigmoid(), nn.Tanh(), nn.LocalResponseNorm(3),
                nn.MaxPool2d(3, 2, ceil_mode=True), nn.AvgPool2d(2), nn.Identity(),
                nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4), nn.Softmax(dim=1))
            self.side = nn.ReLU()

        def forward(self, x):
            y = self.body(x)
            self.side(x)        # evaluated but unused: kept, never dropped
            return y

    spec = torch_to_spec(Net(), (1, 3, 15, 15))
    ops = [next(iter(e)) for e in spec["layers"]]
    assert ops == ["conv", "batchnorm", "hswish", "hsigmoid", "swish", "sigmoid", "tanh", "lrn",
                   "maxpool", "avgpool", "identity", "globalpool", "flatten", "fc", "softmax",
                   "relu", "identity"]
    assert spec["layers"][1]["batchnorm"]["affine"] is False
    assert spec["layers"][7]["lrn"]["size"] == 3
    assert spec["layers"][-1]["identity"]["inputs"] == ["body.14"]
    _, _, out, _ = walk(spec)
    assert out == (4,)


# ---------------------------------------------------------------------------------------------
# errors


def test_unsupported_module_is_named():
    class Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(8, 8)

        def forward(self, x):
            return self.rnn(x)[0]

    with pytest.raises(UnsupportedOpError) as ei:
        torch_to_spec(Seq(), (1, 3, 8, 8))
    msg = str(ei.value)
    assert "torch.nn.LSTM" in msg and "'rnn'" in msg and "Seq" in msg


def test_unsupported_function_is_named():
    class Spectral(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            return torch.fft.fft(self.conv(x)).real

    with pytest.raises(UnsupportedOpError) as ei:
        torch_to_spec(Spectral(), (1, 3, 8, 8))
    msg = str(ei.value)
    assert "fft" in msg and "Spectral" in msg and "\n" not in msg


def test_unsupported_module_subclass_is_not_matched_by_base_class():
    class MyConv1d(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv1d(3, 3, 1)

        def forward(self, x):
            return self.c(x)

    with pytest.raises(UnsupportedOpError, match="Conv1d"):
        torch_to_spec(MyConv1d(), (1, 3, 8, 8))


@pytest.mark.parametrize("forward, needle", [
    (lambda self, x: x * 0.5, "non-tensor"),
    (lambda self, x: torch.cat([x, x], dim=2), "dim 2"),
    (lambda self, x: x.view(1, 3, -1), "reshapes"),
    (lambda self, x: x + x[:, :1], "broadcasts"),  # [1,H,W] over [C,H,W]: not per-channel
    (lambda self, x: x[:, :, :2], "slicing"),  # a spatial slice (channel slices are `slice` layers)
])
def test_unsupported_uses_of_supported_ops(forward, needle):
    Net = type("Odd", (nn.Module,), {"forward": forward})
    with pytest.raises(UnsupportedOpError, match=needle) as ei:
        torch_to_spec(Net(), (1, 3, 8, 8))
    assert "Odd" in str(ei.value)


def test_linear_on_4d_tensor_is_rejected():
    with pytest.raises(UnsupportedOpError, match="last dimension"):
        torch_to_spec(nn.Sequential(nn.Linear(8, 4)), (1, 3, 8, 8))


def test_tracing_failure_names_class_and_error():
    class Branchy(nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    with pytest.raises(UnsupportedOpError) as ei:
        torch_to_spec(Branchy(), (1, 3, 8, 8))
    msg = str(ei.value)
    assert "Branchy" in msg and "tracing failed" in msg and "\n" not in msg


def test_multiple_outputs_rejected():
    class Two(nn.Module):
        def forward(self, x):
            return F.relu(x), torch.sigmoid(x)

    with pytest.raises(UnsupportedOpError, match="single-output"):
        torch_to_spec(Two(), (1, 3, 8, 8))


def test_inplace_then_reuse_rejected():
    class Sneaky(nn.Module):
        def forward(self, x):
            y = x * x
            y.relu_()
            return y + y          # reads y after it was changed in place

    with pytest.raises(SpecError, match="in place"):
        torch_to_spec(Sneaky(), (1, 3, 8, 8))


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_asymmetric_same_padding_rejected():
    with pytest.raises(UnsupportedOpError, match="asymmetrically"):
        torch_to_spec(nn.Sequential(nn.Conv2d(3, 4, 2, padding="same")), (1, 3, 8, 8))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 3, 8), (1, 3, 8, 0), "x", (1, 3.0, 8, 8)])
def test_bad_input_shape(shape):
    with pytest.raises(SpecError, match="input_shape"):
        torch_to_spec(nn.Sequential(nn.ReLU()), shape)


def test_wrong_input_size_is_a_spec_error():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))
    with pytest.raises(SpecError, match="failed at node"):
        torch_to_spec(model, (1, 3, 10, 10))


def test_not_a_module():
    with pytest.raises(SpecError, match="nn.Module"):
        torch_to_spec({"conv": 1}, (1, 3, 8, 8))


def test_training_mode_restored():
    model = MobileNetV2(num_classes=10)
    model.train()
    torch_to_spec(model, (1, 3, 32, 32))
    assert all(m.training for m in model.modules())


def test_missing_torch_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(AugurError, match=r"pip install 'augur-nas\[torch\]'"):
        torch_to_spec(object(), (1, 3, 8, 8))


# ---------------------------------------------------------------------------------------------
# against the loader (augur_nas.analyze) and the zoo YAML files, once they exist


def _analyze():
    import augur_nas

    fn = getattr(augur_nas, "analyze", None)
    if fn is None:
        pytest.skip("augur_nas.analyze is not available yet")
    return fn


def _load_spec(spec):
    import augur_nas

    return augur_nas.load_space_dict(spec, source=f"<torch {spec['name']}>")


@pytest.mark.parametrize("which, params, macs", [
    ("mbv2", MOBILENET_V2_PARAMS, MOBILENET_V2_MACS),
    ("r18", RESNET18_PARAMS, RESNET18_MACS),
])
def test_analyze_imported_spec(which, params, macs, request):
    analyze = _analyze()
    _, spec = request.getfixturevalue(which)
    t = analyze(_load_spec(spec))["totals"]
    assert t["params"] == params
    assert t["macs"] == macs


def test_analyze_functional_model():
    analyze = _analyze()
    model = FunctionalNet()
    spec = torch_to_spec(model, (1, 3, 32, 32))
    params, macs, _, _ = walk(spec)
    t = analyze(_load_spec(spec))["totals"]
    assert (t["params"], t["macs"]) == (params, macs) == (n_params(model), torch_macs(model, (1, 3, 32, 32))[0])


@pytest.mark.slow
def test_from_torch():
    import augur_nas

    from_torch = getattr(augur_nas, "from_torch", None)
    if from_torch is None:
        pytest.skip("augur_nas.from_torch is not exported yet")
    analyze = _analyze()
    model = from_torch(MobileNetV2(), (1, 3, 224, 224), name="mobilenet_v2")
    t = analyze(model)["totals"]
    assert (t["params"], t["macs"]) == (MOBILENET_V2_PARAMS, MOBILENET_V2_MACS)


@pytest.mark.parametrize("which, yaml_name", [("mbv2", "mobilenet_v2"), ("r18", "resnet18")])
def test_imported_spec_matches_zoo_yaml(which, yaml_name, request):
    """The traced torchvision model and the hand-written zoo YAML analyse identically (the YAML
    omits torch's explicit flatten, a free reshape; the YAML's dwconv is a grouped conv here)."""
    analyze = _analyze()
    path = ZOO / f"{yaml_name}.yaml"
    if not path.exists():
        pytest.skip(f"{path} is absent")
    import augur_nas

    _, spec = request.getfixturevalue(which)
    ours = analyze(_load_spec(spec))
    zoo = analyze(augur_nas.load_space(path))
    assert ours["totals"] == zoo["totals"]
    assert ours["input"] == zoo["input"]
    by_type = {k: v for k, v in ours["by_type"].items() if k != "reshape"}
    assert by_type == zoo["by_type"]
    assert ours["by_type"].get("reshape", {"count": 1})["count"] == 1

    def rows(a):
        return [(l["type"], l["out_shape"], l["macs"], l["params"], l["gemm"])
                for l in a["layers"] if l["type"] != "reshape"]

    assert rows(ours) == rows(zoo)
