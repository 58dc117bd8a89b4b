"""An ONNX graph run by PyTorch: a small interpreter of the ops augur-nas exports.

``OnnxTorch(path)`` reads the graph with ``onnx`` and evaluates its nodes in order with
``torch.nn.functional`` (weights become buffers). It covers what ``export_onnx`` writes (and the
usual CNN ops of other exporters); anything else is a ``MeasurementError`` naming the op.
"""

from __future__ import annotations

import numpy as np

from .._errors import MeasurementError
from .._imports import optional

# this module is imported only when the torch backend runs (measure/_runners.TorchRunner)
torch = optional("torch", "the torch backend", MeasurementError)
F = optional("torch.nn.functional", "the torch backend", MeasurementError)
onnx = optional("onnx", "the torch backend", MeasurementError)
helper = optional("onnx.helper", "the torch backend", MeasurementError)
numpy_helper = optional("onnx.numpy_helper", "the torch backend", MeasurementError)


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _pads2d(a: dict, x, kernel):
    pads = list(a.get("pads", [0, 0, 0, 0]))
    auto = a.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("SAME_UPPER", "SAME_LOWER"):
        strides = a.get("strides", [1, 1])
        dil = a.get("dilations", [1, 1])
        pads = [0, 0, 0, 0]
        for i in range(2):
            size = x.shape[2 + i]
            out = -(-size // strides[i])
            total = max((out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - size, 0)
            lo = total // 2 if auto == "SAME_UPPER" else total - total // 2
            pads[i], pads[2 + i] = lo, total - lo
    return pads


def _sym(x, pads, value=0.0):
    """Symmetric padding for torch, or pad the input explicitly."""
    if pads[0] == pads[2] and pads[1] == pads[3]:
        return x, (pads[0], pads[1])
    return F.pad(x, (pads[1], pads[3], pads[0], pads[2]), value=value), (0, 0)


class OnnxTorch(torch.nn.Module):
    def __init__(self, path: str):
        super().__init__()
        model = onnx.load(path)
        g = model.graph
        self._consts = {}
        for i, init in enumerate(g.initializer):
            arr = numpy_helper.to_array(init)
            # float tensors of one dimension or more are buffers, so that .to(device) moves them (a CUDA
            # op refuses a CPU operand unless it is 0-dim); integer ones are shapes and indices, read on the CPU
            if arr.dtype == np.float32 and arr.ndim >= 1:
                name = f"w{i}"
                self.register_buffer(name, torch.from_numpy(arr.copy()))
                self._consts[init.name] = name
            else:
                self._consts[init.name] = torch.from_numpy(np.array(arr))
        inits = {i.name for i in g.initializer}
        inputs = [i for i in g.input if i.name not in inits]
        if len(inputs) != 1:
            raise MeasurementError(f"{path}: the torch backend runs graphs with one input, this one has {len(inputs)}")
        self.input_name = inputs[0].name
        dims = inputs[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.dim_value > 0 else 1 for d in dims)
        self.output_names = [o.name for o in g.output]
        self.nodes = []
        for n in g.node:
            fn = _OPS.get(n.op_type)
            if fn is None and n.op_type != "Constant":
                raise MeasurementError(f"{path}: the torch backend does not run ONNX op `{n.op_type}` (node {n.name})")
            if n.op_type == "Constant":
                val = numpy_helper.to_array(_attrs(n)["value"])
                self._consts[n.output[0]] = torch.from_numpy(np.array(val))
                continue
            self.nodes.append((fn, list(n.input), list(n.output), _attrs(n)))

    def _get(self, env, name):
        if name == "":
            return None
        if name in env:
            return env[name]
        c = self._consts[name]
        return getattr(self, c) if isinstance(c, str) else c

    def forward(self, x):
        env = {self.input_name: x}
        for fn, ins, outs, a in self.nodes:
            vals = [self._get(env, i) for i in ins]
            r = fn(a, *vals)
            if isinstance(r, tuple):  # Split: one tensor per output
                env.update(zip(outs, r))
            else:
                env[outs[0]] = r
        out = [env[o] for o in self.output_names]
        return out[0] if len(out) == 1 else out


def _conv(a, x, w, b=None):
    kernel = list(w.shape[2:])
    pads = _pads2d(a, x, kernel)
    x, pad = _sym(x, pads)
    return F.conv2d(x, w, b, stride=tuple(a.get("strides", [1, 1])), padding=pad,
                    dilation=tuple(a.get("dilations", [1, 1])), groups=int(a.get("group", 1)))


def _bn(a, x, scale, bias, mean, var):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=float(a.get("epsilon", 1e-5)))


def _pool(kind):
    def fn(a, x):
        k = list(a["kernel_shape"])
        pads = _pads2d(a, x, k)
        ceil = bool(a.get("ceil_mode", 0))
        strides = tuple(a.get("strides", [1, 1]))
        if kind == "max":
            x2, pad = _sym(x, pads, value=float("-inf"))
            return F.max_pool2d(x2, k, strides, pad, ceil_mode=ceil)
        include = bool(a.get("count_include_pad", 0))
        x2, pad = _sym(x, pads)
        return F.avg_pool2d(x2, k, strides, pad, ceil_mode=ceil, count_include_pad=include)
    return fn


def _clip(a, x, lo=None, hi=None):
    lo = float(lo) if lo is not None else a.get("min")
    hi = float(hi) if hi is not None else a.get("max")
    return torch.clamp(x, lo, hi)


def _gemm(a, x, w, c=None):
    if a.get("transA", 0):
        x = x.t()
    if not a.get("transB", 0):
        w = w.t()
    y = F.linear(x, w) * float(a.get("alpha", 1.0))
    if c is not None:
        y = y + float(a.get("beta", 1.0)) * c
    return y


def _flatten(a, x):
    axis = int(a.get("axis", 1))
    return x.reshape(int(np.prod(x.shape[:axis])) if axis else 1, -1)


def _reshape(a, x, shape):
    shape = [int(s) for s in shape.tolist()]
    shape = [x.shape[i] if s == 0 else s for i, s in enumerate(shape)]
    return x.reshape(shape)


def _lrn(a, x):
    return F.local_response_norm(x, int(a["size"]), float(a.get("alpha", 1e-4)), float(a.get("beta", 0.75)),
                                 float(a.get("bias", 1.0)))


def _hardsigmoid(a, x):
    return torch.clamp(float(a.get("alpha", 0.2)) * x + float(a.get("beta", 0.5)), 0.0, 1.0)


def _sum(a, *xs):
    y = xs[0]
    for v in xs[1:]:
        y = y + v
    return y


def _layernorm(a, x, scale, bias=None):
    axis = int(a.get("axis", -1))
    axis = axis + x.dim() if axis < 0 else axis
    return F.layer_norm(x, tuple(x.shape[axis:]), scale, bias, float(a.get("epsilon", 1e-5)))


def _slice(a, x, starts, ends, axes=None, steps=None):
    axes = axes.tolist() if axes is not None else list(range(len(starts)))
    steps = steps.tolist() if steps is not None else [1] * len(axes)
    idx = [slice(None)] * x.dim()
    for ax, s, e, st in zip(axes, starts.tolist(), ends.tolist(), steps):
        idx[int(ax)] = slice(int(s), int(min(e, x.shape[int(ax)])), int(st))
    return x[tuple(idx)]


def _split(a, x, split=None):
    axis = int(a.get("axis", 0))
    sizes = split.tolist() if split is not None else a.get("split")
    if sizes is None:
        n = int(a["num_outputs"])
        step = -(-x.shape[axis] // n)
        sizes = [min(step, x.shape[axis] - i) for i in range(0, x.shape[axis], step)]
    return tuple(torch.split(x, [int(v) for v in sizes], dim=axis))


_OPS = {
    "Conv": _conv,
    "BatchNormalization": _bn,
    "Relu": lambda a, x: F.relu(x),
    "Clip": _clip,
    "Sigmoid": lambda a, x: torch.sigmoid(x),
    "Tanh": lambda a, x: torch.tanh(x),
    "HardSigmoid": _hardsigmoid,
    "HardSwish": lambda a, x: F.hardswish(x),
    "LeakyRelu": lambda a, x: F.leaky_relu(x, float(a.get("alpha", 0.01))),
    "Add": lambda a, x, y: x + y,
    "Sum": _sum,
    "Mul": lambda a, x, y: x * y,
    "Sub": lambda a, x, y: x - y,
    "Div": lambda a, x, y: x / y,
    "Concat": lambda a, *xs: torch.cat(xs, dim=int(a.get("axis", 1))),
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda a, x: x.mean(dim=(2, 3), keepdim=True),
    "GlobalMaxPool": lambda a, x: x.amax(dim=(2, 3), keepdim=True),
    "ReduceMean": lambda a, x, axes=None: x.mean(dim=tuple(int(v) for v in (axes.tolist() if axes is not None else a["axes"])),
                                                 keepdim=bool(a.get("keepdims", 1))),
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Gemm": _gemm,
    "MatMul": lambda a, x, w: x @ w,
    "Softmax": lambda a, x: F.softmax(x, dim=int(a.get("axis", -1))),
    "LRN": _lrn,
    "Identity": lambda a, x: x,
    "Dropout": lambda a, x, *rest: x,
    "Erf": lambda a, x: torch.erf(x),
    "Gelu": lambda a, x: F.gelu(x),
    "Transpose": lambda a, x: x.permute(*[int(p) for p in a["perm"]]).contiguous(),
    "LayerNormalization": _layernorm,
    "Slice": _slice,
    "Split": _split,
}
