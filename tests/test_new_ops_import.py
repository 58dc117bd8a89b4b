"""The torch and ONNX importers read what modern CNNs are written with: channel shuffle, chunk /
split / narrow / channel slicing, a [C,1,1] gate multiplied first, stochastic depth, GELU,
channels-last LayerNorm with Linear layers and a layer-scale parameter (ConvNeXt)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import augur_nas as an  # noqa: E402
from augur_nas.io.onnx import export_onnx  # noqa: E402


def channel_shuffle(x, groups: int):
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(n, c, h, w)


@torch.fx.wrap
def stochastic_depth(x, p: float, mode: str, training: bool = True):
    return x  # as torchvision.ops.stochastic_depth at inference


class ShuffleUnit(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        h = c // 2
        self.branch = nn.Sequential(nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU(),
                                    nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h),
                                    nn.Conv2d(h, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU())

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((a, self.branch(b)), dim=1), 2)


class Splits(nn.Module):
    def forward(self, x):
        p = torch.split(x, [4, 12], dim=1)
        q = x.narrow(1, 2, 6)
        r = x[:, 10:16]
        return torch.cat([p[1], p[0]], dim=1) + torch.cat([q, r, x[:, 0:4]], dim=1)


class SEGateFirst(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, 4, 1), nn.Conv2d(4, c, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        s = F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))
        y = s * x  # the gate first, as torchvision's SqueezeExcitation writes it
        return stochastic_depth(y, 0.2, "row", self.training) + x


class CNBlock(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.ln = nn.LayerNorm(c, eps=1e-6)
        self.fc1, self.fc2 = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.act = nn.GELU()
        self.layer_scale = nn.Parameter(torch.ones(c, 1, 1) * 1e-6)

    def forward(self, x):
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(self.act(self.fc1(self.ln(y)))).permute(0, 3, 1, 2)
        return self.layer_scale * y + x


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.blocks = nn.Sequential(ShuffleUnit(), Splits(), SEGateFirst(), CNBlock())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def _ops(model):
    return [r["type"] for r in an.analyze(model)["layers"]]


def test_torch_import_reads_modern_patterns_with_exact_params():
    net = Net().eval()
    model = an.from_torch(net, (1, 3, 16, 16))
    t = an.analyze(model)["totals"]
    assert t["params"] == sum(p.numel() for p in net.parameters())
    ops = _ops(model)
    assert ops.count("shuffle") == 1 and ops.count("slice") == 7 and ops.count("layernorm") == 1
    assert "activation" in ops  # gelu, hsigmoid
    # the ConvNeXt block's Linear layers are 1x1 convs over the 16x16 positions
    convs = [r for r in an.analyze(model)["layers"] if r["type"] == "conv" and r["gemm"]["n"] == 64]
    assert convs and convs[0]["gemm"]["m"] == 256


def test_onnx_round_trip_of_the_imported_model(tmp_path):
    model = an.from_torch(Net().eval(), (1, 3, 16, 16))
    path = tmp_path / "net.onnx"
    export_onnx(model, str(path))
    back = an.load_model(str(path))
    a, b = an.analyze(model), an.analyze(back)
    assert a["totals"] == b["totals"]
    assert [(r["type"], r["out_shape"], r.get("gemm")) for r in a["layers"]] == \
           [(r["type"], r["out_shape"], r.get("gemm")) for r in b["layers"]]


@pytest.mark.slow
def test_onnx_exported_by_torch_reads_back(tmp_path):
    """torch's own ONNX export (BatchNorm folded into the convs by its optimizer, so conv+fc MACs
    and the shuffle/slice/layernorm layers are compared, not params), the ConvNeXt block's NHWC
    region (Transpose, LayerNormalization, MatMul + Add, Erf GELU, Transpose) included."""
    net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), ShuffleUnit(), Splits(), SEGateFirst(), CNBlock()).eval()
    path = tmp_path / "torch.onnx"
    try:
        torch.onnx.export(net, torch.zeros(1, 3, 16, 16), str(path), opset_version=18, dynamo=True)
    except Exception as exc:  # the dynamo exporter needs onnxscript
        pytest.skip(f"torch.onnx.export is not usable here: {exc}")
    ours, theirs = an.from_torch(net, (1, 3, 16, 16)), an.load_model(str(path))
    assert an.analyze(theirs)["totals"]["macs"] == an.analyze(ours)["totals"]["macs"]
    for op in ("shuffle", "slice", "layernorm"):
        assert _ops(theirs).count(op) == _ops(ours).count(op) > 0


def test_unmatched_views_are_reported_by_node_name():
    class Odd(nn.Module):
        def forward(self, x):
            return x.permute(0, 2, 1, 3)

    with pytest.raises(an.UnsupportedOpError, match="permute"):
        an.from_torch(Odd(), (1, 3, 8, 8))
