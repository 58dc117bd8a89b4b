"""Import a PyTorch ``nn.Module`` as a model dict of the augur-nas language.

``torch_to_spec(module, input_shape)`` traces the module with ``torch.fx`` symbolic tracing, runs
the traced graph once on zeros of ``input_shape`` to learn every tensor's shape, and maps each
graph node to a layer of the language (docs/language.md). Modules are mapped by their *exact*
class (a subclass of ``nn.Conv2d`` with its own ``forward`` is traced through instead), functions
by identity and tensor methods by name. Every node is either mapped, recognised as shape
bookkeeping (``x.size(0)``, ``x.shape[0]``, arithmetic on those), or reported: nothing is dropped
silently. Every emitted layer carries an explicit ``name`` and explicit ``inputs``.

torch is imported lazily (``_imports.optional``), so augur-nas works without it (``pip install 'augur-nas[torch]'``).
"""

from __future__ import annotations

import math
import operator
import re
from typing import Any, Callable

from .._errors import AugurError, ShapeError, SpecError, UnsupportedOpError
from .._imports import optional
from ._torch_views import ViewTracker

__all__ = ["torch_to_spec"]

# An entry of a handler's result: (op, params). ``params`` excludes ``name`` and ``inputs``.
_Entry = tuple


def torch_to_spec(module: Any, input_shape: Any, name: str | None = None) -> dict:
    """Describe a ``torch.nn.Module`` as a model dict of the augur-nas language.

    ``input_shape`` is ``(N, C, H, W)`` with ``N == 1``. ``name`` defaults to the module's class
    name. Raises ``UnsupportedOpError`` for tracing failures and ops the language cannot express,
    ``SpecError`` for bad arguments or a module that fails on an input of ``input_shape``, and
    ``AugurError`` when torch is not installed.
    """
    torch = optional("torch", "importing a torch module")
    optional("torch.fx", "importing a torch module")
    if not isinstance(module, torch.nn.Module):
        raise SpecError(
            f"torch_to_spec expects a torch.nn.Module, got {type(module).__name__}; pass the model "
            "object itself (not its state_dict or class)."
        )
    cls = type(module).__name__
    shape = _check_input_shape(input_shape, cls)
    if name is None:
        name = cls
    elif not isinstance(name, str) or not name:
        raise SpecError(f"torch module {cls}: the model name must be a non-empty string, got {name!r}.")

    gm = _trace(torch, module, cls)
    conv = _Converter(torch, gm, cls)
    conv.check_supported()
    conv.propagate(shape, module)
    layers = conv.convert()
    return {
        "name": name,
        "input": {"channels": shape[1], "resolution": [shape[2], shape[3]]},
        "layers": layers,
    }


# --------------------------------------------------------------------------------------------
# helpers


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _check_input_shape(input_shape: Any, cls: str) -> tuple[int, int, int, int]:
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = None
    if (
        dims is None
        or len(dims) != 4
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dims)
    ):
        raise SpecError(
            f"torch module {cls}: input_shape must be four positive integers (N, C, H, W), "
            f"got {input_shape!r}."
        )
    if dims[0] != 1:
        raise SpecError(
            f"torch module {cls}: input_shape {dims!r} has batch size {dims[0]}; only N = 1 is "
            "supported for now (the model language describes one image)."
        )
    return dims  # type: ignore[return-value]


def _trace(torch: Any, module: Any, cls: str) -> Any:
    try:
        return torch.fx.symbolic_trace(module)
    except Exception as exc:  # tracing raises anything the user's forward raises
        raise UnsupportedOpError(
            f"cannot import torch module {cls}: torch.fx symbolic tracing failed ({_first_line(exc)}). "
            "Models whose forward branches on tensor values, or calls untraceable code, cannot be "
            "imported; make the forward traceable or describe the model in YAML."
        ) from None


def _pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        return int(v[0]), int(v[1])
    return int(v), int(v)


def _compact(pair: tuple[int, int]) -> int | list[int]:
    return pair[0] if pair[0] == pair[1] else [pair[0], pair[1]]


def _qualname(target: Any) -> str:
    if isinstance(target, str):
        return target
    mod = getattr(target, "__module__", None) or ""
    qn = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or repr(target)
    if mod == "_operator" or mod == "builtins":
        mod = "operator" if mod == "_operator" else ""
    if "<locals>" in qn:  # torch's boolean_dispatch wrappers (F.max_pool2d)
        qn = getattr(target, "__name__", qn)
    return f"{mod}.{qn}" if mod else qn


def _module_class_name(mod: Any) -> str:
    t = type(mod)
    m = t.__module__
    if m.startswith("torch.nn.modules."):
        return f"torch.nn.{t.__qualname__}"
    return f"{m}.{t.__qualname__}"


def _bind(node: Any, names: list[str], defaults: dict[str, Any]) -> dict[str, Any]:
    """Map a call node's positional and keyword arguments onto parameter names."""
    out = dict(defaults)
    for i, a in enumerate(node.args):
        if i < len(names):
            out[names[i]] = a
        else:
            out.setdefault("*", []).append(a)
    out.update(node.kwargs)
    return out


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil: bool) -> int:
    """The language's spatial output size (docs/language.md), Caffe's ceil rule included."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil else num // s) + 1
    if ceil and (out - 1) * s >= size + p:
        out -= 1
    return out


class _Unsupported(Exception):
    """Internal: a node the language cannot express; carries the reason."""


# --------------------------------------------------------------------------------------------
# the converter


class _Converter:
    def __init__(self, torch: Any, gm: Any, cls: str) -> None:
        self.torch = torch
        self.gm = gm
        self.cls = cls
        self.nodes = list(gm.graph.nodes)
        self.modules = dict(gm.named_modules())
        self.shape: dict[Any, tuple[int, ...]] = {}   # node -> tensor shape (tensor nodes only)
        self.layer_of: dict[Any, str] = {}            # tensor node -> name of the layer holding it
        self.used_names: set[str] = {"input"}
        self.layers: list[dict] = []
        self._build_registries()
        self.views = ViewTracker(self)

    # ---- registries -----------------------------------------------------------------------

    def _build_registries(self) -> None:
        torch = self.torch
        nn, F = torch.nn, torch.nn.functional
        self.module_handlers: dict[type, Callable] = {
            nn.Conv2d: self._m_conv,
            nn.Linear: self._m_linear,
            nn.BatchNorm2d: self._m_batchnorm,
            nn.ReLU: self._simple("relu"),
            nn.ReLU6: self._simple("relu6"),
            nn.Hardswish: self._simple("hswish"),
            nn.Hardsigmoid: self._simple("hsigmoid"),
            nn.SiLU: self._simple("swish"),
            nn.Sigmoid: self._simple("sigmoid"),
            nn.Tanh: self._simple("tanh"),
            nn.MaxPool2d: self._m_maxpool,
            nn.AvgPool2d: self._m_avgpool,
            nn.AdaptiveAvgPool2d: self._adaptive("avg"),
            nn.AdaptiveMaxPool2d: self._adaptive("max"),
            nn.Dropout: self._m_dropout,
            nn.Flatten: self._m_flatten,
            nn.Identity: self._simple("identity"),
            nn.Softmax: self._m_softmax,
            nn.LocalResponseNorm: self._m_lrn,
            nn.GELU: self._simple("gelu"),
            nn.LayerNorm: self._m_layernorm,
        }
        self.function_handlers: dict[Any, Callable] = {
            F.relu: self._simple("relu"),
            torch.relu: self._simple("relu"),
            F.relu6: self._simple("relu6"),
            F.hardswish: self._simple("hswish"),
            F.hardsigmoid: self._simple("hsigmoid"),
            F.silu: self._simple("swish"),
            torch.sigmoid: self._simple("sigmoid"),
            F.sigmoid: self._simple("sigmoid"),
            torch.tanh: self._simple("tanh"),
            F.tanh: self._simple("tanh"),
            F.softmax: self._f_softmax,
            torch.softmax: self._f_softmax,
            F.adaptive_avg_pool2d: self._adaptive("avg"),
            F.adaptive_max_pool2d: self._adaptive("max"),
            F.max_pool2d: self._f_maxpool,
            F.avg_pool2d: self._f_avgpool,
            F.dropout: self._f_dropout,
            torch.cat: self._f_cat,
            torch.concat: self._f_cat,
            operator.add: self._join("add"),
            operator.iadd: self._join("add"),
            torch.add: self._join("add"),
            operator.mul: self._join("mul"),
            operator.imul: self._join("mul"),
            torch.mul: self._join("mul"),
            torch.flatten: self._f_flatten,
            torch.mean: self._f_mean,
            F.gelu: self._simple("gelu"),
            F.layer_norm: self._f_layernorm,
        }
        # followed as views (see _torch_views); reaching a handler means the pattern did not match
        for f in (torch.transpose, torch.permute, torch.chunk, torch.split, torch.narrow, torch.reshape):
            self.function_handlers[f] = self._view_only
        self.method_handlers: dict[str, Callable] = {
            "relu": self._simple("relu"),
            "relu_": self._simple("relu"),
            "sigmoid": self._simple("sigmoid"),
            "sigmoid_": self._simple("sigmoid"),
            "tanh": self._simple("tanh"),
            "tanh_": self._simple("tanh"),
            "softmax": self._f_softmax,
            "add": self._join("add"),
            "add_": self._join("add"),
            "mul": self._join("mul"),
            "mul_": self._join("mul"),
            "flatten": self._f_flatten,
            "view": self._f_flatten,
            "reshape": self._f_flatten,
            "mean": self._f_mean,
        }
        for m in ("transpose", "permute", "contiguous", "chunk", "split", "narrow", "clone", "swapaxes"):
            self.method_handlers[m] = self._view_only
        # Functions/methods that only compute with shapes (never produce a layer).
        self.shape_functions = {
            getattr, operator.getitem, operator.add, operator.sub, operator.mul,
            operator.floordiv, operator.truediv, operator.mod,
        }
        self.shape_methods = {"size", "dim"}

    # ---- pass 1: every node's target must be known ----------------------------------------

    def _target_desc(self, node: Any) -> str:
        if node.op == "call_module":
            return f"module '{node.target}' of class {_module_class_name(self.modules[node.target])}"
        if node.op == "call_function":
            return f"function {_qualname(node.target)}"
        if node.op == "call_method":
            return f"method Tensor.{node.target}"
        if node.op == "get_attr":
            return f"parameter/buffer '{node.target}' used directly (get_attr)"
        return f"{node.op} {node.target}"

    def check_supported(self) -> None:
        bad: list[str] = []
        placeholders = [n for n in self.nodes if n.op == "placeholder"]
        for n in self.nodes:
            ok = True
            if n.op == "call_module":
                ok = type(self.modules[n.target]) in self.module_handlers
            elif n.op == "call_function":
                ok = n.target in self.function_handlers or n.target in self.shape_functions \
                    or _is_stochastic_depth(n.target)
            elif n.op == "call_method":
                ok = n.target in self.method_handlers or n.target in self.shape_methods
            elif n.op == "get_attr":
                ok = True  # a parameter used directly: a constant (see _torch_views)
            if not ok:
                bad.append(f"node '{n.name}' ({self._target_desc(n)})")
        extra = [p for p in placeholders[1:] if p.users]
        if extra:
            raise UnsupportedOpError(
                f"cannot import torch module {self.cls}: its forward uses {len(extra) + 1} inputs "
                f"({', '.join(p.target for p in placeholders)}); only single-input models can be "
                "imported."
            )
        if bad:
            shown = ", ".join(bad[:8]) + (f" and {len(bad) - 8} more" if len(bad) > 8 else "")
            raise UnsupportedOpError(
                f"cannot import torch module {self.cls}: {len(bad)} unsupported op(s): {shown}. The "
                "model language has no op for these; replace them with supported modules or "
                "functions, or describe the model in YAML."
            )

    # ---- pass 2: shapes -------------------------------------------------------------------

    def propagate(self, shape: tuple[int, ...], module: Any) -> None:
        torch = self.torch
        conv = self

        class _Prop(torch.fx.Interpreter):
            def run_node(self, n: Any) -> Any:  # noqa: D401 - torch's API
                try:
                    result = super().run_node(n)
                except Exception as exc:
                    raise _PropError(n, exc) from exc
                if isinstance(result, torch.Tensor):
                    conv.shape[n] = tuple(int(d) for d in result.shape)
                return result

        param = next(iter(module.parameters()), None)
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        device = param.device if param is not None else None
        states = [(m, m.training) for m in module.modules()]
        try:
            module.eval()
            with torch.no_grad():
                x = torch.zeros(shape, dtype=dtype, device=device)
                _Prop(self.gm).run(x)
        except _PropError as err:
            raise SpecError(
                f"torch module {self.cls}: running the traced graph on zeros of shape "
                f"{tuple(shape)} failed at node '{err.node.name}' ({self._target_desc(err.node)}): "
                f"{_first_line(err.exc)}. Check input_shape against what the model expects."
            ) from None
        except Exception as exc:
            raise SpecError(
                f"torch module {self.cls}: running the traced graph on zeros of shape "
                f"{tuple(shape)} failed ({_first_line(exc)})."
            ) from None
        finally:
            for m, t in states:
                m.training = t

    # ---- pass 3: conversion ---------------------------------------------------------------

    def _fail(self, node: Any, reason: str, cls: type = UnsupportedOpError) -> AugurError:
        return cls(
            f"cannot import torch module {self.cls}: node '{node.name}' ({self._target_desc(node)}) "
            f"{reason}"
        )

    def _is_tensor(self, v: Any) -> bool:
        return v in self.shape if self._is_node(v) else False

    def _is_node(self, v: Any) -> bool:
        return isinstance(v, self.torch.fx.Node)

    def _unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used_names:
            name = f"{base}_{i}"
            i += 1
        self.used_names.add(name)
        return name

    def _ref(self, node: Any) -> str:
        return self.layer_of[node]

    def convert(self) -> list[dict]:
        order = {n: i for i, n in enumerate(self.nodes)}
        output_node = None
        for n in self.nodes:
            if n.op == "placeholder":
                if "input" not in self.layer_of.values():
                    self.layer_of[n] = "input"
                continue  # further placeholders are unused (check_supported made sure)
            if n.op == "output":
                output_node = n
                continue
            try:
                if self.views.step(n):
                    continue
            except _Unsupported as u:
                raise self._fail(n, f"{u} The model language cannot express it.") from None
            if n not in self.shape:
                # A value that is not a tensor: allowed only for shape bookkeeping.
                if (n.op == "call_function" and n.target in self.shape_functions) or (
                    n.op == "call_method" and n.target in self.shape_methods
                ):
                    continue
                raise self._fail(n, "does not produce a single tensor (e.g. it returns a tuple); "
                                    "the model language cannot express it.")
            self._check_inplace(n, order)
            try:
                inputs, entries = self._handle(n)
            except _Unsupported as u:
                raise self._fail(n, f"{u} The model language cannot express it.") from None
            base = self._base_name(n)
            prev = [self._ref(i) for i in inputs]
            for j, (op, params) in enumerate(entries):
                lname = self._unique(base if j == 0 else f"{base}.{op}")
                layer = dict(params)
                layer["name"] = lname
                layer["inputs"] = prev
                self.layers.append({op: layer})
                prev = [lname]
            self.layer_of[n] = prev[0]
            if inputs and inputs[0] in self.views.channels_last and all(op in _CL_OPS for op, _ in entries):
                self.views.channels_last.add(n)  # per-position ops keep the channels-last view
        self._finish_output(output_node)
        return self.layers

    def _base_name(self, n: Any) -> str:
        """A module call is named by its module path (``layer1.0.conv1``); a function or method
        call by its op, inside the module whose forward calls it (``layer1.0.add``)."""
        if n.op == "call_module":
            return n.target
        base = re.sub(r"_\d+$", "", n.name) or n.name
        stack = n.meta.get("nn_module_stack") or {}
        if stack:
            scope = list(stack.values())[-1]
            scope = scope[0] if isinstance(scope, tuple) else scope
            if isinstance(scope, str) and scope:
                return f"{scope}.{base}"
        return base

    def _finish_output(self, out: Any) -> None:
        val = out.args[0] if out is not None and out.args else None
        if isinstance(val, (tuple, list)) and len(val) == 1:
            val = val[0]
        if not self._is_tensor(val):
            what = f"{type(val).__name__} of {len(val)} values" if isinstance(val, (tuple, list, dict)) else type(val).__name__
            raise UnsupportedOpError(
                f"cannot import torch module {self.cls}: its forward returns a {what}, not one "
                "tensor; only single-output models can be imported."
            )
        ref = self._ref(val)
        if not self.layers or self.layers[-1][next(iter(self.layers[-1]))]["name"] != ref:
            # The network output is the last layer: route the real output there explicitly.
            self.layers.append({"identity": {"name": self._unique("output"), "inputs": [ref]}})

    def _check_inplace(self, n: Any, order: dict) -> None:
        inplace = False
        if n.op == "call_module":
            inplace = bool(getattr(self.modules[n.target], "inplace", False))
        elif n.op == "call_method":
            inplace = n.target.endswith("_")
        elif n.op == "call_function":
            inplace = n.target in (operator.iadd, operator.imul) or bool(n.kwargs.get("inplace", False))
        if not inplace or not n.args or not self._is_node(n.args[0]):
            return
        src = n.args[0]
        later = [u for u in src.users if u is not n and order[u] > order[n]]
        if later:
            raise self._fail(
                n,
                f"modifies its input '{src.name}' in place, and '{later[0].name}' reads that input "
                "afterwards, so the traced graph does not show the real data flow; rewrite it as "
                "out = op(x) (without in-place) to import the model.",
                SpecError,
            )

    def _handle(self, n: Any) -> tuple[list, list[_Entry]]:
        if n.op == "call_function" and _is_stochastic_depth(n.target):
            return [self._tensor_arg(n)], [("identity", {})]  # the identity at inference
        if n.op == "call_module":
            mod = self.modules[n.target]
            return self.module_handlers[type(mod)](n, mod)
        if n.op == "call_function":
            if n.target in self.function_handlers:
                return self.function_handlers[n.target](n, None)
        elif n.op == "call_method":
            if n.target in self.method_handlers:
                return self.method_handlers[n.target](n, None)
        # A shape-bookkeeping target that produced a tensor (e.g. slicing x[:, :3]).
        raise _Unsupported("produces a tensor from an op the importer handles only for shapes "
                           "(e.g. slicing or indexing a tensor).")

    # ---- shared checks --------------------------------------------------------------------

    def _tensor_arg(self, n: Any) -> Any:
        x = n.args[0] if n.args else next(iter(n.kwargs.values()), None)
        if not self._is_tensor(x):
            raise _Unsupported("does not take a tensor as its first input.")
        return x

    def _spatial_check(self, n: Any, x: Any, k, s, p, d, ceil: bool) -> None:
        ishape, oshape = self.shape[x], self.shape[n]
        if len(ishape) != 4 or len(oshape) != 4:
            raise _Unsupported(f"works on a {len(ishape)}-D tensor; only NCHW (4-D) is supported.")
        exp = tuple(_pool_out(ishape[2 + i], k[i], s[i], p[i], d[i], ceil) for i in range(2))
        if exp != oshape[2:]:
            raise _Unsupported(
                f"gives spatial size {list(oshape[2:])} where the language's size rule gives "
                f"{list(exp)}."
            )

    # ---- handlers (each returns (input nodes, [(op, params), ...])) ------------------------

    def _simple(self, op: str) -> Callable:
        def handler(n: Any, mod: Any) -> tuple[list, list[_Entry]]:
            return [self._tensor_arg(n)], [(op, {})]
        return handler

    def _m_conv(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        x = self._tensor_arg(n)
        if m.padding_mode != "zeros":
            raise _Unsupported(f"uses padding_mode '{m.padding_mode}'; only zero padding is supported.")
        k, s, d = _pair(m.kernel_size), _pair(m.stride), _pair(m.dilation)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                p = (0, 0)
            else:  # 'same'
                total = [d[i] * (k[i] - 1) for i in range(2)]
                if any(t % 2 for t in total):
                    raise _Unsupported(
                        f"uses padding='same' with kernel {list(k)} and dilation {list(d)}, which "
                        "pads asymmetrically; the language pads both sides equally."
                    )
                p = (total[0] // 2, total[1] // 2)
        else:
            p = _pair(m.padding)
        self._spatial_check(n, x, k, s, p, d, False)
        params: dict[str, Any] = {
            "out": int(m.out_channels),
            "kernel": _compact(k),
            "stride": _compact(s),
            "pad": _compact(p),
            "groups": int(m.groups),
            "bias": m.bias is not None,
        }
        if d != (1, 1):
            params["dilation"] = _compact(d)
        return [x], [("conv", params)]

    def _m_linear(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        x = self._tensor_arg(n)
        ishape = self.shape[x]
        if x in self.views.channels_last:
            # nn.Linear on the channels of a channels-last view: a 1x1 convolution
            if ishape[-1] != m.in_features:
                raise self._fail(n, f"has in_features {m.in_features} but its input has {ishape[-1]} channels.",
                                 ShapeError)
            return [x], [("conv", {"out": int(m.out_features), "kernel": 1, "bias": m.bias is not None,
                                   "width": False})]
        if len(ishape) != 2:
            raise _Unsupported(
                f"is applied to a {len(ishape)}-D tensor of shape {list(ishape)}; nn.Linear then acts "
                "on the last dimension only, while the language's fc flattens its whole input. "
                "Flatten to (N, features) first."
            )
        if math.prod(ishape[1:]) != m.in_features:
            raise self._fail(
                n,
                f"has in_features {m.in_features} but its input has C*H*W = {math.prod(ishape[1:])}.",
                ShapeError,
            )
        return [x], [("fc", {"out": int(m.out_features), "bias": m.bias is not None})]

    def _layernorm(self, x: Any, normalized_shape: Any, affine: bool, eps: float) -> tuple[list, list[_Entry]]:
        shape = self.shape[x]
        ns = tuple(normalized_shape) if isinstance(normalized_shape, (list, tuple)) else (normalized_shape,)
        if x not in self.views.channels_last or len(shape) != 4 or ns != (shape[-1],):
            raise _Unsupported(f"normalizes {list(ns)} of a tensor of shape {list(shape)}; only a LayerNorm over the "
                               "channels of a channels-last view (x.permute(0, 2, 3, 1)) is modelled.")
        return [x], [("layernorm", {"affine": bool(affine), "eps": float(eps)})]

    def _m_layernorm(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        return self._layernorm(self._tensor_arg(n), m.normalized_shape, m.elementwise_affine, m.eps)

    def _f_layernorm(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "normalized_shape", "weight", "bias", "eps"], {"weight": None, "bias": None, "eps": 1e-5})
        return self._layernorm(self._tensor_arg(n), a["normalized_shape"], a["weight"] is not None, a["eps"])

    def _view_only(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        raise _Unsupported("is a view (transpose, permute, split, ...) outside the patterns the language "
                           "expresses: a channel shuffle, channel slices, or a channels-last block.")

    def _m_batchnorm(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        return [self._tensor_arg(n)], [("batchnorm", {"affine": bool(m.affine)})]

    def _pool(self, n: Any, op: str, kernel, stride, padding, dilation, ceil) -> tuple[list, list[_Entry]]:
        x = self._tensor_arg(n)
        k = _pair(kernel)
        s = k if stride is None or (isinstance(stride, (list, tuple)) and len(stride) == 0) else _pair(stride)
        p, d = _pair(padding), _pair(dilation)
        if d != (1, 1):
            raise _Unsupported(f"uses dilation {list(d)}; pools in the language have no dilation.")
        self._spatial_check(n, x, k, s, p, d, bool(ceil))
        return [x], [(op, {"kernel": _compact(k), "stride": _compact(s), "pad": _compact(p),
                           "ceil": bool(ceil)})]

    def _m_maxpool(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        if m.return_indices:
            raise _Unsupported("returns indices (return_indices=True).")
        return self._pool(n, "maxpool", m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode)

    def _m_avgpool(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        return self._pool(n, "avgpool", m.kernel_size, m.stride, m.padding, 1, m.ceil_mode)

    def _f_maxpool(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"],
                  {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False})
        if a["return_indices"]:
            raise _Unsupported("returns indices (return_indices=True).")
        self._no_nodes(a, "kernel_size", "stride", "padding", "dilation", "ceil_mode")
        return self._pool(n, "maxpool", a["kernel_size"], a["stride"], a["padding"], a["dilation"], a["ceil_mode"])

    def _f_avgpool(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                      "divisor_override"], {"stride": None, "padding": 0, "ceil_mode": False})
        self._no_nodes(a, "kernel_size", "stride", "padding", "ceil_mode")
        return self._pool(n, "avgpool", a["kernel_size"], a["stride"], a["padding"], 1, a["ceil_mode"])

    def _no_nodes(self, a: dict, *keys: str) -> None:
        for key in keys:
            v = a.get(key)
            vs = v if isinstance(v, (list, tuple)) else [v]
            if any(self._is_node(e) for e in vs):
                raise _Unsupported(f"computes its {key} at run time; it must be a constant.")

    def _adaptive(self, mode: str) -> Callable:
        def handler(n: Any, mod: Any) -> tuple[list, list[_Entry]]:
            x = self._tensor_arg(n)
            ishape, oshape = self.shape[x], self.shape[n]
            if len(ishape) != 4:
                raise _Unsupported(f"works on a {len(ishape)}-D tensor; only NCHW is supported.")
            (h, w), (oh, ow) = ishape[2:], oshape[2:]
            if (oh, ow) == (1, 1):
                return [x], [("globalpool", {"mode": mode})]
            if (oh, ow) == (h, w):
                return [x], [("identity", {})]
            if h % oh == 0 and w % ow == 0:
                k = (h // oh, w // ow)
                return [x], [(f"{mode}pool", {"kernel": _compact(k), "stride": _compact(k), "pad": 0,
                                              "ceil": False})]
            raise _Unsupported(
                f"pools {h}x{w} to {oh}x{ow}, which is neither global, the identity, nor a regular "
                "pool with an integer kernel."
            )
        return handler

    def _m_lrn(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        # torch, like Caffe, divides alpha by size; the additive constant k (Caffe: 1) has no
        # parameter in the language and does not change the cost.
        x = self._tensor_arg(n)
        if len(self.shape[x]) != 4:
            raise _Unsupported(f"works on a {len(self.shape[x])}-D tensor; only NCHW is supported.")
        return [x], [("lrn", {"size": int(m.size), "alpha": float(m.alpha), "beta": float(m.beta)})]

    def _m_dropout(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        return [self._tensor_arg(n)], [("dropout", {"ratio": float(m.p)})]

    def _f_dropout(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "p", "training", "inplace"], {"p": 0.5})
        self._no_nodes(a, "p")
        return [self._tensor_arg(n)], [("dropout", {"ratio": float(a["p"])})]

    def _m_flatten(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        return self._f_flatten(n, m)

    def _f_flatten(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        # flatten / view / reshape: only "flatten to (N, features)" is an op of the language.
        x = self._tensor_arg(n)
        ishape, oshape = self.shape[x], self.shape[n]
        if len(oshape) == 2 and oshape[0] == ishape[0] and oshape[1] == math.prod(ishape[1:]):
            return [x], [("flatten", {})]
        raise _Unsupported(
            f"reshapes {list(ishape)} to {list(oshape)}; only flattening to (N, C*H*W) is supported."
        )

    def _norm_dim(self, n: Any, dim: Any, ndim: int) -> int:
        if self._is_node(dim) or not isinstance(dim, int):
            raise _Unsupported(f"has dim {dim!r}; a constant integer is required.")
        return dim + ndim if dim < 0 else dim

    def _m_softmax(self, n: Any, m: Any) -> tuple[list, list[_Entry]]:
        x = self._tensor_arg(n)
        self._softmax_dim(n, x, m.dim)
        return [x], [("softmax", {})]

    def _f_softmax(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "dim"], {"dim": None})
        x = self._tensor_arg(n)
        self._softmax_dim(n, x, a["dim"])
        return [x], [("softmax", {})]

    def _softmax_dim(self, n: Any, x: Any, dim: Any) -> None:
        ndim = len(self.shape[x])
        if dim is None:  # torch's legacy implicit dim: 1 for 2-D and 4-D inputs
            dim = 0 if ndim in (0, 1, 3) else 1
        if self._norm_dim(n, dim, ndim) != 1:
            raise _Unsupported(f"takes softmax over dim {dim} of a {ndim}-D tensor; only over channels "
                               "(dim 1) is supported.")

    def _f_cat(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["tensors", "dim"], {"dim": 0})
        ts = a["tensors"]
        if not isinstance(ts, (list, tuple)) or not all(self._is_tensor(t) for t in ts) or not ts:
            raise _Unsupported("does not take a list of tensors.")
        ndim = len(self.shape[ts[0]])
        if self._norm_dim(n, a["dim"], ndim) != 1:
            raise _Unsupported(f"concatenates along dim {a['dim']}; only channels (dim 1) is supported.")
        if len(ts) == 1:
            return [ts[0]], [("identity", {})]
        return list(ts), [("concat", {})]

    def _join(self, op: str) -> Callable:
        def handler(n: Any, _: Any) -> tuple[list, list[_Entry]]:
            a = _bind(n, ["input", "other"], {"alpha": 1})
            x, y = a.get("input"), a.get("other")
            if a.get("alpha", 1) != 1:
                raise _Unsupported(f"scales its second input (alpha={a['alpha']}).")
            consts = self.views.consts
            if op == "mul" and (x in consts or y in consts) and (self._is_tensor(x) or self._is_tensor(y)):
                t, k = (x, y) if self._is_tensor(x) else (y, x)
                shape, kshape = self.shape[t], tuple(consts[k] or ())
                c = shape[-1] if t in self.views.channels_last else shape[1]
                if kshape in ((c, 1, 1), (1, c, 1, 1), (c,)):
                    return [t], [("scale", {"bias": False})]  # a per-channel factor (layer scale)
                raise _Unsupported(f"multiplies by a parameter of shape {list(kshape)}; only a per-channel "
                                   "factor is modelled.")
            if not (self._is_tensor(x) and self._is_tensor(y)):
                const = y if self._is_tensor(x) else x
                raise _Unsupported(
                    f"combines a tensor with a non-tensor value ({const!r}); the language's {op} "
                    "joins two tensors."
                )
            sx, sy = self.shape[x], self.shape[y]
            if sx == sy:
                return [x, y], [(op, {})]
            if len(sx) == 4 and len(sy) == 4 and sx[:2] == sy[:2] and (sx[2:] == (1, 1) or sy[2:] == (1, 1)):
                return [x, y], [(op, {})]  # a [C,1,1] operand broadcast over [C,H,W] (squeeze-excite)
            raise _Unsupported(
                f"broadcasts {list(sx)} with {list(sy)}; the language's {op} needs equal shapes "
                "(or a [C,1,1] operand)."
            )
        return handler

    def _f_mean(self, n: Any, _: Any) -> tuple[list, list[_Entry]]:
        a = _bind(n, ["input", "dim", "keepdim"], {"dim": None, "keepdim": False})
        x = self._tensor_arg(n)
        ndim = len(self.shape[x])
        dims = a["dim"]
        if ndim != 4 or dims is None:
            raise _Unsupported("is not a mean over the spatial dims [2, 3] of an NCHW tensor.")
        dims = [dims] if isinstance(dims, int) else list(dims)
        if sorted(self._norm_dim(n, d, ndim) for d in dims) != [2, 3]:
            raise _Unsupported(f"averages over dims {dims}; only the spatial dims [2, 3] are supported.")
        if a["keepdim"]:
            return [x], [("globalpool", {"mode": "avg"})]
        return [x], [("globalpool", {"mode": "avg"}), ("flatten", {})]


# ops that work per position, so a channels-last view stays one through them
_CL_OPS = {"conv", "layernorm", "gelu", "relu", "relu6", "swish", "hswish", "sigmoid", "tanh", "hsigmoid",
           "identity", "dropout", "scale"}


def _is_stochastic_depth(target: Any) -> bool:
    """torchvision.ops.stochastic_depth (wrapped for torch.fx, so it shows as one call): the
    identity at inference."""
    return callable(target) and getattr(target, "__name__", "") == "stochastic_depth"


class _PropError(Exception):
    def __init__(self, node: Any, exc: BaseException) -> None:
        super().__init__(str(exc))
        self.node = node
        self.exc = exc
