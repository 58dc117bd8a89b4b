"""What ``augur-nas profile`` times: kernel configurations on a grid, and calibration networks.

Kernel probes are one-kernel models of our own language (so they are exported, fused and lowered
exactly like the networks they stand for): a dense convolution with its BatchNorm and ReLU
(``conv_bn_act``: one fused kernel in ONNX Runtime), a depthwise one with BatchNorm and ReLU6, a
stem convolution on 3 channels, a fully connected layer. Their configurations start from the
grid of Lu et al. (n kernels in 32..512, m output pixels in 7^2..112^2, k from the channels and
kernel size) and are refined later where the fit is worst (``refine``).

Calibration networks are random small CNNs assembled from the building blocks of the spaces
(inverted residuals with and without squeeze-excite, basic and bottleneck blocks, NAS-Bench-201
style cells with ReLU-conv-BN edges, average pools and three-way sums, inception branches,
plain conv/ReLU/pool stacks with LRN and an fc head). They are not samples of the validation
spaces; they teach the profile what the kernel grid cannot: the memory-bound ops in place, the
layout changes between them, and the runtime's per-node and per-call overheads.
"""

from __future__ import annotations

import numpy as np

from .._errors import AugurError
from ..analysis import analyze
from ..models import load_space_dict

N_GRID = (32, 64, 128, 256, 512)
M_SIDES = (7, 14, 28, 56, 112)
CIN_GRID = (16, 32, 64, 128, 256, 512)
MAX_PROBE_MACS = 1.2e9


def _out_side(h, k, s):
    return (h + 2 * ((k - 1) // 2) - k) // s + 1


def conv_probe(cin, h, n, kernel, stride, act="relu", groups=1):
    g = f"g{int(groups)}" if groups > 1 else ""
    return {"name": f"conv_{cin}x{h}_{n}_k{kernel}s{stride}{g}", "input": {"channels": int(cin), "resolution": int(h)},
            "layers": [{"conv_bn_act": {"name": "k", "out": int(n), "kernel": int(kernel), "stride": int(stride),
                                        "act": act, "groups": int(groups)}}]}


def dw_probe(c, h, kernel, stride):
    return {"name": f"dw_{c}x{h}_k{kernel}s{stride}", "input": {"channels": int(c), "resolution": int(h)},
            "layers": [{"dwconv": {"name": "k", "kernel": int(kernel), "stride": int(stride)}},
                       {"batchnorm": {"name": "k_bn"}}, {"relu6": {"name": "k_act"}}]}


def fc_probe(k, n, act=False):
    layers = [{"fc": {"name": "k", "out": int(n)}}]
    if act:
        layers.append({"relu": {"name": "k_act"}})
    return {"name": f"fc_{k}_{n}", "input": {"channels": int(k), "resolution": 1}, "layers": layers}


# the pairs that time a fused activation's pass (``act_pair_probe``), by the family of the kernel
# that produces the activation's input (``costmodel._latency.pass_family``): ONNX Runtime applies the
# pass over a finished output tile, and what that costs per MB differs by kernel (a 1x1 GEMM's
# tile leaves the cache before the pass, a depthwise conv's rows are still in it). Each shape is
# (input channels, input resolution, output channels, kernel, stride); pointwise: the mobile
# spaces' 1x1 expansions (k -> 6k, experiments/expand_act.py measured these); depthwise: their 6k
# channels at the same resolutions, kernels 3/5/7, strides 1 and 2; dense: the 3x3 stem on RGB
# (a mobile network's only dense conv) and a 3x3 conv of the resnet space's sizes. 11 producers
# times (1 + the activations, 5 on AVX-512): ~70 one-kernel sessions, ~10 s of phase B
ACT_PAIR_SHAPES = {
    "conv_1x1": ((16, 96, 96, 1, 1), (24, 56, 144, 1, 1), (32, 28, 192, 1, 1), (64, 14, 384, 1, 1)),
    "dwconv": ((96, 96, 96, 3, 1), (144, 56, 144, 5, 1), (192, 28, 192, 7, 1), (384, 14, 384, 3, 1),
               (144, 56, 144, 7, 2)),
    "conv": ((3, 224, 32, 3, 2), (32, 56, 64, 3, 1)),
}


def act_pair_probe(family, shape, act=None):
    """A producer of family ``family`` (``ACT_PAIR_SHAPES``) with BatchNorm and, with ``act``, that
    activation fused into it: with and without it, a pair whose difference is the activation's pass."""
    cin, h, n, kernel, stride = (int(v) for v in shape)
    if family == "dwconv":
        first = {"dwconv": {"name": "k", "kernel": kernel, "stride": stride}}
    else:
        first = {"conv": {"name": "k", "out": n, "kernel": kernel, "stride": stride}}
    layers = [first, {"batchnorm": {"name": "k_bn"}}]
    if act:
        layers.append({act: {"name": "k_act"}})
    return {"name": f"pair_{family}_{cin}x{h}_{n}_k{kernel}s{stride}_{act or 'none'}",
            "input": {"channels": cin, "resolution": h}, "layers": layers}


def pair_out_mb(shape, bytes_per_elem, bytes_per_mb):
    """The output MB of a pair's producer (what its activation's pass reads and writes)."""
    _, h, n, kernel, stride = shape
    side = _out_side(h, kernel, stride)
    return n * side * side * bytes_per_elem / bytes_per_mb


def _macs_conv(cin, h, n, kernel, stride):
    o = _out_side(h, kernel, stride)
    return cin * kernel * kernel * n * o * o


def kernel_grid(rng, count: int) -> list:
    """``count`` kernel probes spread over the families (dense kxk, 1x1, stem, depthwise, fc)."""
    out = []
    shares = (("kxk", 0.31), ("pw", 0.25), ("narrow", 0.07), ("grouped", 0.05), ("dw", 0.22), ("fc", 0.10))
    for fam, share in shares:
        want = max(2, int(round(count * share)))
        got, tries = 0, 0
        while got < want and tries < 50 * want:
            tries += 1
            spec = _random_probe(rng, fam)
            if spec is not None:
                out.append((fam, spec))
                got += 1
    rng.shuffle(out)
    return out


def _random_probe(rng, fam, n_range=None, m_range=None):
    if fam in ("kxk", "pw"):
        kernel = 1 if fam == "pw" else int(rng.choice([3, 3, 3, 5, 7]))
        stride = int(rng.choice([1, 1, 1, 2]))
        side = int(rng.choice(M_SIDES)) if m_range is None else int(np.sqrt(rng.uniform(*m_range)))
        side = max(side, 2)
        h = side * stride
        n = int(rng.choice(N_GRID)) if n_range is None else int(rng.uniform(*n_range))
        n = max(8, n // 8 * 8)
        cin = int(rng.choice(CIN_GRID))
        # the grid covers the paper's k = cin * kernel^2; skip what no network of the spaces runs
        if _macs_conv(cin, h, n, kernel, stride) > MAX_PROBE_MACS or h > 224:
            return None
        return conv_probe(cin, h, n, kernel, stride)
    if fam == "grouped":
        # grouped 3x3 convs as RegNet and ResNeXt run them (group widths 4 to 32): the widths that
        # do not fill the runtime's channel blocks run plain (the `conv_plain` model)
        width = int(rng.choice([4, 8, 8, 16, 24, 32]))
        groups = int(rng.choice([2, 4, 6, 8, 13, 16, 26, 32]))
        c = width * groups
        side = int(rng.choice([7, 14, 28, 56])) if m_range is None else max(2, int(np.sqrt(rng.uniform(*m_range))))
        stride = int(rng.choice([1, 1, 2]))
        if _macs_conv(width, side * stride, c, 3, stride) > MAX_PROBE_MACS:
            return None
        return conv_probe(c, side * stride, c, 3, stride, groups=groups)
    if fam == "narrow":
        kernel = int(rng.choice([3, 3, 5, 7, 11]))
        stride = int(rng.choice([1, 2, 2, 4]))
        h = int(rng.choice([32, 64, 128, 160, 192, 224]))
        n = int(rng.choice([16, 24, 32, 48, 64, 96]))
        if _macs_conv(3, h, n, kernel, stride) > MAX_PROBE_MACS:
            return None
        return conv_probe(3, h, n, kernel, stride)
    if fam == "dw":
        kernel = int(rng.choice([3, 5, 7]))
        stride = int(rng.choice([1, 1, 2]))
        side = int(rng.choice(M_SIDES)) if m_range is None else int(np.sqrt(rng.uniform(*m_range)))
        side = max(side, 2)
        c = int(rng.choice([16, 32, 48, 64, 96, 144, 192, 240, 384, 576, 960]))
        return dw_probe(c, side * stride, kernel, stride)
    if fam == "fc":
        # up to VGG's first fc (25088 x 4096): the weights of the largest leave every cache
        k = int(rng.choice([64, 256, 512, 1024, 1280, 2048, 4096, 9216, 25088]))
        n = int(rng.choice([10, 100, 1000, 2048, 4096]))
        if k * n > 110e6:
            return None
        return fc_probe(k, n, act=bool(rng.random() < 0.3))
    return None


def refine_probes(rng, fam, n_range, m_range, count) -> list:
    """More probes of family ``fam`` inside the (n, m) cell where the fit is worst."""
    out, tries = [], 0
    while len(out) < count and tries < 50 * count:
        tries += 1
        spec = _random_probe(rng, fam, n_range, m_range)
        if spec is not None:
            out.append((fam, spec))
    return out


# --------------------------------------------------------------------------------------------- networks


def _c8(v):
    return int(max(8, round(v / 8) * 8))


def random_network(rng, idx: int, max_macs: float = 1.5e9) -> dict:
    """One random calibration network (a model dict of our language)."""
    style = ["mobile", "resnet", "cell", "inception", "classic", "modern"][idx % 6]
    if style == "modern":
        return _modern_network(rng, idx)
    if style == "cell":
        res = int(rng.choice([32, 32, 48, 64]))
    elif style == "classic":
        res = int(rng.choice([64, 96, 128, 160]))
    else:
        res = int(rng.choice([96, 128, 160, 192, 224]))
    c = _c8(rng.choice([16, 24, 32, 48, 64]))
    layers, cells = _STYLES[style](rng, c, res, res)
    spec = {"name": f"calib{idx}_{style}", "input": {"channels": 3, "resolution": res}, "layers": layers}
    if cells:
        spec["cells"] = cells
    return spec


def _mobile_layers(rng, c: int, side: int, res: int):
    """MobileNet-like: inverted residuals (mbconv) with SE and activations drawn."""
    layers = []
    layers.append({"conv_bn_act": {"out": c, "kernel": 3, "stride": 2, "act": "relu6"}})
    side //= 2
    for b in range(int(rng.integers(4, 12))):
        stride = 2 if (rng.random() < 0.3 and side >= 8) else 1
        out = _c8(c * rng.choice([1.0, 1.0, 1.5, 2.0])) if stride == 2 or rng.random() < 0.3 else c
        blk = {"out": min(out, 320), "kernel": int(rng.choice([3, 5, 7])), "stride": stride,
               "expand": float(rng.choice([1, 3, 6])), "se": float(rng.choice([0, 0, 0.25])),
               "act": str(rng.choice(["relu6", "relu6", "relu6", "hswish", "relu"]))}
        layers.append({"mbconv": blk})
        c = blk["out"]
        side = -(-side // stride)
    layers.append({"conv_bn_act": {"out": int(rng.choice([640, 1280])), "kernel": 1, "act": "relu6"}})
    layers += [{"globalpool": {"mode": "avg"}}, {"dropout": {"ratio": 0.2}}, {"fc": {"out": 1000}}]
    return layers, {}


def _resnet_layers(rng, c: int, side: int, res: int):
    """ResNet-like: stages of basic or bottleneck blocks."""
    layers = []
    layers.append({"conv_bn_act": {"out": c, "kernel": 7, "stride": 2, "act": "relu"}})
    layers.append({"maxpool": {"kernel": 3, "stride": 2, "pad": 1}})
    side = side // 4
    bottleneck = rng.random() < 0.5
    for st in range(int(rng.integers(2, 5))):
        stride = 1 if st == 0 else 2
        width = _c8(c * (1 if st == 0 else 2) * rng.choice([0.5, 0.75, 1.0]))
        for d in range(int(rng.integers(1, 3))):
            if bottleneck:
                layers.append({"bottleneck": {"mid": width, "stride": stride if d == 0 else 1}})
            else:
                layers.append({"basic": {"out": width, "stride": stride if d == 0 else 1}})
        c = width * (4 if bottleneck else 1)
        side = -(-side // stride)
    layers += [{"globalpool": {"mode": "avg"}}, {"fc": {"out": 1000}}]
    return layers, {}


def _cell_layers(rng, c: int, side: int, res: int):
    """NAS-Bench-201-like: a random cell repeated in three stages, reduction blocks between."""
    layers = []
    edge_ops = ["zero", "identity", {"relu_conv_bn": {"kernel": 1}}, {"relu_conv_bn": {"kernel": 3}},
                {"avgpool": {"kernel": 3, "stride": 1, "pad": 1}}]
    edges = {}
    for j in range(1, 4):
        for i in range(j):
            edges[f"{j}<-{i}"] = edge_ops[int(rng.integers(0, 5))]
    cells = {"cellA": {"nodes": 4, "edges": edges}}
    c = int(rng.choice([16, 24, 32]))
    layers += [{"conv": {"out": c, "kernel": 3, "pad": 1, "bias": False}}, {"batchnorm": {}}]
    for st in range(3):
        for _ in range(int(rng.integers(1, 5))):
            layers.append({"cell": {"type": "cellA"}})
        if st < 2:
            c2 = c * 2
            layers.append({"branch": {"join": "add", "paths": [
                [{"relu": {}}, {"conv": {"out": c2, "kernel": 3, "stride": 2, "pad": 1, "bias": False}},
                 {"batchnorm": {}}, {"relu": {}}, {"conv": {"out": c2, "kernel": 3, "pad": 1, "bias": False}},
                 {"batchnorm": {}}],
                [{"avgpool": {"kernel": 2, "stride": 2}}, {"conv": {"out": c2, "kernel": 1, "bias": False}}]]}})
            c = c2
            side //= 2
    layers += [{"batchnorm": {}}, {"relu": {}}, {"globalpool": {"mode": "avg"}}, {"fc": {"out": 10}}]
    return layers, cells


def _inception_layers(rng, c: int, side: int, res: int):
    """GoogLeNet-like: inception blocks, LRN and max pools drawn."""
    layers = []
    layers.append({"conv": {"out": 64, "kernel": 7, "stride": 2, "pad": 3}})
    layers.append({"relu": {}})
    layers.append({"maxpool": {"kernel": 3, "stride": 2, "ceil": True}})
    if rng.random() < 0.5:
        layers.append({"lrn": {"size": 5}})
    side = side // 4
    for b in range(int(rng.integers(2, 6))):
        f = float(rng.choice([0.5, 1.0, 1.5]))
        blk = {"c1": _c8(64 * f), "c3r": _c8(96 * f), "c3": _c8(128 * f), "c5r": _c8(16 * f),
               "c5": _c8(32 * f), "pool_proj": _c8(32 * f)}
        layers.append({"inception": blk})
        if rng.random() < 0.3 and side >= 8:
            layers.append({"maxpool": {"kernel": 3, "stride": 2, "ceil": True}})
            side = -(-side // 2)
    layers += [{"globalpool": {"mode": "avg"}}, {"dropout": {"ratio": 0.4}}, {"fc": {"out": 1000}},
               {"softmax": {}}]
    return layers, {}


def _classic_layers(rng, c: int, side: int, res: int):
    """AlexNet/VGG-like: conv-relu stages with max pools, then fully connected layers."""
    layers = []
    for st in range(int(rng.integers(3, 5))):
        width = _c8(rng.choice([32, 64, 96, 128]) * (2 ** min(st, 2)))
        for d in range(int(rng.integers(1, 3))):
            k = int(rng.choice([1, 3, 3, 5])) if st else int(rng.choice([3, 5, 7, 11]))
            layers.append({"conv": {"out": width, "kernel": k, "pad": "same", "stride": 2 if (st == 0 and d == 0 and res > 96) else 1}})
            layers.append({"relu": {}})
        if st == 0 and res > 96:
            side //= 2
        if st == 0 and rng.random() < 0.4:
            layers.append({"lrn": {"size": 5}})
        layers.append({"maxpool": {"kernel": 2, "stride": 2}} if rng.random() < 0.5
                      else {"maxpool": {"kernel": 3, "stride": 2, "ceil": True}})
        side = -(-side // 2)
    layers.append({"flatten": {}})
    hid = int(rng.choice([256, 512, 1024]))
    layers += [{"fc": {"out": hid}}, {"relu": {}}, {"dropout": {"ratio": 0.5}}, {"fc": {"out": 1000}},
               {"softmax": {}}]
    return layers, {}


# the styles of random_network but `modern` (each: layers and cells from rng, stem width c, side, resolution)
_STYLES = {"mobile": _mobile_layers, "resnet": _resnet_layers, "cell": _cell_layers, "inception": _inception_layers,
           "classic": _classic_layers}


def _shuffle_unit(i: int, c: int) -> list:
    """A ShuffleNetV2 unit (stride 1): half the channels through a branch, concat, shuffle."""
    h = c // 2
    n = f"su{i}"
    return [{"slice": {"name": f"{n}.left", "start": 0, "end": h}},
            {"slice": {"name": f"{n}.right", "start": h, "end": c, "inputs": [f"{n}.in"]}},
            {"conv_bn_act": {"name": f"{n}.pw1", "out": h, "kernel": 1}},
            {"dwconv": {"name": f"{n}.dw", "kernel": 3}}, {"batchnorm": {"name": f"{n}.bn"}},
            {"conv_bn_act": {"name": f"{n}.pw2", "out": h, "kernel": 1}},
            {"concat": {"name": f"{n}.cat", "inputs": [f"{n}.left", f"{n}.pw2"]}},
            {"shuffle": {"name": f"{n}.shuffle", "groups": 2}}]


def _convnext_block(i: int, c: int) -> list:
    """A ConvNeXt block: dwconv 7x7, LayerNorm, 1x1 to 4C, GELU, 1x1 back, layer scale, add."""
    n = f"cn{i}"
    return [{"dwconv": {"name": f"{n}.dw", "kernel": 7, "bias": True}}, {"layernorm": {"name": f"{n}.ln"}},
            {"conv": {"name": f"{n}.pw1", "out": 4 * c, "kernel": 1}}, {"gelu": {"name": f"{n}.act"}},
            {"conv": {"name": f"{n}.pw2", "out": c, "kernel": 1}}, {"scale": {"name": f"{n}.gamma", "bias": False}},
            {"add": {"name": f"{n}.add", "inputs": [f"{n}.gamma", f"{n}.in"]}}]


def _modern_network(rng, idx: int) -> dict:
    """ShuffleNetV2 units, ConvNeXt blocks and Swish inverted residuals: the calibration networks
    that teach a profile the channel shuffle, slices, LayerNorm and GELU."""
    res = int(rng.choice([64, 96, 128, 160]))
    c = _c8(rng.choice([32, 48, 64, 96]))
    layers = [{"conv_bn_act": {"out": c, "kernel": 3, "stride": 2, "act": "relu"}}]
    for b in range(int(rng.integers(3, 8))):
        kind = int(rng.integers(0, 4))
        if kind == 0:  # a named entry point, so that the unit's second branch can read it
            layers += [{"identity": {"name": f"su{b}.in"}}] + _shuffle_unit(b, c)
        elif kind == 1:
            layers += [{"identity": {"name": f"cn{b}.in"}}] + _convnext_block(b, c)
        elif kind == 3:  # a RegNet-style bottleneck (ratio 1) with a grouped 3x3, SE drawn
            width = int(rng.choice([8, 8, 16, 24])) if c % 24 == 0 else int(rng.choice([8, 8, 16])) if c % 16 == 0 else 8
            layers.append({"bottleneck": {"mid": c, "out": c, "groups": c // width, "se": float(rng.choice([0, 0.25]))}})
        else:
            act = str(rng.choice(["swish", "hswish", "gelu"]))
            layers.append({"mbconv": {"out": c, "kernel": int(rng.choice([3, 5])), "expand": 4, "act": act,
                                      "se": float(rng.choice([0, 0.25]))}})
        if rng.random() < 0.25 and res >= 64:
            c2 = _c8(c * 1.5)
            layers.append({"conv_bn_act": {"out": c2, "kernel": 3, "stride": 2, "act": "relu"}})
            c, res = c2, res // 2
    layers += [{"globalpool": {"mode": "avg"}}, {"fc": {"out": 1000}}]
    return {"name": f"calib{idx}_modern", "input": {"channels": 3, "resolution": res}, "layers": layers}


def calibration_networks(rng, count: int, max_macs: float = 1.5e9) -> list:
    """``count`` random calibration networks that lower (shapes valid) and stay below ``max_macs``."""
    out, i, tries = [], 0, 0
    while len(out) < count and tries < 20 * count + 20:
        tries += 1
        spec = random_network(rng, i)
        model = _model_below(spec, max_macs)
        if model is None:
            continue
        out.append((spec["name"], model, spec))
        i += 1
    return out


def _model_below(spec: dict, max_macs: float):
    """The model of ``spec`` when it lowers (shapes valid) and has at most ``max_macs`` MACs, else None."""
    try:
        model = load_space_dict(spec, source=f"<{spec['name']}>")
        macs = analyze(model)["totals"]["macs"]
    except AugurError:
        return None
    return model if macs <= max_macs else None


def large_network(rng, idx: int) -> dict:
    """An ImageNet-scale ResNet (stem, four stages of basic or bottleneck blocks of widths 64-512
    times 0.5-1.25, 160-224 pixels): the random calibration networks are small (their weights
    stay in the 2 MB L2 between runs), and a profile fitted on them alone priced weight-heavy
    networks 10-16 % fast (resnet samples of 7-10 M parameters per GMAC, 16:09 benchmark)."""
    res = int(rng.choice([160, 192, 224]))
    mult = float(rng.choice([0.5, 0.75, 1.0]))
    bottleneck = bool(rng.random() < 0.5)
    layers = [{"conv_bn_act": {"out": _c8(64 * mult), "kernel": 7, "stride": 2, "act": "relu"}},
              {"maxpool": {"kernel": 3, "stride": 2, "pad": 1}}]
    for st, base in enumerate((64, 128, 256, 512)):
        width = _c8(base * mult * rng.choice([0.75, 1.0, 1.25]))
        for d in range(int(rng.integers(1, 4))):
            stride = 2 if st > 0 and d == 0 else 1
            layers.append({"bottleneck": {"mid": width, "stride": stride}} if bottleneck
                          else {"basic": {"out": width, "stride": stride}})
    layers += [{"globalpool": {"mode": "avg"}}, {"fc": {"out": 1000}}]
    return {"name": f"large{idx}_imagenet", "input": {"channels": 3, "resolution": res}, "layers": layers}


def large_networks(rng, count: int, max_macs: float = 4.5e9) -> list:
    """``count`` of ``large_network`` that lower and stay below ``max_macs`` (ResNet-50: 4.1e9)."""
    out, tries = [], 0
    while len(out) < count and tries < 20 * count + 20:
        tries += 1
        spec = large_network(rng, len(out))
        model = _model_below(spec, max_macs)
        if model is not None:
            out.append((spec["name"], model, spec))
    return out
