"""ONNX export and import of augur-nas models.

``export_onnx(model, path)`` writes any concrete model (a space of size 1: a zoo YAML, a Caffe
prototxt, a decoded candidate, a torch import) as an ONNX graph with random float32 weights.
It is built from the unrolled primitive nodes of ``model.program``: a slot the model does not
use (an alternative not chosen, a residual ``add`` whose shapes disagree) passes its input
through, exactly as in the lowering, and ``select`` / ``identity`` become aliases / ``Identity``.
The graph is checked with ``onnx.checker`` and strict shape inference, and every inferred layer
shape must equal the lowering's, so an exported file describes the network the cost model
prices.

``read_onnx(path)`` reads an ONNX graph back into a model dict of the language through ONE
registry of op handlers (``HANDLERS``) keyed by the exact ONNX ``op_type``. Initializers and
constants are read only for their shapes and for pattern checks (``BatchNormalization`` with
scale 1 and bias 0 is ``affine: false``; ``Clip(0, 6)`` is ``relu6``; ``Mul`` by a scalar 0 is a
``zero`` edge). ``Constant`` is listed in ``IGNORED`` (read for its value only); shape bookkeeping
(``Shape`` -> ``Gather`` -> ``Concat`` -> ``Reshape`` and the like: ops of ``FOLDABLE`` whose
inputs are all constants or static shapes) is folded. ``Identity`` and ``Dropout`` compute
nothing at inference but are read as the language's free ``identity`` / ``dropout`` layers, so
that they round-trip. Every other node is either handled or reported: ``UnsupportedOpError``
names every unsupported node (name and op type) at once, never dropping one silently. The
lowering's shapes of the result are checked against ONNX's inferred shapes, layer by layer.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .._atomic import atomic_file
from .._errors import ShapeError, SpecError, UnsupportedOpError, where
from .._imports import optional
from .._version import __version__
from ..lowering import walk
from ..models import load_model, load_space_dict, register_reader
from ..space import SearchSpace

__all__ = ["export_onnx", "read_onnx", "HANDLERS", "IGNORED", "FOLDABLE", "MIN_OPSET"]

MIN_OPSET = 14  # HardSwish, Clip bounds as inputs, Softmax along one axis
_PROTOBUF_LIMIT = 2**31 - 1


def _onnx():
    onnx = optional("onnx", "ONNX support")
    for part in ("checker", "helper", "numpy_helper", "shape_inference"):
        optional(f"onnx.{part}", "ONNX support")
    return onnx


def _int(v) -> int:
    return int(np.asarray(v).reshape(-1)[0])


def _pair(v):
    return (v, v) if not isinstance(v, tuple) else v


# =============================================================================================
# export
# =============================================================================================


class _Builder:
    """Collects nodes, small constants (real initializers) and the weights.

    Weights are recorded lazily (name, shape, generator) and drawn only while the file is
    written, one tensor at a time, straight into the output (see ``_write_model``).
    """

    def __init__(self, onnx, seed: int):
        self.onnx = onnx
        self.h = onnx.helper
        self.nodes: list = []
        self.inits: list = []  # small shared constants, as TensorProtos
        self.params: list = []  # (name, shape, generator(rng) -> float32 array)
        self.names: set = set()
        self.seed = seed
        self.rank: dict[str, int] = {"input": 4}
        self.shared: dict[str, str] = {}
        self.to4d_cache: dict[str, str] = {}

    def node(self, op, inputs, output, name, **attrs) -> str:
        self.nodes.append(self.h.make_node(op, list(inputs), [output], name=name, **attrs))
        return output

    def _claim(self, name: str):
        if name in self.names:
            raise SpecError(f"two ONNX initializers would be named `{name}`")
        self.names.add(name)

    def const(self, key: str, arr: np.ndarray) -> str:
        """A small constant shared by every node that uses it (a real initializer)."""
        name = self.shared.get(key)
        if name is None:
            name = self.shared[key] = f"const.{key}"
            self._claim(name)
            self.inits.append(self.onnx.numpy_helper.from_array(np.asarray(arr), name))
        return name

    def param(self, name: str, shape, gen) -> str:
        self._claim(name)
        self.params.append((name, tuple(int(s) for s in shape), gen))
        return name

    def weight(self, name: str, shape, fan_in: int) -> str:
        """He-uniform random weights: U(-a, a) with a = sqrt(6 / fan_in)."""
        a = np.float32(math.sqrt(6.0 / max(int(fan_in), 1)))

        def gen(rng, shape):
            arr = rng.random(shape, dtype=np.float32)
            arr -= np.float32(0.5)
            arr *= 2 * a
            return arr
        return self.param(name, shape, gen)

    def small(self, name: str, shape, mean: float, std: float) -> str:
        return self.param(name, shape, lambda rng, shape: (mean + std * rng.standard_normal(shape)).astype(np.float32))

    def fixed(self, name: str, shape, value: float) -> str:
        return self.param(name, shape, lambda rng, shape: np.full(shape, value, dtype=np.float32))

    def to4d(self, t: str) -> str:
        if self.rank.get(t, 4) == 4:
            return t
        out = self.to4d_cache.get(t)
        if out is None:
            axes = self.const("axes_hw", np.array([2, 3], dtype=np.int64))
            out = self.to4d_cache[t] = self.node("Unsqueeze", [t, axes], f"{t}.4d", f"{t}.4d")
            self.rank[out] = 4
        return out


@dataclass
class _Slot:
    """What an exporter sees of one active primitive node."""

    node: object
    ev: object
    ins: list  # ONNX tensor names of the inputs
    in_shapes: list  # (c, h, w) of each input
    out_shape: tuple  # (c, h, w) the lowering gives

    def val(self, key):
        return self.ev.val(self.node.params[key])

    def ival(self, key) -> int:
        return _int(self.val(key))

    def pair(self, key):
        a, b = _pair(self.val(key))
        return _int(a), _int(b)


EXPORTERS: dict[str, Callable] = {}


def _exporter(*ops):
    def deco(fn):
        for op in ops:
            EXPORTERS[op] = fn
        return fn
    return deco


def _conv_pads(s: _Slot, kh, kw, dh, dw):
    pad = s.val("pad")
    if isinstance(pad, str):
        return dh * (kh - 1) // 2, dw * (kw - 1) // 2
    ph, pw = _pair(pad)
    return _int(ph), _int(pw)


@_exporter("conv", "dwconv")
def _ex_conv(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    cin = s.in_shapes[0][0]
    kh, kw = s.pair("kernel")
    sh, sw = s.pair("stride")
    dh, dw = s.pair("dilation")
    ph, pw = _conv_pads(s, kh, kw, dh, dw)
    if s.node.op == "dwconv":
        groups = cin
        cout = cin * s.ival("multiplier")
    else:
        groups = s.ival("groups")
        cout = s.ival("out")
    x = b.to4d(s.ins[0])
    inputs = [x, b.weight(f"{name}.weight", (cout, cin // groups, kh, kw), cin // groups * kh * kw)]
    if bool(_int(s.val("bias"))):
        inputs.append(b.small(f"{name}.bias", (cout,), 0.0, 0.01))
    b.node("Conv", inputs, out, name, kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
           dilations=[dh, dw], group=groups)
    b.rank[out] = 4


@_exporter("fc")
def _ex_fc(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    c, h, w = s.in_shapes[0]
    k = c * h * w
    n = s.ival("out")
    # always a Flatten, even of a 2-D tensor: the reader folds exactly this one into the fc
    flat = b.node("Flatten", [s.ins[0]], f"{name}.flatten", f"{name}.flatten", axis=1)
    inputs = [flat, b.weight(f"{name}.weight", (n, k), k)]
    if bool(_int(s.val("bias"))):
        inputs.append(b.small(f"{name}.bias", (n,), 0.0, 0.01))
    b.node("Gemm", inputs, out, name, transB=1)
    b.rank[out] = 2


def _onnx_pool_size(i, k, s, p, ceil):
    span = i + 2 * p - k
    return (-(-span // s) if ceil else span // s) + 1


@_exporter("maxpool", "avgpool")
def _ex_pool(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    kh, kw = s.pair("kernel")
    st = s.val("stride")
    sh, sw = (kh, kw) if st is None else s.pair("stride")
    ph, pw = s.pair("pad")
    ceil = bool(_int(s.val("ceil")))
    _, ih, iw = s.in_shapes[0]
    _, oh, ow = s.out_shape
    # ONNX's ceil_mode rounding lacks Caffe's clip ("the last window starts inside the input");
    # where the clip applies, Caffe's size is floor mode's, so write floor mode there
    onnx_ceil = (_onnx_pool_size(ih, kh, sh, ph, True), _onnx_pool_size(iw, kw, sw, pw, True))
    mode = 1 if ceil and onnx_ceil == (oh, ow) else 0
    op = "MaxPool" if s.node.op == "maxpool" else "AveragePool"
    b.node(op, [b.to4d(s.ins[0])], out, name, kernel_shape=[kh, kw], strides=[sh, sw], pads=[ph, pw, ph, pw],
           ceil_mode=mode)
    b.rank[out] = 4


@_exporter("globalpool")
def _ex_globalpool(b: _Builder, s: _Slot, out: str):
    op = "GlobalMaxPool" if s.val("mode") == "max" else "GlobalAveragePool"
    b.node(op, [b.to4d(s.ins[0])], out, s.node.name)
    b.rank[out] = 4


@_exporter("batchnorm")
def _ex_batchnorm(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    c = s.in_shapes[0][0]
    if bool(_int(s.val("affine"))):
        gamma, beta = b.small(f"{name}.scale", (c,), 1.0, 0.1), b.small(f"{name}.B", (c,), 0.0, 0.1)
    else:  # Caffe's BatchNorm: statistics only (the reader recognises scale 1, bias 0)
        gamma, beta = b.fixed(f"{name}.scale", (c,), 1.0), b.fixed(f"{name}.B", (c,), 0.0)
    mean = b.small(f"{name}.mean", (c,), 0.0, 0.1)
    var = b.param(f"{name}.var", (c,), lambda rng, shape: rng.uniform(0.5, 1.5, shape).astype(np.float32))
    b.node("BatchNormalization", [s.ins[0], gamma, beta, mean, var], out, name, epsilon=float(s.val("eps")))
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("scale")
def _ex_scale(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    c = s.in_shapes[0][0]
    gamma = b.small(f"{name}.gamma", (c, 1, 1), 1.0, 0.1)
    x = b.to4d(s.ins[0])
    if bool(_int(s.val("bias"))):
        beta = b.small(f"{name}.beta", (c, 1, 1), 0.0, 0.1)
        y = b.node("Mul", [x, gamma], f"{name}.mul", f"{name}.mul")
        b.node("Add", [y, beta], out, name)
    else:
        b.node("Mul", [x, gamma], out, name)
    b.rank[out] = 4


_UNARY = {"relu": ("Relu", {}), "sigmoid": ("Sigmoid", {}), "tanh": ("Tanh", {}),
          "hsigmoid": ("HardSigmoid", {"alpha": 1.0 / 6.0, "beta": 0.5}), "hswish": ("HardSwish", {}),
          "identity": ("Identity", {})}


@_exporter(*_UNARY)
def _ex_unary(b: _Builder, s: _Slot, out: str):
    op, attrs = _UNARY[s.node.op]
    b.node(op, [s.ins[0]], out, s.node.name, **attrs)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("relu6")
def _ex_relu6(b: _Builder, s: _Slot, out: str):
    lo = b.const("relu6_min", np.array(0.0, np.float32))
    hi = b.const("relu6_max", np.array(6.0, np.float32))
    b.node("Clip", [s.ins[0], lo, hi], out, s.node.name)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("swish")
def _ex_swish(b: _Builder, s: _Slot, out: str):
    name = s.node.name
    sig = b.node("Sigmoid", [s.ins[0]], f"{name}.sigmoid", f"{name}.sigmoid")
    b.node("Mul", [s.ins[0], sig], out, name)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("zero")
def _ex_zero(b: _Builder, s: _Slot, out: str):
    b.node("Mul", [s.ins[0], b.const("zero", np.array(0.0, np.float32))], out, s.node.name)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("lrn")
def _ex_lrn(b: _Builder, s: _Slot, out: str):
    b.node("LRN", [b.to4d(s.ins[0])], out, s.node.name, size=s.ival("size"), alpha=float(s.val("alpha")),
           beta=float(s.val("beta")), bias=float(s.val("k")))
    b.rank[out] = 4


@_exporter("dropout")
def _ex_dropout(b: _Builder, s: _Slot, out: str):
    ratio = float(s.val("ratio"))
    r = b.const(f"dropout_ratio_{ratio!r}".replace(".", "_"), np.array(ratio, np.float32))
    b.node("Dropout", [s.ins[0], r], out, s.node.name)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("softmax")
def _ex_softmax(b: _Builder, s: _Slot, out: str):
    b.node("Softmax", [s.ins[0]], out, s.node.name, axis=1)
    b.rank[out] = b.rank[s.ins[0]]


@_exporter("flatten")
def _ex_flatten(b: _Builder, s: _Slot, out: str):
    b.node("Flatten", [s.ins[0]], out, s.node.name, axis=1)
    b.rank[out] = 2


@_exporter("gelu")
def _ex_gelu(b: _Builder, s: _Slot, out: str):
    """The exact GELU as torch writes it for opset 17: x * 0.5 * (1 + erf(x / sqrt(2)))."""
    x, name = s.ins[0], s.node.name
    d = b.node("Div", [x, b.const("gelu_sqrt2", np.array(math.sqrt(2.0), np.float32))], f"{name}.div", f"{name}.div")
    e = b.node("Erf", [d], f"{name}.erf", f"{name}.erf")
    a = b.node("Add", [e, b.const("one", np.array(1.0, np.float32))], f"{name}.add", f"{name}.add")
    m = b.node("Mul", [x, a], f"{name}.mul", f"{name}.mul")
    b.node("Mul", [m, b.const("half", np.array(0.5, np.float32))], out, name)
    b.rank[out] = b.rank[x]


@_exporter("layernorm")
def _ex_layernorm(b: _Builder, s: _Slot, out: str):
    """LayerNorm over channels as a channels-last LayerNormalization between two transposes
    (how torch writes ConvNeXt's LayerNorm2d)."""
    x, name, c = b.to4d(s.ins[0]), s.node.name, s.in_shapes[0][0]
    if b.opset < 17:
        raise SpecError(f"layer `{name}` (layernorm) needs ONNX opset 17 or newer (LayerNormalization), "
                        f"but opset {b.opset} was asked for")
    t = b.node("Transpose", [x], f"{name}.nhwc", f"{name}.nhwc", perm=[0, 2, 3, 1])
    if s.val("affine"):
        ins = [t, b.fixed(f"{name}.weight", (c,), 1.0), b.small(f"{name}.bias", (c,), 0.0, 0.01)]
    else:
        ins = [t, b.const(f"ones_{c}", np.ones(c, np.float32))]
    ln = b.node("LayerNormalization", ins, f"{name}.ln", f"{name}.ln", axis=-1, epsilon=float(s.val("eps")))
    b.node("Transpose", [ln], out, name, perm=[0, 3, 1, 2])
    b.rank[out] = 4


@_exporter("shuffle")
def _ex_shuffle(b: _Builder, s: _Slot, out: str):
    """Channel shuffle as ShuffleNet's reshape [1, G, C/G, H, W], transpose, reshape back."""
    x, name = b.to4d(s.ins[0]), s.node.name
    c, h, w = s.in_shapes[0]
    g = s.ival("groups")
    five = b.const(f"shape_{g}_{c // g}_{h}_{w}", np.array([1, g, c // g, h, w], np.int64))
    four = b.const(f"shape_{c}_{h}_{w}", np.array([1, c, h, w], np.int64))
    r = b.node("Reshape", [x, five], f"{name}.split", f"{name}.split")
    t = b.node("Transpose", [r], f"{name}.swap", f"{name}.swap", perm=[0, 2, 1, 3, 4])
    b.node("Reshape", [t, four], out, name)
    b.rank[out] = 4


@_exporter("slice")
def _ex_slice(b: _Builder, s: _Slot, out: str):
    a, e = s.ival("start"), s.ival("end")
    starts = b.const(f"i64_{a}", np.array([a], np.int64))
    ends = b.const(f"i64_{e}", np.array([e], np.int64))
    axes = b.const("i64_1", np.array([1], np.int64))
    b.node("Slice", [s.ins[0], starts, ends, axes], out, s.node.name)
    b.rank[out] = b.rank.get(s.ins[0], 4)


def _same_rank(b: _Builder, ins: list) -> list:
    if len({b.rank.get(t, 4) for t in ins}) > 1:
        return [b.to4d(t) for t in ins]
    return list(ins)


@_exporter("add")
def _ex_add(b: _Builder, s: _Slot, out: str):
    ins = _same_rank(b, s.ins)
    b.node("Add" if len(ins) == 2 else "Sum", ins, out, s.node.name)
    b.rank[out] = b.rank.get(ins[0], 4)


@_exporter("mul")
def _ex_mul(b: _Builder, s: _Slot, out: str):
    ins = _same_rank(b, s.ins)
    name = s.node.name
    acc = ins[0]
    for i, t in enumerate(ins[1:], start=1):  # ONNX Mul is binary: a chain for more inputs
        last = i == len(ins) - 1
        acc = b.node("Mul", [acc, t], out if last else f"{name}.{i}", name if last else f"{name}.{i}")
    b.rank[out] = b.rank.get(ins[0], 4)


@_exporter("concat")
def _ex_concat(b: _Builder, s: _Slot, out: str):
    ins = _same_rank(b, s.ins)
    b.node("Concat", ins, out, s.node.name, axis=1)
    b.rank[out] = b.rank.get(ins[0], 4)


class _ShapeSink:
    """Records the lowering's output shape of every slot (the mask comes from ``ev.active``)."""

    def __init__(self):
        self.shapes: dict[int, tuple] = {}

    def __call__(self, ev, nid, node, act, ins, c, h, w, counts):
        self.shapes[nid] = (c, h, w)


def _as_model(model):
    if isinstance(model, dict):
        model = load_space_dict(model)
    elif isinstance(model, (str, os.PathLike)):
        model = load_model(model)
    if not isinstance(model, SearchSpace):
        raise SpecError(f"export_onnx() takes a model (augur_nas.load_model, space.decode(x)), not {type(model).__name__}")
    if model.n_genes and model.size != 1:
        raise SpecError(f"{model.name} is a search space with {model.size:,} candidates, not one model; "
                        f"export a candidate (space.decode(x)){where(model.source, None)}")
    return model


def _build(model, opset: int = 17, seed: int = 0, batch: int = 1) -> "_Export":
    """The checked ONNX graph of a concrete model, its weights (drawn when written) and the
    lowering's shape of every layer's output tensor; ``batch`` images per run (the input's first
    axis and the reshapes that name it)."""
    onnx = _onnx()
    model = _as_model(model)
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= latest:
        raise SpecError(f"the ONNX opset must be an integer in {MIN_OPSET}..{latest}, but got {opset!r}")
    prog = model.program
    X = np.zeros((1, model.n_genes), dtype=np.int64)
    sink = _ShapeSink()
    ev = walk(model, X, sink)
    b = _Builder(onnx, seed)
    b.opset = opset
    tensor: dict[int, str] = {-1: "input"}
    expected: dict[str, tuple] = {}
    shape_of = lambda j: (_int(ev.c[j]), _int(ev.h[j]), _int(ev.w[j]))  # noqa: E731
    for nid, node in enumerate(prog.nodes):
        act = ev.active(node)
        if not bool(np.all(act)):
            tensor[nid] = tensor[node.inputs[0]]  # an unused slot passes its first input through
            continue
        if node.op == "select":
            pos = ev.select_pos.get(nid)
            tensor[nid] = tensor[node.inputs[_int(pos)]]
            continue
        ex = EXPORTERS.get(node.op)
        if ex is None:
            raise UnsupportedOpError(f"layer `{node.name}` has op kind `{node.op}`, which the ONNX exporter does "
                                     f"not write{where(prog.source, node.keypath)}")
        out = node.name if node.name not in ("input",) else f"{node.name}.out"
        out_shape = sink.shapes.get(nid) or shape_of(nid)
        out_shape = tuple(_int(v) for v in out_shape)
        slot = _Slot(node, ev, [tensor[j] for j in node.inputs], [shape_of(j) for j in node.inputs], out_shape)
        ex(b, slot, out)
        tensor[nid] = out
        expected[out] = out_shape
    final = tensor[prog.output]
    if final == "input":
        final = b.node("Identity", ["input"], "output", "output")
        b.rank[final] = 4
    h = onnx.helper
    TP = onnx.TensorProto
    c0 = prog.in_channels
    ih, iw = _int(ev.h[-1]), _int(ev.w[-1])
    oc, oh, ow = shape_of(prog.output)
    out_dims = [batch, oc, oh, ow] if b.rank.get(final, 4) == 4 else [batch, oc * oh * ow]
    inputs = [h.make_tensor_value_info("input", TP.FLOAT, [batch, c0, ih, iw])]
    if batch != 1:
        _rebatch(onnx, b, batch)
    outputs = [h.make_tensor_value_info(final, TP.FLOAT, out_dims)]
    gname = model.name or "model"
    opsetid = h.make_opsetid("", opset)

    def make(graph):
        proto = h.make_model(graph, opset_imports=[opsetid], producer_name="augur-nas", producer_version=__version__)
        proto.ir_version = h.find_min_ir_version_for([opsetid])
        proto.doc_string = f"{model.name}: exported by augur-nas from {model.source} with random weights (seed {seed})"
        return proto

    # checked with the weights as typed graph inputs: the same graph, without copying the data
    weights_as_inputs = [h.make_tensor_value_info(n, TP.FLOAT, list(shape)) for n, shape, _ in b.params]
    _check_export(onnx, make(h.make_graph(b.nodes, gname, inputs + weights_as_inputs, outputs, initializer=b.inits)),
                  expected, model)
    proto = make(h.make_graph(b.nodes, gname, inputs, outputs, initializer=b.inits))
    return _Export(proto, b.params, seed, expected, model)


def _rebatch(onnx, b, batch: int) -> None:
    """Every Reshape's target shape, written for one image ([1, ...]), for ``batch`` images; the
    other ops (Conv, Gemm after a Flatten of axis 1, pools) take any batch as they are."""
    shapes = {n.input[1] for n in b.nodes if n.op_type == "Reshape"}
    for i, t in enumerate(b.inits):
        if t.name in shapes:
            arr = onnx.numpy_helper.to_array(t).copy()
            if arr.size and arr[0] == 1:
                arr[0] = batch
                b.inits[i] = onnx.numpy_helper.from_array(arr, t.name)


@dataclass
class _Export:
    proto: object  # the ModelProto without the weights
    params: list  # (name, shape, generator) of every weight, in file order
    seed: int
    expected: dict  # ONNX tensor name -> the lowering's (c, h, w)
    model: object

    @property
    def n_weights(self) -> int:
        return sum(int(np.prod(shape)) for _, shape, _ in self.params)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(message_cls, field: str) -> bytes:
    """The protobuf key of a length-delimited field (wire type 2)."""
    return _varint(message_cls.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


def _write_model(onnx, ex: _Export, fh) -> int:
    """Stream the model to ``fh``: the weights are drawn one tensor at a time and written as
    ``raw_data`` without passing through protobuf objects (a 500 MB VGG takes seconds, not a
    minute). The bytes are the ordinary protobuf encoding of the complete ModelProto."""
    TP, GP, MP = onnx.TensorProto, onnx.GraphProto, onnx.ModelProto
    proto = MP()
    proto.CopyFrom(ex.proto)
    graph_head = proto.graph.SerializeToString()
    proto.ClearField("graph")
    model_head = proto.SerializeToString()
    k_raw, k_init, k_graph = _key(TP, "raw_data"), _key(GP, "initializer"), _key(MP, "graph")
    entries = []  # (initializer prefix, tensor prefix, nbytes)
    for name, shape, _ in ex.params:
        t = TP()
        t.name = name
        t.data_type = TP.FLOAT
        t.dims.extend(shape)
        head = t.SerializeToString()
        nbytes = 4 * int(np.prod(shape))
        tensor_prefix = head + k_raw + _varint(nbytes)
        tensor_len = len(tensor_prefix) + nbytes
        entries.append((k_init + _varint(tensor_len), tensor_prefix, nbytes))
    graph_len = len(graph_head) + sum(len(a) + len(b) + n for a, b, n in entries)
    total = len(model_head) + len(k_graph) + len(_varint(graph_len)) + graph_len
    if total > _PROTOBUF_LIMIT:
        raise SpecError(f"{ex.model.name} has {ex.n_weights:,} weights ({total / 2**30:.1f} GiB), more than an ONNX "
                        f"file without external data holds (2 GiB){where(ex.model.source, None)}")
    fh.write(model_head + k_graph + _varint(graph_len) + graph_head)
    rng = np.random.default_rng(ex.seed)
    for (name, shape, gen), (init_prefix, tensor_prefix, nbytes) in zip(ex.params, entries):
        arr = np.ascontiguousarray(gen(rng, shape), dtype="<f4")
        assert arr.nbytes == nbytes, name
        fh.write(init_prefix + tensor_prefix)
        fh.write(memoryview(arr).cast("B"))
    return total


def _check_export(onnx, proto, expected: dict, model):
    src = where(model.source, None)
    try:
        onnx.checker.check_model(proto)
        inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        msg = " ".join(str(exc).split())
        raise SpecError(f"the ONNX graph of {model.name} fails onnx's checks: {msg}{src}") from None
    shapes = {vi.name: _dims(vi) for vi in list(inferred.graph.value_info) + list(inferred.graph.output)}
    for name, (c, hh, ww) in expected.items():
        dims = shapes.get(name)
        got = _chw(dims) if dims is not None else None
        if got != (c, hh, ww):
            raise ShapeError(f"layer `{name}` of {model.name} has output {c}x{hh}x{ww} in augur-nas, but ONNX infers "
                             f"{'x'.join(map(str, dims)) if dims else 'no shape'} for it; the model cannot be "
                             f"exported faithfully{src}")


def _dims(vi):
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)


def _chw(dims):
    """``(C, H, W)`` of an ONNX activation shape ``[1, C, H, W]`` or ``[1, N]`` (``None`` if unknown)."""
    if dims is None or any(d is None for d in dims[1:]):
        return None
    if len(dims) == 4:
        return tuple(dims[1:])
    if len(dims) == 2:
        return (dims[1], 1, 1)
    return None


def export_onnx(model, path, opset: int = 17, seed: int = 0, batch: int = 1) -> dict:
    """Write a concrete model as an ONNX file with random float32 weights (numpy RNG ``seed``),
    for ``batch`` images per run (the input is ``[batch, C, H, W]``; augur-nas reads back only
    batch-1 files, a batch-N file is for timing the runtime at that batch).

    ``model`` is a model (``load_model``, ``space.decode(x)``, a spec dict or a model file path).
    The graph is checked with ``onnx.checker`` and strict shape inference and every layer's
    inferred shape must equal the lowering's before anything is written; the file is written
    atomically (a temporary file in the same folder, then ``os.replace``). Returns
    ``{"path", "nodes", "initializers", "weights", "bytes", "opset"}``.
    """
    onnx = _onnx()
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or int(batch) < 1:
        raise SpecError(f"the batch of an exported model must be a positive whole number, not {batch!r}")
    ex = _build(model, opset=opset, seed=seed, batch=int(batch))
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise SpecError(f"cannot write {path}: the folder {folder} does not exist")
    try:
        with atomic_file(path) as fh:
            size = _write_model(onnx, ex, fh)
    except OSError as exc:
        raise SpecError(f"cannot write {path}: {exc.strerror or exc}") from None
    return {"path": path, "nodes": len(ex.proto.graph.node),
            "initializers": len(ex.proto.graph.initializer) + len(ex.params),
            "weights": ex.n_weights, "bytes": size, "opset": opset, "batch": int(batch)}


# =============================================================================================
# import
# =============================================================================================

# ops that compute nothing at inference: their output is their (first) input, or a constant
IGNORED = {
    "Constant": "a constant, read only for its value",
}
# ops folded away when every input is a constant or a static shape (shape bookkeeping, e.g. the
# Shape -> Gather -> Unsqueeze -> Concat feeding a Reshape that torch writes for x.view(n, -1))
FOLDABLE = {"Shape", "Size", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Mul", "Div", "Add",
            "Sub", "Reshape", "Identity", "ConstantOfShape", "Range", "ReduceProd", "Expand", "Transpose",
            "Floor", "Ceil", "Min", "Max", "Equal", "Where", "Neg", "Abs", "Sqrt"}


class _Unsupported(Exception):
    """A handler cannot express a node in the language (the reason is reported)."""


@dataclass(frozen=True)
class Handler:
    op_type: str
    fn: Callable  # (reader, node) -> None


HANDLERS: dict[str, Handler] = {}


def handles(*op_types):
    def deco(fn):
        for t in op_types:
            HANDLERS[t] = Handler(t, fn)
        return fn
    return deco


# ops that work per position: on a channels-last view their output is one too
_CL_OPS = {"conv", "layernorm", "gelu", "relu", "relu6", "swish", "hswish", "sigmoid", "tanh", "hsigmoid",
           "identity", "dropout"}


class _Reader:
    def __init__(self, onnx, proto, inferred, source: str):
        """``proto``: the model as read (for the initializers); ``inferred``: its light copy with
        ONNX's inferred shapes (see ``_load``)."""
        self.onnx = onnx
        self.source = source
        self.graph = inferred.graph
        self.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        g = self.graph
        self.inits = {t.name: t for t in proto.graph.initializer}
        self.inits.update({t.values.name: t for t in proto.graph.sparse_initializer})
        self.values: dict[str, np.ndarray] = {}
        self.shapes: dict[str, tuple] = {}
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            d = _dims(vi)
            if d is not None:
                self.shapes[vi.name] = d
        for t in self.inits.values():
            self.shapes[t.name if hasattr(t, "data_type") else t.values.name] = tuple(t.dims)
        self.nodes = list(g.node)  # held, so that node objects (and their ids) stay the same
        self.consumers: dict[str, list] = {}
        for n in self.nodes:
            for t in n.input:
                if t:
                    self.consumers.setdefault(t, []).append(n)
        self.graph_outputs = {o.name for o in g.output}
        self.static: set = set(self.inits)
        self.layer_of: dict[str, str] = {}  # tensor -> layer name
        self.poisoned: set = set()  # tensors downstream of an unsupported node
        self.fused: set = set()  # ids of nodes consumed by a pattern
        self.layers: list = []
        self.layer_tensor: dict[str, tuple] = {}  # layer name -> (ONNX tensor, node description)
        self.names: set = {"input", "data"}
        self.unsupported: list = []
        self.node_index: dict[int, int] = {id(n): i for i, n in enumerate(self.nodes)}
        self.flattened: dict[str, str] = {}  # Flatten output folded into an fc -> its input
        self.channels_last: set = set()  # tensors that are an NHWC view of a layer's NCHW output

    # -- helpers ------------------------------------------------------------------------------
    def value(self, name: str):
        """The value of a constant tensor (initializer or Constant output), else None."""
        if name in self.values:
            return self.values[name]
        t = self.inits.get(name)
        if t is None or not hasattr(t, "data_type"):  # absent, or a sparse tensor
            return None
        try:
            v = self.onnx.numpy_helper.to_array(t)
        except Exception:  # external data that is not there, odd dtypes: no value
            return None
        self.values[name] = v
        return v

    def shape(self, t: str) -> tuple:
        d = self.shapes.get(t)
        if d is None or any(x is None for x in d[1:]):
            raise _Unsupported(f"ONNX shape inference gives no complete shape for `{t}`")
        return d

    def chw(self, t: str) -> tuple:
        d = self.shape(t)
        got = _chw(d)
        if got is None:
            raise _Unsupported(f"`{t}` has shape {list(d)}, not [1, C, H, W] or [1, N]")
        return got

    def src(self, t: str) -> str:
        if t in self.layer_of:
            return self.layer_of[t]
        if t in self.static:
            raise _Unsupported(f"its input `{t}` is a constant, where the language needs a computed tensor")
        raise _Unsupported(f"its input `{t}` is produced by no node and is no graph input")

    def is_static(self, t: str) -> bool:
        return t in self.static

    def sole_consumer(self, t: str):
        users = self.consumers.get(t, [])
        if len(users) == 1 and t not in self.graph_outputs:
            return users[0]
        return None

    def layer_name(self, node, op_type: str) -> str:
        base = node.name.strip() if node.name and node.name.strip() else f"{op_type.lower()}_{len(self.layers)}"
        name, i = base, 1
        while name in self.names:
            i += 1
            name = f"{base}_{i}"
        self.names.add(name)
        return name

    def emit(self, node, op: str, params: dict, inputs: list, out: str | None = None):
        """Add a layer (``inputs`` are ONNX tensor names) whose output is ONNX tensor ``out``."""
        out = out if out is not None else node.output[0]
        srcs = [self.src(t) for t in inputs]
        name = self.layer_name(node, node.op_type)
        self.layers.append({op: {**params, "name": name, "inputs": srcs}})
        self.layer_of[out] = name
        if op in _CL_OPS and inputs and inputs[0] in self.channels_last:
            self.channels_last.add(out)  # a per-position op keeps the channels-last view
        self.layer_tensor[name] = (out, f"`{node.name or '(unnamed)'}` ({node.op_type})")
        return name

    def alias(self, out: str, inp: str):
        self.layer_of[out] = self.src(inp)

    def attrs(self, node) -> dict:
        return {a.name: self.onnx.helper.get_attribute_value(a) for a in node.attribute}

    def input_value(self, node, i: int, attr: str | None = None, default=None):
        """An op parameter given as a constant input ``i`` (newer opsets) or attribute ``attr``."""
        if len(node.input) > i and node.input[i]:
            v = self.value(node.input[i])
            if v is None:
                raise _Unsupported(f"its input `{node.input[i]}` must be a constant")
            return v
        if attr is not None:
            a = self.attrs(node)
            if attr in a:
                return np.asarray(a[attr])
        return default

    # -- the walk -------------------------------------------------------------------------------
    def read(self) -> dict:
        g = self.graph
        inputs = [vi for vi in g.input if vi.name not in self.inits]
        if len(inputs) != 1:
            names = ", ".join(f"`{vi.name}`" for vi in inputs) or "none"
            raise SpecError(f"an ONNX model for augur-nas has one input image, but this graph has {len(inputs)} "
                            f"inputs ({names}){where(self.source, None)}")
        inp = inputs[0]
        dims = _dims(inp)
        if dims is None or len(dims) != 4 or any(d is None for d in dims[1:]) or dims[0] not in (1, None):
            shown = "unknown" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
            raise SpecError(f"the input `{inp.name}` must have a fixed shape [1, C, H, W] (a symbolic batch is "
                            f"fine), but has shape {shown}{where(self.source, None)}")
        self.layer_of[inp.name] = "input"
        c, hh, ww = dims[1:]
        for idx, node in enumerate(self.nodes):
            if idx in self.fused:
                continue
            if node.domain not in ("", "ai.onnx"):
                self._unsupported(node, f"domain `{node.domain}` is not standard ONNX")
                continue
            if node.op_type == "Constant":
                self._constant(node)
                continue
            if node.op_type in FOLDABLE and self._foldable(node):
                self.static.update(o for o in node.output if o)
                continue
            h = HANDLERS.get(node.op_type)
            if h is None:
                self._unsupported(node, None)
                continue
            if any(t in self.poisoned for t in node.input if t):
                # downstream of an unsupported node (already reported): nothing to map it to
                self.poisoned.update(o for o in node.output if o)
                continue
            self._guard(node, lambda: h.fn(self, node))
        if self.unsupported:
            lines = "; ".join(f"`{n}` ({t})" + (f": {r}" if r else "") for n, t, r in self.unsupported)
            raise UnsupportedOpError(f"{len(self.unsupported)} ONNX node(s) cannot be expressed in the augur-nas language: "
                                     f"{lines} (supported op types: {', '.join(sorted(HANDLERS))}; ignored: "
                                     f"{', '.join(sorted(IGNORED))}){where(self.source, None)}")
        if not self.layers:
            raise SpecError(f"the ONNX graph has no layer the language models{where(self.source, None)}")
        res = int(hh) if hh == ww else [int(hh), int(ww)]
        return {"name": self._model_name(), "input": {"channels": int(c), "resolution": res}, "layers": self.layers}

    def _model_name(self) -> str:
        n = self.graph.name
        if n and n not in ("main_graph", "torch-jit-export", "torch_jit", "graph"):
            return n
        base = os.path.basename(self.source)
        return base.rsplit(".", 1)[0] if "." in base else base

    def _guard(self, node, fn):
        try:
            fn()
        except _Unsupported as exc:
            self._unsupported(node, str(exc))

    def _unsupported(self, node, reason):
        self.unsupported.append((node.name or f"(unnamed #{self.node_index[id(node)]})", node.op_type, reason))
        self.poisoned.update(o for o in node.output if o)

    def _constant(self, node):
        a = self.attrs(node)
        v = None
        if "value" in a:
            v = self.onnx.numpy_helper.to_array(a["value"])
        else:
            for k in ("value_float", "value_int"):
                if k in a:
                    v = np.asarray(a[k])
            for k in ("value_floats", "value_ints"):
                if k in a:
                    v = np.asarray(a[k])
        if v is not None:
            self.values[node.output[0]] = v
            self.shapes[node.output[0]] = tuple(v.shape)
        self.static.add(node.output[0])

    def _foldable(self, node) -> bool:
        if node.op_type in ("Shape", "Size"):
            d = self.shapes.get(node.input[0])
            return d is not None and all(x is not None for x in d[1:])
        ins = [t for t in node.input if t]
        if not ins or not all(t in self.static for t in ins):
            return False
        if node.op_type == "Identity":
            v = self.value(ins[0])
            if v is not None:
                self.values[node.output[0]] = v
        return True


def _norm_axis(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _hw(a: int, b: int):
    return a if a == b else [a, b]


def _spatial_attrs(r: _Reader, node, kh: int, kw: int, ih: int, iw: int, oh: int, ow: int):
    a = r.attrs(node)
    strides = list(a.get("strides", [1, 1]))
    dil = list(a.get("dilations", [1, 1]))
    if len(strides) != 2 or len(dil) != 2:
        raise _Unsupported("only 2-D (NCHW) convolution and pooling are modelled")
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else str(auto)
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        tot = [max((o - 1) * s + d * (k - 1) + 1 - i, 0)
               for o, s, d, k, i in zip((oh, ow), strides, dil, (kh, kw), (ih, iw))]
        lo = [t // 2 if auto == "SAME_UPPER" else t - t // 2 for t in tot]
        pads = lo + [t - l for t, l in zip(tot, lo)]
    elif auto == "VALID":
        pads = [0, 0, 0, 0]
    else:
        pads = list(a.get("pads", [0, 0, 0, 0]))
    if len(pads) != 4:
        raise _Unsupported(f"pads {pads} are not 2-D")
    return strides, dil, pads, a


@handles("Conv")
def _rd_conv(r: _Reader, node):
    if len(node.input) < 2 or not r.is_static(node.input[1]):
        raise _Unsupported("the weights must be a constant tensor")
    wshape = r.shape(node.input[1])
    if len(wshape) != 4:
        raise _Unsupported(f"weights of shape {list(wshape)}: only 2-D convolution is modelled")
    cin, ih, iw = r.chw(node.input[0])
    cout, oh, ow = r.chw(node.output[0])
    kh, kw = int(wshape[2]), int(wshape[3])
    strides, dil, pads, a = _spatial_attrs(r, node, kh, kw, ih, iw, oh, ow)
    if pads[0] != pads[2] or pads[1] != pads[3]:
        raise _Unsupported(f"asymmetric pads {pads}; the language pads both sides equally")
    group = int(a.get("group", 1))
    bias = len(node.input) > 2 and bool(node.input[2])
    common = {"kernel": _hw(kh, kw), "stride": _hw(*strides), "pad": _hw(pads[0], pads[1]),
              "dilation": _hw(*dil), "bias": bias}
    if group > 1 and group == cin and cout % cin == 0:
        r.emit(node, "dwconv", {**common, "multiplier": cout // cin}, [node.input[0]])
    else:
        r.emit(node, "conv", {"out": int(cout), **common, "groups": group}, [node.input[0]])


@handles("Gemm")
def _rd_gemm(r: _Reader, node):
    a = r.attrs(node)
    if a.get("transA", 0):
        raise _Unsupported("transA=1 (the activation must be the left operand)")
    if not r.is_static(node.input[1]):
        raise _Unsupported("the weight operand B must be a constant tensor")
    bshape = r.shape(node.input[1])
    if len(bshape) != 2:
        raise _Unsupported(f"weights of shape {list(bshape)}")
    out = int(bshape[0] if a.get("transB", 0) else bshape[1])
    bias = len(node.input) > 2 and bool(node.input[2])
    r.emit(node, "fc", {"out": out, "bias": bias}, [node.input[0]])


def _channels_last_linear(r: _Reader, node, out: int):
    """A MatMul (+ bias Add) over the channels of an NHWC view: a 1x1 convolution (ConvNeXt)."""
    user = r.sole_consumer(node.output[0])
    if user is not None and user.op_type == "Add":
        other = [t for t in user.input if t != node.output[0]]
        if len(other) == 1 and r.is_static(other[0]) and tuple(r.shapes.get(other[0], ())) in ((out,), (1, out)):
            r.fused.add(r.node_index[id(user)])
            r.emit(node, "conv", {"out": out, "kernel": 1, "bias": True, "width": False}, [node.input[0]],
                   out=user.output[0])
            return
    r.emit(node, "conv", {"out": out, "kernel": 1, "bias": False, "width": False}, [node.input[0]])


@handles("LayerNormalization")
def _rd_layernorm(r: _Reader, node):
    d = r.shape(node.input[0])
    axis = _norm_axis(int(r.attrs(node).get("axis", -1)), len(d))
    if node.input[0] not in r.channels_last or axis != len(d) - 1:
        raise _Unsupported("a LayerNormalization that is not over the channels of an NHWC view "
                           "(Transpose perm [0, 2, 3, 1] before it)")
    r.emit(node, "layernorm", _layernorm_params(r, node), [node.input[0]])


def _layernorm_params(r: _Reader, ln) -> dict:
    """A LayerNormalization with a bias input is affine (gamma and beta are parameters); one with
    only its required scale is not (torch writes no bias for ``elementwise_affine=False``, nor
    does our exporter). Values are not read: an untrained export has gamma 1 and beta 0 too."""
    affine = len(ln.input) > 2 and bool(ln.input[2])
    return {"affine": affine, "eps": float(r.attrs(ln).get("epsilon", 1e-5))}


@handles("MatMul")
def _rd_matmul(r: _Reader, node):
    if not r.is_static(node.input[1]):
        raise _Unsupported("the right operand must be a constant weight matrix")
    wshape = r.shape(node.input[1])
    xshape = r.shape(node.input[0])
    if node.input[0] in r.channels_last and len(wshape) == 2 and wshape[0] == xshape[-1]:
        _channels_last_linear(r, node, int(wshape[1]))
        return
    # the activation is [1, K], or a Flatten folded into this fc
    if len(wshape) != 2 or (len(xshape) != 2 and r.flattened.get(node.input[0]) is None):
        raise _Unsupported(f"a MatMul of shapes {list(xshape)} x {list(wshape)} is not a fully connected layer")
    out = int(wshape[1])
    user = r.sole_consumer(node.output[0])
    if user is not None and user.op_type == "Add":
        other = [t for t in user.input if t != node.output[0]]
        if len(other) == 1 and r.is_static(other[0]) and tuple(r.shapes.get(other[0], ())) in ((out,), (1, out)):
            r.fused.add(r.node_index[id(user)])
            r.emit(node, "fc", {"out": out, "bias": True}, [node.input[0]], out=user.output[0])
            return
    r.emit(node, "fc", {"out": out, "bias": False}, [node.input[0]])


def _pool_common(r: _Reader, node):
    a = r.attrs(node)
    k = list(a.get("kernel_shape", []))
    if len(k) != 2:
        raise _Unsupported(f"kernel_shape {k}: only 2-D pooling is modelled")
    if len(node.output) > 1 and node.output[1]:
        raise _Unsupported("the indices output of MaxPool is not modelled")
    c, ih, iw = r.chw(node.input[0])
    _, oh, ow = r.chw(node.output[0])
    kh, kw = int(k[0]), int(k[1])
    strides, dil, pads, a = _spatial_attrs(r, node, kh, kw, ih, iw, oh, ow)
    if dil != [1, 1]:
        raise _Unsupported(f"dilations {dil} on a pool")
    ceil = bool(a.get("ceil_mode", 0))
    if pads[0] != pads[2] or pads[1] != pads[3]:
        # floor mode with extra padding at the end = Caffe's ceil rounding (as the exporter writes)
        ok = all(0 < e - b < s for b, e, s in zip(pads[:2], pads[2:], strides) if e != b) and \
            all(e >= b for b, e in zip(pads[:2], pads[2:]))
        got = (_caffe_pool(ih, kh, strides[0], pads[0], True), _caffe_pool(iw, kw, strides[1], pads[1], True))
        if not ok or got != (oh, ow):
            raise _Unsupported(f"asymmetric pads {pads}; the language pads both sides equally")
        ceil = True
    return {"kernel": _hw(kh, kw), "stride": _hw(*strides), "pad": _hw(pads[0], pads[1]), "ceil": ceil}


def _caffe_pool(i, k, s, p, ceil):
    span = i + 2 * p - k
    o = (-(-span // s) if ceil else span // s) + 1
    if ceil and (o - 1) * s >= i + p:
        o -= 1
    return o


@handles("MaxPool")
def _rd_maxpool(r: _Reader, node):
    r.emit(node, "maxpool", _pool_common(r, node), [node.input[0]])


@handles("AveragePool")
def _rd_avgpool(r: _Reader, node):
    r.emit(node, "avgpool", _pool_common(r, node), [node.input[0]])


@handles("GlobalAveragePool", "GlobalMaxPool")
def _rd_globalpool(r: _Reader, node):
    if len(r.shape(node.input[0])) != 4:
        raise _Unsupported("only [1, C, H, W] inputs are modelled")
    r.emit(node, "globalpool", {"mode": "max" if node.op_type == "GlobalMaxPool" else "avg"}, [node.input[0]])


@handles("ReduceMean", "ReduceMax")
def _rd_reduce(r: _Reader, node):
    rank = len(r.shape(node.input[0]))
    axes = r.input_value(node, 1, "axes")
    if axes is None or rank != 4 or sorted(_norm_axis(int(x), rank) for x in np.asarray(axes).reshape(-1)) != [2, 3]:
        raise _Unsupported("only a reduction over H and W of [1, C, H, W] (a global pool) is modelled")
    r.emit(node, "globalpool", {"mode": "max" if node.op_type == "ReduceMax" else "avg"}, [node.input[0]])


@handles("BatchNormalization")
def _rd_batchnorm(r: _Reader, node):
    if any(o for o in node.output[1:]):
        raise _Unsupported("training-mode outputs (running mean / variance) are not modelled")
    a = r.attrs(node)
    gamma, beta = r.value(node.input[1]), r.value(node.input[2])
    affine = not (gamma is not None and beta is not None and np.all(gamma == 1) and np.all(beta == 0))
    r.emit(node, "batchnorm", {"affine": affine, "eps": float(a.get("epsilon", 1e-5))}, [node.input[0]])


@handles("Relu", "Tanh", "HardSwish", "Identity")
def _rd_unary(r: _Reader, node):
    # Identity is the language's free `identity` (a skip edge; joins see through it like ONNX)
    op = {"Relu": "relu", "Tanh": "tanh", "HardSwish": "hswish", "Identity": "identity"}[node.op_type]
    r.emit(node, op, {}, [node.input[0]])


def _gate_pattern(r: _Reader, node, op: str, fallback: str):
    """``Mul(x, f(x))`` -> ``op`` (one layer); else ``f`` alone is ``fallback``."""
    x = node.input[0]
    user = r.sole_consumer(node.output[0])
    if user is not None and user.op_type == "Mul" and sorted(user.input) == sorted([x, node.output[0]]):
        r.fused.add(r.node_index[id(user)])
        r.emit(node, op, {}, [x], out=user.output[0])
        return
    r.emit(node, fallback, {}, [x])


@handles("Sigmoid")
def _rd_sigmoid(r: _Reader, node):
    _gate_pattern(r, node, "swish", "sigmoid")


@handles("HardSigmoid")
def _rd_hardsigmoid(r: _Reader, node):
    a = r.attrs(node)
    alpha, beta = float(a.get("alpha", 0.2)), float(a.get("beta", 0.5))
    if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
        _gate_pattern(r, node, "hswish", "hsigmoid")
    else:
        r.emit(node, "hsigmoid", {}, [node.input[0]])


@handles("Clip")
def _rd_clip(r: _Reader, node):
    lo = r.input_value(node, 1, "min")
    hi = r.input_value(node, 2, "max")
    lo = None if lo is None else float(np.asarray(lo).reshape(-1)[0])
    hi = None if hi is None else float(np.asarray(hi).reshape(-1)[0])
    if lo == 0.0 and hi == 6.0:
        r.emit(node, "relu6", {}, [node.input[0]])
    elif lo == 0.0 and (hi is None or math.isinf(hi)):
        r.emit(node, "relu", {}, [node.input[0]])
    else:
        raise _Unsupported(f"Clip({lo}, {hi}): only Clip(0, 6) (relu6) and Clip(0, inf) (relu) are modelled")


@handles("LRN")
def _rd_lrn(r: _Reader, node):
    a = r.attrs(node)
    r.emit(node, "lrn", {"size": int(a["size"]), "alpha": float(a.get("alpha", 1e-4)),
                         "beta": float(a.get("beta", 0.75)), "k": float(a.get("bias", 1.0))}, [node.input[0]])


@handles("Dropout")
def _rd_dropout(r: _Reader, node):
    if len(node.output) > 1 and node.output[1] and node.output[1] in r.consumers:
        raise _Unsupported("its mask output is used")
    ratio = r.input_value(node, 1, "ratio", default=np.asarray(0.5))
    r.emit(node, "dropout", {"ratio": float(np.asarray(ratio).reshape(-1)[0])}, [node.input[0]])


@handles("Softmax")
def _rd_softmax(r: _Reader, node):
    d = r.shape(node.input[0])
    axis = _norm_axis(int(r.attrs(node).get("axis", -1 if r.opset >= 13 else 1)), len(d))
    rest = [x for i, x in enumerate(d) if i not in (0, axis)]
    if axis != 1 and any(x != 1 for x in rest):
        raise _Unsupported(f"Softmax along axis {axis} of shape {list(d)}: only along the channels is modelled")
    if r.opset < 13 and len(d) > 2 and any(x != 1 for x in d[2:]):
        raise _Unsupported("Softmax before opset 13 normalises over C*H*W together, which is not modelled")
    r.emit(node, "softmax", {}, [node.input[0]])


@handles("Flatten")
def _rd_flatten(r: _Reader, node):
    d_in, d_out = r.shape(node.input[0]), r.shape(node.output[0])
    if len(d_out) != 2 or d_out[0] not in (1, None) or d_out[1] != int(np.prod(d_in[1:])):
        raise _Unsupported(f"a Flatten from {list(d_in)} to {list(d_out)} does not keep the batch")
    user = r.sole_consumer(node.output[0])
    if user is not None and user.op_type in ("Gemm", "MatMul") and user.input[0] == node.output[0]:
        r.flattened[node.output[0]] = node.input[0]
        r.alias(node.output[0], node.input[0])  # part of the fc, which flattens its input
        return
    r.emit(node, "flatten", {}, [node.input[0]])


@handles("Reshape", "Squeeze", "Unsqueeze")
def _rd_reshape(r: _Reader, node):
    if node.op_type == "Reshape" and (_shuffle_pattern(r, node) or _as_strided_copy(r, node)):
        return
    d_in, d_out = r.shape(node.input[0]), r.shape(node.output[0])
    n_in = int(np.prod(d_in[1:]))
    if len(d_out) == 2 and d_out[1] == n_in:
        if len(d_in) == 2:
            r.alias(node.output[0], node.input[0])  # [1, N] -> [1, N]
            return
        user = r.sole_consumer(node.output[0])
        if user is not None and user.op_type in ("Gemm", "MatMul") and user.input[0] == node.output[0]:
            r.flattened[node.output[0]] = node.input[0]
            r.alias(node.output[0], node.input[0])
            return
        r.emit(node, "flatten", {}, [node.input[0]])
        return
    if len(d_out) == 4 and len(d_in) == 2 and d_out[1] == n_in and d_out[2] == d_out[3] == 1:
        r.alias(node.output[0], node.input[0])  # [1, N] -> [1, N, 1, 1]: the same (N, 1, 1) tensor
        return
    if list(d_out) == list(d_in):
        r.alias(node.output[0], node.input[0])
        return
    raise _Unsupported(f"a reshape from {list(d_in)} to {list(d_out)} is not a flatten")


def _consumer(r: _Reader, t: str, op_type: str):
    """The one node reading ``t``, if it is of ``op_type``."""
    user = r.sole_consumer(t)
    return user if user is not None and user.op_type == op_type else None


def _constant(r: _Reader, t: str) -> bool:
    """``t`` is a constant: an initializer, or the output of a Constant node (maybe one that comes
    later in the node list than the pattern being matched)."""
    if r.is_static(t):
        return True
    producers = r.__dict__.setdefault("_producers", {o: n for n in r.nodes for o in n.output})
    n = producers.get(t)
    return n is not None and n.op_type == "Constant"


def _as_strided_copy(r: _Reader, node) -> bool:
    """Reshape to 1-D, then Gather of every element in order back to the same shape: torch's
    exporter writes a contiguous ``as_strided`` so; it is the tensor itself."""
    d_in, d_out = r.shape(node.input[0]), r.shape(node.output[0])
    g = _consumer(r, node.output[0], "Gather")
    if len(d_out) != 1 or g is None or int(r.attrs(g).get("axis", 0)) != 0:
        return False
    idx = r.value(g.input[1])
    n = int(np.prod(d_in))
    if idx is None or tuple(idx.shape) != tuple(d_in) or not np.array_equal(idx.reshape(-1), np.arange(n)):
        return False
    r.fused.add(r.node_index[id(g)])
    r.alias(g.output[0], node.input[0])
    return True


def _ints(r: _Reader, node, i: int, attr: str):
    v = r.input_value(node, i, attr)
    return None if v is None else [int(x) for x in np.asarray(v).reshape(-1)]


def _shuffle_pattern(r: _Reader, node) -> bool:
    """Reshape [1,C,H,W] -> [1,G,C/G,H,W], Transpose(0,2,1,3,4), Reshape -> [1,C,H,W]: a shuffle."""
    d_in, d_out = r.shape(node.input[0]), r.shape(node.output[0])
    if len(d_in) != 4 or len(d_out) != 5 or d_out[1] * d_out[2] != d_in[1] or tuple(d_out[3:]) != tuple(d_in[2:]):
        return False
    tr = _consumer(r, node.output[0], "Transpose")
    if tr is None or list(r.attrs(tr).get("perm", [])) != [0, 2, 1, 3, 4]:
        return False
    back = _consumer(r, tr.output[0], "Reshape")
    if back is None or tuple(r.shape(back.output[0])) != tuple(d_in):
        return False
    r.fused.update(r.node_index[id(n)] for n in (tr, back))
    r.emit(node, "shuffle", {"groups": int(d_out[1])}, [node.input[0]], out=back.output[0])
    return True


@handles("Slice")
def _rd_slice(r: _Reader, node):
    d_in, d_out = r.shape(node.input[0]), r.shape(node.output[0])
    starts, ends = _ints(r, node, 1, "starts"), _ints(r, node, 2, "ends")
    axes = _ints(r, node, 3, "axes") or list(range(len(starts or [])))
    steps = _ints(r, node, 4, None) or [1] * len(axes)
    if starts is None or ends is None:
        raise _Unsupported("a Slice whose bounds are not constants")
    axes = [_norm_axis(a, len(d_in)) for a in axes]
    moved = [(a, s, e, st) for a, s, e, st in zip(axes, starts, ends, steps) if d_out[a] != d_in[a]]
    if len(d_in) != 4 or len(moved) != 1 or moved[0][0] != 1 or moved[0][3] != 1:
        raise _Unsupported(f"a Slice of {list(d_in)} to {list(d_out)}: only a contiguous range of channels "
                           f"(axis 1, step 1) is modelled")
    c = int(d_in[1])
    start = moved[0][1] + c if moved[0][1] < 0 else min(moved[0][1], c)
    r.emit(node, "slice", {"start": int(start), "end": int(start + d_out[1])}, [node.input[0]])


@handles("Split")
def _rd_split(r: _Reader, node):
    d_in = r.shape(node.input[0])
    axis = _norm_axis(int(r.attrs(node).get("axis", 0)), len(d_in))
    if len(d_in) != 4 or axis != 1:
        raise _Unsupported(f"a Split along axis {axis}: only along the channels (axis 1) is modelled")
    start = 0
    for out in node.output:
        size = int(r.shape(out)[1])
        if out:
            r.emit(node, "slice", {"start": start, "end": start + size}, [node.input[0]], out=out)
        start += size


@handles("Gelu")
def _rd_gelu(r: _Reader, node):
    r.emit(node, "gelu", {}, [node.input[0]])


def _gelu_pattern(r: _Reader, node) -> bool:
    """Div(x, sqrt 2) -> Erf -> Add 1 -> Mul x -> Mul 0.5 (either Mul first): one exact GELU."""
    x = node.input[0]
    v = r.value(node.input[1]) if len(node.input) > 1 else None
    if v is None or v.size != 1 or abs(float(v.reshape(-1)[0]) - math.sqrt(2.0)) > 1e-3:
        return False
    erf = _consumer(r, node.output[0], "Erf")
    add = erf is not None and _consumer(r, erf.output[0], "Add")
    if not add:
        return False
    m1 = _consumer(r, add.output[0], "Mul")
    m2 = m1 is not None and _consumer(r, m1.output[0], "Mul")
    if not m2:
        return False
    others = [t for t in list(m1.input) + list(m2.input) if t not in (add.output[0], m1.output[0])]
    halves = [t for t in others if _constant(r, t)]
    if sorted(t for t in others if not _constant(r, t)) != [x] or len(halves) != 1:
        return False
    r.fused.update(r.node_index[id(n)] for n in (erf, add, m1, m2))
    r.emit(node, "gelu", {}, [x], out=m2.output[0])
    return True


@handles("Div")
def _rd_div(r: _Reader, node):
    if not _gelu_pattern(r, node):
        raise _Unsupported("a Div of computed tensors (only the division inside an exact GELU is modelled)")


@handles("Transpose")
def _rd_transpose(r: _Reader, node):
    """Transpose(0,2,3,1) of an NCHW tensor is its NHWC view, Transpose(0,3,1,2) of a view is the
    tensor again; a view between them is read per position (LayerNorm over the last axis, MatMul
    over the channels as a 1x1 conv: ConvNeXt). Our own LayerNorm export is the shortest case."""
    perm = list(r.attrs(node).get("perm", []))
    x = node.input[0]
    if perm == [0, 2, 3, 1] and x not in r.channels_last and len(r.shape(x)) == 4:
        ln = _consumer(r, node.output[0], "LayerNormalization")
        back = ln is not None and _consumer(r, ln.output[0], "Transpose")
        if back and list(r.attrs(back).get("perm", [])) == [0, 3, 1, 2] and \
                _norm_axis(int(r.attrs(ln).get("axis", -1)), 4) == 3:
            r.fused.update(r.node_index[id(n)] for n in (ln, back))
            r.emit(node, "layernorm", _layernorm_params(r, ln), [x], out=back.output[0])
            return
        r.alias(node.output[0], x)
        r.channels_last.add(node.output[0])
        return
    if perm == [0, 3, 1, 2] and x in r.channels_last:
        r.alias(node.output[0], x)
        return
    raise _Unsupported(f"a Transpose with perm {perm} (only a channel shuffle's transpose and NHWC views "
                       f"of NCHW tensors are modelled)")


def _per_channel(shape: tuple, c: int, rank: int) -> bool:
    shape = tuple(int(x) for x in shape)
    if rank == 4:
        return shape in ((c, 1, 1), (1, c, 1, 1))
    return shape in ((c,), (1, c))


@handles("Mul")
def _rd_mul(r: _Reader, node):
    a, b = node.input[0], node.input[1]
    if r.is_static(a) and not r.is_static(b):
        a, b = b, a
    if r.is_static(b):
        v = r.value(b)
        if v is not None and v.size and np.all(v == 0):
            r.emit(node, "zero", {}, [a])
            return
        c = r.chw(a)[0]
        rank = len(r.shape(a))
        if _per_channel(r.shape(b), c, rank):
            user = r.sole_consumer(node.output[0])
            if user is not None and user.op_type == "Add":
                other = [t for t in user.input if t != node.output[0]]
                if len(other) == 1 and r.is_static(other[0]) and _per_channel(r.shapes.get(other[0], ()), c, rank):
                    r.fused.add(r.node_index[id(user)])
                    r.emit(node, "scale", {"bias": True}, [a], out=user.output[0])
                    return
            r.emit(node, "scale", {"bias": False}, [a])
            return
        raise _Unsupported(f"a Mul by a constant of shape {list(r.shape(b))} (only per-channel [C,1,1] "
                           f"scales and a scalar 0 are modelled)")
    # two computed tensors: the full-size one first ([C,H,W] * [C,1,1] broadcasts, squeeze-excite)
    ins = sorted([a, b], key=lambda t: -int(np.prod(r.chw(t))))
    r.emit(node, "mul", {}, ins)


@handles("Add", "Sum")
def _rd_add(r: _Reader, node):
    ins = [t for t in node.input if t]
    consts = [t for t in ins if r.is_static(t)]
    if consts:
        raise _Unsupported(f"an {node.op_type} of the constant `{consts[0]}` (a bias without a per-channel "
                           f"scale before it is not modelled)")
    if len(ins) == 1:
        r.alias(node.output[0], ins[0])
        return
    # a [C,1,1] operand broadcast over [C,H,W]: the full-size one first
    ins = sorted(ins, key=lambda t: -int(np.prod(r.chw(t))))
    r.emit(node, "add", {}, ins)


@handles("Concat")
def _rd_concat(r: _Reader, node):
    d = r.shape(node.output[0])
    axis = _norm_axis(int(r.attrs(node).get("axis", 1)), len(d))
    if axis != 1:
        raise _Unsupported(f"Concat along axis {axis}: only along the channels (axis 1) is modelled")
    ins = [t for t in node.input if t]
    if len(ins) == 1:
        r.alias(node.output[0], ins[0])
        return
    r.emit(node, "concat", {}, ins)


# initializers with more elements are checked and shape-inferred as typed graph inputs (their
# values are never needed; this keeps reading a 500 MB VGG at a second or two)
_BIG_INITIALIZER = 1 << 16


def _light(onnx, proto):
    """The model without its big initializers' data: they become typed graph inputs."""
    light = onnx.ModelProto()
    for f in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(light, f, getattr(proto, f))
    light.opset_import.extend(proto.opset_import)
    light.functions.extend(proto.functions)
    g, lg = proto.graph, light.graph
    lg.name = g.name
    lg.node.extend(g.node)
    lg.input.extend(g.input)
    lg.output.extend(g.output)
    lg.value_info.extend(g.value_info)
    lg.sparse_initializer.extend(g.sparse_initializer)
    listed = {vi.name for vi in g.input}
    for t in g.initializer:
        if math.prod(t.dims) <= _BIG_INITIALIZER:
            lg.initializer.append(t)
        elif t.name not in listed:
            lg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
    return light


def _set_input_shape(graph, shape, source: str):
    """Fix the image input's dims to ``shape`` (N, C, H, W), for models exported with dynamic axes."""
    inits = {t.name for t in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]
    if len(inputs) != 1:
        return  # read() reports the input count
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) not in (0, len(shape)):
        raise SpecError(f"the input `{inputs[0].name}` has {len(dims)} dims, but the input shape given is "
                        f"{'x'.join(map(str, shape))}{where(source, None)}")
    if not dims:
        for _ in shape:
            dims.add()
    for d, v in zip(dims, shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)


def _load(onnx, source: str, input_shape=None):
    """``(model as read, its light copy with inferred shapes)``; every problem is a SpecError.
    ``input_shape`` (N, C, H, W) fixes a dynamic input before shapes are inferred."""
    try:
        size = os.path.getsize(source)
    except OSError as exc:
        raise SpecError(f"cannot read ONNX file: {exc.strerror or exc}{where(source, None)}") from None
    if size == 0:
        raise SpecError(f"the ONNX file is empty{where(source, None)}")
    try:
        proto = onnx.load(source)
    except Exception as exc:  # protobuf DecodeError, truncated or foreign files, missing external data
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise SpecError(f"the file is not a readable ONNX model ({msg}); it may be truncated or not ONNX at all"
                        f"{where(source, None)}") from None
    if not proto.graph.node:
        raise SpecError(f"the file holds no ONNX graph (no nodes); it may be truncated or not ONNX at all"
                        f"{where(source, None)}")
    if input_shape is not None:
        _set_input_shape(proto.graph, input_shape, source)
    light = _light(onnx, proto)
    try:
        onnx.checker.check_model(light)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        if len(msg) > 400:
            msg = msg[:400] + " ..."
        raise SpecError(f"the ONNX model is invalid ({msg}); the file may be truncated or damaged"
                        f"{where(source, None)}") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(light, data_prop=True)
    except Exception as exc:
        msg = " ".join(str(exc).split())
        raise SpecError(f"ONNX shape inference fails on the model ({msg}){where(source, None)}") from None
    return proto, inferred


def read_onnx(path, input_shape=None) -> dict:
    """Read an ONNX model into a model dict of the augur-nas language (``docs/language.md``).

    Raises ``SpecError`` for unreadable, truncated or invalid files, ``UnsupportedOpError``
    naming every node the language cannot express, ``ShapeError`` where the lowering's shapes
    would differ from ONNX's.  ``input_shape`` (N, C, H, W) fixes an input with dynamic axes.
    """
    onnx = _onnx()
    source = os.fspath(path)
    proto, inferred = _load(onnx, source, input_shape)
    r = _Reader(onnx, proto, inferred, source)
    spec = r.read()
    _check_read(spec, r, source)
    return spec


def _check_read(spec: dict, r: _Reader, source: str):
    """The lowering's output shape of every layer must equal ONNX's inferred shape."""
    model = load_space_dict(spec, source=source)
    sink = _ShapeSink()
    walk(model, np.zeros((1, model.n_genes), dtype=np.int64), sink)
    for nid, node in enumerate(model.program.nodes):
        ours = sink.shapes.get(nid)
        tinfo = r.layer_tensor.get(node.name)
        if ours is None or tinfo is None:
            continue
        tensor, what = tinfo
        dims = r.shapes.get(tensor)
        if tensor in r.channels_last and dims is not None and len(dims) == 4:
            dims = (dims[0], dims[3], dims[1], dims[2])  # an NHWC view: compare as NCHW
        theirs = _chw(dims)
        ours = tuple(_int(v) for v in ours)
        if theirs is not None and theirs != ours:
            raise ShapeError(f"layer `{node.name}` (from ONNX node {what}) has output {'x'.join(map(str, ours))} in "
                             f"augur-nas, but {'x'.join(map(str, theirs))} in ONNX{where(source, None)}")


def _read_model_file(path, input_shape=None) -> dict:
    return read_onnx(path, input_shape=input_shape)


# models.load_model reads .onnx files through this reader: models.py does not import this module
# (which imports models.py to load the models it exports); the package's __init__ imports it
register_reader(".onnx", _read_model_file)
