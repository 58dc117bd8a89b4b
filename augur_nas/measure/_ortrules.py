"""ONNX Runtime's graph rules on this machine, read from its optimised graphs (no timing).

The blocked layout (NCHWc) and the fusions ONNX Runtime applies depend on the processor (MLAS
blocks 8 channels with AVX2, 16 with AVX-512) and on the runtime's version (which activations
it fuses into a convolution, which layers it pads to whole blocks). Written down once, they
held on the machine that wrote them and mispriced the next one. So the profiler asks the
runtime: it builds a few tiny networks, lets ONNX Runtime optimise them, and reads which nodes
became NCHWc kernels, where it inserted layout conversions and which activations disappeared
into their convolution. A probe takes milliseconds and is not affected by the machine's load.

``detect_rules(settings, workdir)`` returns an ``OrtRules`` record: the layout rules as a
profile stores them (``latency.layout`` without the reorder cost) and the activations fused
into a convolution (``latency.fuse[0].act``).
"""

from __future__ import annotations

import os
from typing import NamedTuple

from .._imports import optional
from ..costmodel import LatencyModel
from ..io.onnx import export_onnx
from ..models import load_space_dict
from ._runners import OrtRunner

# the defaults where nothing could be probed: ONNX Runtime 1.x on an AVX2 processor
DEFAULT_LAYOUT = {"blocked": ["conv", "dwconv", "maxpool", "avgpool", "globalpool"],
                  "follow": ["batchnorm", "relu", "relu6", "sigmoid", "tanh", "hsigmoid"],
                  "joins": ["add", "concat"], "block": 8, "narrow_below": 8}
DEFAULT_FUSED_ACTS = ["relu", "relu6", "sigmoid", "tanh", "hsigmoid"]
# the fused activations ONNX Runtime applies in a pass of their own over a conv's output: MLAS's
# conv kernels take ReLU as a kernel flag (MLAS_CONV_KERNEL_FLAG_RELU_ACTIVATION, applied as the
# output is written) and every other activation as OTHER_ACTIVATION (MlasActivation over the
# finished output: Clip for ReLU6, HardSigmoid, Sigmoid, Tanh, ...). A 1x1 expansion conv ran
# 14-26% slower with a fused ReLU6 and 0-7% with ReLU (experiments/join_rules.md, Finding 3).
# Which kinds pay is this policy; what a pass costs per MB is fitted (``_profiling``).
PASS_ACTS = ("relu6", "sigmoid", "tanh", "hsigmoid", "hswish", "swish", "gelu")
# activations whose layout (and fusion) the profiler asks about
ACTIVATIONS = ("relu", "relu6", "sigmoid", "tanh", "hsigmoid", "hswish", "swish", "gelu")
BLOCK_CANDIDATES = (4, 8, 16, 32)
REORDERS = ("ReorderInput", "ReorderOutput")


class OrtRules(NamedTuple):
    layout: dict        # LayoutRules.to_dict() without `reorder`
    fused_acts: list    # activation kinds ONNX Runtime fuses into the convolution before them
    probes: int         # tiny networks optimised


class _Prober:
    """Optimises tiny networks and returns their node lists ``[(op_type, domain)]``."""

    def __init__(self, settings, workdir):
        self.settings, self.workdir, self.count = settings, workdir, 0

    def nodes(self, layers, channels=16, resolution=8) -> list:
        model = load_space_dict({"name": "rules_probe", "input": {"channels": channels, "resolution": resolution},
                                 "layers": layers}, source="<layout probe>")
        path = os.path.join(self.workdir, "rules_probe.onnx")
        opt = os.path.join(self.workdir, "rules_probe_opt.onnx")
        export_onnx(model, path)
        OrtRunner(path, self.settings, optimized_path=opt).close()
        graph = optional("onnx", "reading ONNX Runtime's optimised graphs").load(opt).graph
        self.count += 1
        return [(n.op_type, n.domain) for n in graph.node]

    def reorders_between(self, layers, **kw) -> int:
        """Layout conversions beyond the one in and the one out of a network of blocked layers."""
        return sum(1 for op, _ in self.nodes(layers, **kw) if op in REORDERS) - 2


def _conv(out, kernel=3, groups=1):
    spec = {"out": out, "kernel": kernel}
    if groups > 1:
        spec["groups"] = groups
    return {"conv": spec}


def _block(p: _Prober):
    """The smallest channel count a conv reads blocked (below it, a conv reads plain input)."""
    for c in BLOCK_CANDIDATES:
        if p.reorders_between([_conv(64), _conv(c), _conv(64)]) == 0:
            return c
    return None


def _channel_rules(p: _Prober, b: int) -> dict:
    """``LayoutRules.channels``: does a layer whose channels are not whole blocks run blocked?"""
    half = b + b // 2  # channels that are not a multiple of the block

    def blocked(layers, channels=2 * b) -> bool:
        return p.reorders_between([_conv(channels)] + layers + [_conv(64)], channels=channels) == 0

    def rule(odd: bool, even: bool) -> str:
        return "any" if odd else "multiple" if even else "never"

    return {"dense": rule(blocked([_conv(half)]), True),
            "grouped": rule(blocked([_conv(4 * b, groups=8)], 4 * b), blocked([_conv(4 * b, groups=4)], 4 * b)),
            "depthwise": rule(blocked([_conv(half, groups=half)], half), blocked([_conv(2 * b, groups=2 * b)])),
            "pool": rule(blocked([{"maxpool": {"kernel": 2}}], half), blocked([{"maxpool": {"kernel": 2}}]))}


def _activations(p: _Prober, b: int):
    """``(follow, fused)``: activations that run on blocked tensors, and those that vanish into
    the conv before them."""
    follow, fused = [], []
    for act in ACTIVATIONS:
        try:
            nodes = p.nodes([_conv(2 * b), {act: {}}, _conv(64)], channels=2 * b)
        except Exception:  # noqa: BLE001 - a kind the exporter or runtime cannot build: keep the default
            continue
        convs = sum(1 for op, _ in nodes if op == "Conv")
        extra = sum(1 for op, _ in nodes if op in REORDERS) - 2
        if len(nodes) - 2 == convs:  # only the two convs left: the activation is in the first
            fused.append(act)
        if extra == 0:
            follow.append(act)
    return follow, fused


def _fused_joins(p: _Prober, b: int) -> str:
    """``LayoutRules.fused_joins``: is a sum of a blocked conv and a plain tensor (an LRN's) folded
    into the blocked conv (``blocked``: one conversion, the LRN's input), or run plain (``inputs``:
    the conv's output converted to plain and the sum back to blocked for the next conv, three)?"""
    c = 2 * b
    extra = p.reorders_between([{"conv": {"name": "a", "out": c, "kernel": 3, "pad": 1}}, {"lrn": {"name": "q"}},
                                {"conv": {"name": "c", "out": c, "kernel": 3, "pad": 1, "inputs": ["a"]}},
                                {"add": {"name": "j", "inputs": ["c", "q"]}}, _conv(64)], channels=c)
    return "inputs" if extra >= 3 else "blocked"


def _from_blocked(p: _Prober, b: int) -> list:
    """``LayoutRules.from_blocked``: the pools ONNX Runtime runs plain on a plain input (an LRN's)
    rather than converting it: no conversion beyond the conv's output for the LRN."""
    c = 2 * b
    out = []
    for kind, spec in (("globalpool", {}), ("maxpool", {"kernel": 2, "stride": 2}), ("avgpool", {"kernel": 2, "stride": 2})):
        extra = p.reorders_between([{"conv": {"out": c, "kernel": 3, "pad": 1}}, {"lrn": {}}, {kind: spec},
                                    {"fc": {"out": 10}}], channels=c)
        # two conversions in all (the network input's, the conv's output for the LRN): the pool ran
        # plain; four: its input was converted to blocked and its output back for the fc
        if extra <= 0:
            out.append(kind)
    return out


def detect_rules(settings, workdir) -> OrtRules:
    """ONNX Runtime's layout and activation fusion on this machine (see the module's doc)."""
    p = _Prober(settings, workdir)
    b = _block(p)
    if b is None:  # no blocked layout here (no NCHWc kernels): convs and pools run plain
        return OrtRules({"blocked": [], "follow": [], "joins": [], "block": 8, "narrow_below": 8},
                        list(DEFAULT_FUSED_ACTS), p.count)
    follow, fused = _activations(p, b)
    layout = dict(DEFAULT_LAYOUT, block=b, narrow_below=b, channels=_channel_rules(p, b),
                  follow=["batchnorm"] + [a for a in ACTIVATIONS if a in follow or a in fused],
                  fused_joins=_fused_joins(p, b), from_blocked=_from_blocked(p, b))
    return OrtRules(layout, fused, p.count)


def with_rules(latency, rules: OrtRules):
    """A copy of an ONNX Runtime ``LatencyModel`` whose layout and activation fusion are ``rules``
    (read on this machine), its costs unchanged: ``calibrate`` prices a profile of another
    processor with this machine's graph rules before it fits its factors."""
    d = latency.to_dict()
    if "layout" not in d:
        return latency
    # a base fitted on padded channels keeps pricing them so (its GEMM models learnt padded work)
    d["layout"] = dict(rules.layout, reorder=d["layout"]["reorder"],
                       **({"pad_channels": True} if d["layout"].get("pad_channels") else {}))
    for chain in d.get("fuse") or []:
        if "conv" in chain.get("into", []):
            chain["act"] = list(rules.fused_acts)
    conv = (d.get("kinds") or {}).get("conv")
    if isinstance(conv, dict) and "narrow" in conv:
        conv["narrow_below"] = int(rules.layout["narrow_below"])
    return LatencyModel.from_dict(d)
