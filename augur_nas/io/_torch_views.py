"""Tensor views the torch importer follows instead of mapping them to layers one by one.

Modern CNNs write some ops as several tensor calls:
- channel shuffle (ShuffleNet): ``x.view(n, g, c // g, h, w)``, ``transpose(1, 2)``,
  ``contiguous()``, ``view(n, c, h, w)`` (or ``flatten(1, 2)``) -> one ``shuffle`` layer;
- channel splits: ``x.chunk(k, dim=1)``, ``x.split(sizes, dim=1)`` then ``parts[i]``,
  ``x.narrow(1, start, length)``, ``x[:, a:b]`` -> one ``slice`` layer per part;
- channels-last blocks (ConvNeXt): ``x.permute(0, 2, 3, 1)``, then LayerNorm / Linear / GELU on
  the last axis, then ``permute(0, 3, 1, 2)``: the permutes are views of the same NCHW tensor,
  LayerNorm over the last axis is ``layernorm``, Linear on it is a 1x1 ``conv``;
- parameters used directly (``get_attr``: ConvNeXt's layer scale) are constants: a product with a
  per-channel constant is ``scale`` without bias.

``ViewTracker.step(n)`` consumes such a node (returns True) and records its state; the converter
asks it before mapping a node to a layer. Anything it does not recognise is left to the
converter, which reports it by node name.
"""

from __future__ import annotations

import math
import operator
from typing import Any, NamedTuple


class Grouped(NamedTuple):
    """``src`` viewed as [N, G, C/G, H, W] (``swapped``: after the transpose of dims 1 and 2)."""

    src: Any
    groups: int
    swapped: bool


class Parts(NamedTuple):
    """The tuple a chunk/split returns: channel ranges of ``src``."""

    src: Any
    ranges: list


_VIEW_METHODS = {"view", "reshape", "flatten"}
_TRANSPOSE = {"transpose", "swapaxes"}
_PERMUTE = {"permute"}
_SPLIT = {"chunk", "split", "tensor_split"}


def _name(n) -> str:
    t = n.target
    return t if isinstance(t, str) else getattr(t, "__name__", "")


class ViewTracker:
    def __init__(self, conv) -> None:
        self.c = conv
        self.grouped: dict = {}
        self.parts: dict = {}
        self.channels_last: set = set()
        self.consts: dict = {}

    # -- helpers ---------------------------------------------------------------------------
    def _args(self, n):
        return list(n.args) + list(n.kwargs.values())

    def _is_call(self, n, names) -> bool:
        return n.op in ("call_method", "call_function") and _name(n) in names

    def _alias(self, n, src) -> None:
        self.c.layer_of[n] = self.c.layer_of[src]

    def _emit(self, n, op: str, params: dict, src) -> None:
        base = self.c._base_name(n)
        lname = self.c._unique(base)
        self.c.layers.append({op: {**params, "name": lname, "inputs": [self.c._ref(src)]}})
        self.c.layer_of[n] = lname

    # -- the step ----------------------------------------------------------------------------
    def step(self, n) -> bool:
        if n.op == "get_attr":
            self.consts[n] = self.c.shape.pop(n, None)
            return True
        if n.op not in ("call_method", "call_function") or not n.args:
            return False
        x = n.args[0]
        for handler in (self._shuffle, self._permute, self._split, self._getitem, self._narrow, self._contiguous):
            if handler(n, x):
                return True
        return False

    def _shuffle(self, n, x) -> bool:
        shape = self.c.shape.get(n)
        if self._is_call(n, _VIEW_METHODS) and x in self.grouped and shape is not None and len(shape) == 4:
            g = self.grouped[x]
            if g.swapped and tuple(shape) == tuple(self.c.shape[g.src]):
                self._emit(n, "shuffle", {"groups": g.groups}, g.src)
                return True
            return False
        if self._is_call(n, _VIEW_METHODS) and self.c._is_tensor(x) and shape is not None and len(shape) == 5:
            src = self.c.shape[x]
            if len(src) == 4 and shape[1] * shape[2] == src[1] and tuple(shape[3:]) == tuple(src[2:]) \
                    and x not in self.channels_last:
                self.grouped[n] = Grouped(x, int(shape[1]), False)
                self.c.shape.pop(n, None)
                return True
        if self._is_call(n, _TRANSPOSE) and x in self.grouped:
            dims = sorted(int(d) for d in n.args[1:3]) if len(n.args) >= 3 else []
            if dims == [1, 2]:
                g = self.grouped[x]
                self.grouped[n] = Grouped(g.src, g.groups, not g.swapped)
                return True
        return False

    def _contiguous(self, n, x) -> bool:
        if not self._is_call(n, {"contiguous", "clone"}):
            return False
        if x in self.grouped:
            self.grouped[n] = self.grouped[x]
            self.c.shape.pop(n, None)
            return True
        if self.c._is_tensor(x):
            self._alias(n, x)
            if x in self.channels_last:
                self.channels_last.add(n)
            return True
        return False

    def _permute(self, n, x) -> bool:
        if not self._is_call(n, _PERMUTE) or not self.c._is_tensor(x):
            return False
        dims = n.args[1:] if len(n.args) > 2 else n.args[1] if len(n.args) == 2 else n.kwargs.get("dims")
        dims = [int(d) for d in dims] if isinstance(dims, (list, tuple)) else None
        if dims == [0, 2, 3, 1] and x not in self.channels_last and len(self.c.shape[x]) == 4:
            self._alias(n, x)
            self.channels_last.add(n)
            return True
        if dims == [0, 3, 1, 2] and x in self.channels_last:
            self._alias(n, x)
            return True
        return False

    def _dim_is_channels(self, x, dim) -> bool:
        nd = len(self.c.shape[x])
        return isinstance(dim, int) and (dim + nd if dim < 0 else dim) == 1 and x not in self.channels_last

    def _split(self, n, x) -> bool:
        if not self._is_call(n, _SPLIT) or not self.c._is_tensor(x):
            return False
        arg = n.args[1] if len(n.args) > 1 else n.kwargs.get("chunks", n.kwargs.get("split_size_or_sections",
                                                                                   n.kwargs.get("split_size")))
        dim = n.args[2] if len(n.args) > 2 else n.kwargs.get("dim", 0)
        if not self._dim_is_channels(x, dim):
            return False
        c = int(self.c.shape[x][1])
        if _name(n) == "chunk":
            step = math.ceil(c / int(arg))
            sizes = [min(step, c - s) for s in range(0, c, step)]
        elif isinstance(arg, int):
            sizes = [min(int(arg), c - s) for s in range(0, c, int(arg))]
        elif isinstance(arg, (list, tuple)) and all(isinstance(a, int) for a in arg):
            sizes = list(arg)
        else:
            return False
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        self.parts[n] = Parts(x, [(s, s + k) for s, k in zip(starts, sizes)])
        return True

    def _getitem(self, n, x) -> bool:
        if not (n.op == "call_function" and n.target is operator.getitem):
            return False
        idx = n.args[1]
        if x in self.parts and isinstance(idx, int):
            p = self.parts[x]
            a, b = p.ranges[idx]
            self._emit(n, "slice", {"start": a, "end": b}, p.src)
            return True
        if self.c._is_tensor(x) and isinstance(idx, tuple) and len(idx) >= 2 and len(self.c.shape[x]) == 4 \
                and idx[0] == slice(None) and isinstance(idx[1], slice) and all(i == slice(None) for i in idx[2:]) \
                and x not in self.channels_last:
            c = int(self.c.shape[x][1])
            a, b, step = idx[1].indices(c)
            if step == 1 and b > a and not any(self.c._is_node(v) for v in (idx[1].start, idx[1].stop)):
                self._emit(n, "slice", {"start": a, "end": b}, x)
                return True
        return False

    def _narrow(self, n, x) -> bool:
        if not self._is_call(n, {"narrow"}) or not self.c._is_tensor(x) or len(n.args) < 4:
            return False
        dim, start, length = n.args[1:4]
        if not (self._dim_is_channels(x, dim) and isinstance(start, int) and isinstance(length, int)):
            return False
        self._emit(n, "slice", {"start": start, "end": start + length}, x)
        return True
