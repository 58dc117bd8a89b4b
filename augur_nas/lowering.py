"""Lower a batch of candidates to a layer table: one registry of op handlers, vectorized over B.

``lower(space, X)`` walks the unrolled space's nodes once (a loop over layer slots, never over
candidates). Each handler computes, for all candidates at once, the output shape and the
per-layer counts: GEMM dims as in Augur (``n`` kernels per group, ``k`` kernel volume per group,
``m`` output pixels, ``groups``), MACs, params, weight elements, im2col workspace.

An inactive slot (not part of a candidate) passes its first input through and counts nothing.
Every op kind of the op table (``ops.OPS``) has a handler here (the free aliases count nothing);
anything else is reported as unsupported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from ._errors import ShapeError, SpecError, UnsupportedOpError
from ._derived import derived
from ._totals import DTYPE_BYTES, SUM_KEYS, buffer_facts
from .ops import OPS, OpKind
from .space._expr import Channels, Const, Fn, GeneVal


INT_FIELDS = ("in_c", "in_h", "in_w", "out_c", "out_h", "out_w", "n", "k", "m", "groups",
              "params", "weight_elems", "in_elems", "out_elems", "workspace_elems")
FLOAT_FIELDS = ("macs",)
FIELDS = INT_FIELDS + FLOAT_FIELDS


class Scaled:
    """``coef * arr`` kept unevaluated: element-wise layers share their tensors' element counts,
    so sums over many layers collapse to one multiply per distinct tensor."""

    __slots__ = ("coef", "arr")

    def __init__(self, coef, arr):
        self.coef, self.arr = coef, arr

    def value(self):
        return _times(self.arr, self.coef) if isinstance(self.coef, int) else self.arr * self.coef


def _value(v):
    return v.value() if isinstance(v, Scaled) else v


@dataclass(frozen=True)
class OpHandler:
    """How one op kind is lowered (``fn``) and what the op table says about it (``op``)."""

    kind: str
    fn: Callable  # (ev, node, ins, act) -> (c, h, w, counts dict)
    op: OpKind

    @property
    def table_type(self) -> str | None:
        return self.op.table_type

    @property
    def gemm(self) -> bool:
        return self.op.gemm

    @property
    def inplace(self) -> bool:
        return self.op.inplace


REGISTRY: dict[str, OpHandler] = {}


def register(kind):
    """Register the lowering of an op kind; its facts are the op table's (``ops.OPS``)."""
    def deco(fn):
        REGISTRY[kind] = OpHandler(kind, fn, OPS[kind])
        return fn
    return deco


# ---------------------------------------------------------------------------------------------
# evaluation context


class DeferredError(NamedTuple):
    """A shape error kept for later (``walk(defer_errors=True)``): the rows it holds for, and how
    to word it for one of them."""

    bad: np.ndarray  # [rows] bool
    node: object  # the layer (its name and key path go into the message)
    msg: Callable  # pick -> message, ``pick(array)`` reading the offending row's value
    ev: object  # the evaluation it came from
    # the first row of the block of a grid ``bad`` was made for, or each grid row's row in that
    # block (an array: a block of the rows some candidate can gather, ``_segments``)
    offset: object = 0


class Entry(NamedTuple):
    """The one tensor a range of slots reads from before its start (a segment's entry): its node
    id (-1: the network input), shapes per row and whether it is a zero tensor."""

    node: int
    c: object
    h: object
    w: object
    zero: object


class _Eval:
    def __init__(self, space, X: np.ndarray):
        self.space = space
        self.prog = space.program
        self.X = X
        self.B = X.shape[0]
        self.gene_cache: dict[int, np.ndarray] = {}
        self.cond_cache: dict = {}
        self.area_cache: dict = {}
        self.elems_cache: dict = {}
        self.select_pos: dict = {}
        self.fn_cache: dict = {}
        L = len(self.prog.nodes)
        # shapes of node outputs; index -1 is the network input (stored at position L)
        self.c = [None] * (L + 1)
        self.h = [None] * (L + 1)
        self.w = [None] * (L + 1)
        self.zero = [False] * (L + 1)
        self.c[L] = self.prog.in_channels
        self.h[L] = self.val(self.prog.in_h)
        self.w[L] = self.val(self.prog.in_w)

    def elems(self, c, h, w):
        """c * h * w, cached like ``area``."""
        key = (id(c), id(h), id(w))
        v = self.elems_cache.get(key)
        if v is None:
            v = self.elems_cache[key] = (_times(c, self.area(h, w)), c)
        return v[0]

    def area(self, h, w):
        """h * w, cached by the identity of the arrays (many layers share a spatial size)."""
        key = (id(h), id(w))
        v = self.area_cache.get(key)
        if v is None:
            v = self.area_cache[key] = (_times(h, w), h, w)  # keep h, w alive so ids stay unique
        return v[0]

    def gene(self, g: int, options) -> np.ndarray:
        key = (g, id(options))
        v = self.gene_cache.get(key)
        if v is None:
            v = np.asarray(options)[self.X[:, g]]
            self.gene_cache[key] = v
        return v

    def val(self, e):
        if isinstance(e, Const):
            return e.value
        if isinstance(e, GeneVal):
            return self.gene(e.gene, e.options)
        if isinstance(e, Fn):
            args = [self.val(a) for a in e.args]
            # the same function of the same values recurs across blocks: compute it once
            key = (_fn_key(e.fn),) + tuple(a if isinstance(a, (int, float, str, bool)) else id(a) for a in args)
            hit = self.fn_cache.get(key)
            if hit is None:
                hit = self.fn_cache[key] = (e.fn(*args), args)
            return hit[0]
        if isinstance(e, Channels):
            return self.c[e.node]
        if isinstance(e, tuple):
            return tuple(self.val(a) for a in e)
        return e

    def pair(self, e):
        v = self.val(e)
        return v if isinstance(v, tuple) else (v, v)

    def active(self, node):
        act = self.cond_cache.get(node.conds) if node.conds else True
        if act is None:
            act = self.cond_cache[node.conds] = self._conds_mask(node.conds)
        if node.when is not None:
            w = self.val(node.when)
            act = w if act is True else (act & w)
        return act

    def _conds_mask(self, conds):
        act = True
        for g, allowed in conds:
            key = (g, allowed)
            m = self.cond_cache.get(key)
            if m is None:
                t = np.zeros(len(self.prog.genes[g].options), dtype=bool)
                t[list(allowed)] = True
                m = t[self.X[:, g]]
                self.cond_cache[key] = m
            act = m if act is True else (act & m)
        return act

    errors = None

    def fail_if(self, bad, act, node, msg: Callable):
        """Raise a ShapeError naming the layer and the first candidate for which ``bad`` holds."""
        bad = np.asarray(bad) & np.asarray(act)
        if not bad.any():
            return
        if self.errors is not None:
            self.errors.append(DeferredError(np.broadcast_to(bad, (self.B,)), node, msg, self))
            return
        i = int(np.argmax(bad)) if bad.ndim else 0
        cand = ""
        if self.space.n_genes and self.B:
            picks = [f"{g.name}={g.options[self.X[i, j]]}" for j, g in enumerate(self.space.genes)][:8]
            cand = f" for candidate {i} ({', '.join(picks)}{', ...' if self.space.n_genes > 8 else ''})"
        pick = (lambda a: a[i] if isinstance(a, np.ndarray) and a.ndim else a)
        raise ShapeError(f"{msg(pick)}{cand} ({self.prog.source}, {node.keypath})")


def _fn_key(fn):
    try:
        cells = tuple(c.cell_contents for c in (fn.__closure__ or ()))
        hash(cells)
    except (TypeError, ValueError):
        return fn
    return (fn.__code__, cells)


def _where(act, a, b):
    if act is True or a is b:
        return a
    if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)) and a == b:
        return a
    return np.where(act, a, b)


# ---------------------------------------------------------------------------------------------
# op handlers


def _keeps_size(node) -> bool:
    """A stride-1, odd-kernel conv with `same` padding keeps the spatial size (known statically)."""
    flag = node.__dict__.get("_keeps")
    if flag is None:
        p = node.params

        def consts(e, want):
            es = e if isinstance(e, tuple) else (e,)
            return all(isinstance(x, Const) and x.value == want for x in es)

        pad = p.get("pad")
        same = (isinstance(pad, Fn) and getattr(pad.fn, "__name__", "") == "_same_pad") or \
            (isinstance(pad, Const) and pad.value == "same")
        kern = p.get("kernel")
        kopts = [kern.value] if isinstance(kern, Const) else list(getattr(kern, "options", [2]))
        flag = bool(same and consts(p.get("stride", Const(1)), 1) and consts(p.get("dilation", Const(1)), 1)
                    and all(isinstance(k, int) and k % 2 == 1 for k in kopts))
        node._keeps = flag
    return flag


def _spatial(ev, node, ins, kh, kw, sh, sw, ph, pw, dh=1, dw=1, ceil=False, what="kernel"):
    i = ins[0]
    h, w = ev.h[i], ev.w[i]
    eh, ew = dh * (kh - 1) + 1, dw * (kw - 1) + 1
    if not ceil and _keeps_size(node):
        return h, w, eh, ew, h, w
    square = (h is w and kh is kw and ph is pw and (sh is sw or (isinstance(sh, int) and sh == sw))
              and (dh is dw or (isinstance(dh, int) and dh == dw)))
    if ceil:
        # Caffe: the last pooling window must start inside the (left-padded) input
        oh = -((-(h + 2 * ph - eh)) // sh) + 1
        oh = oh - ((oh - 1) * sh >= h + ph)
        if square:
            return h, w, eh, eh, oh, oh
        ow = -((-(w + 2 * pw - ew)) // sw) + 1
        ow = ow - ((ow - 1) * sw >= w + pw)
    else:
        oh = (h + 2 * ph - eh) // sh + 1
        if square:
            return h, w, eh, eh, oh, oh
        ow = (w + 2 * pw - ew) // sw + 1
    return h, w, eh, ew, oh, ow


def _check_spatial(ev, node, act, h, w, eh, ew, ph, pw, oh, ow):
    if oh is h and ow is w:
        return
    bad = (np.asarray(oh) < 1) if oh is ow else (np.asarray(oh) < 1) | (np.asarray(ow) < 1)
    ev.fail_if(bad, act, node, lambda p: (
        f"the kernel of layer `{node.name}` ({node.op}) is larger than its input: "
        f"{p(eh)}x{p(ew)} over {p(h)}x{p(w)} padded by {p(ph)}x{p(pw)}, so its output would be "
        f"{p(oh)}x{p(ow)}"))


@register("conv")
def _conv(ev, node, ins, act):
    p = node.params
    i = ins[0]
    cin = ev.c[i]
    out = ev.val(p["out"])
    groups = ev.val(p["groups"])
    kh, kw = ev.pair(p["kernel"])
    sh, sw = ev.pair(p["stride"])
    dh, dw = ev.pair(p["dilation"])
    pad = ev.val(p["pad"])
    if isinstance(pad, str):
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = pad if isinstance(pad, tuple) else (pad, pad)
    if not (isinstance(groups, int) and groups == 1):
        ev.fail_if((np.asarray(cin) % groups != 0) | (np.asarray(out) % groups != 0), act, node, lambda q: (
            f"`groups` of layer `{node.name}` (conv) must divide its input and output channels, but got "
            f"groups={q(groups)} with {q(cin)} in and {q(out)} out"))
    h, w, eh, ew, oh, ow = _spatial(ev, node, ins, kh, kw, sh, sw, ph, pw, dh, dw)
    _check_spatial(ev, node, act, h, w, eh, ew, ph, pw, oh, ow)
    return _conv_counts(ev, node, cin, h, w, out, oh, ow, kh, kw, sh, sw, ph, pw, groups, ev.val(p["bias"]))


def _times(a, b):
    """a * b, skipping the array operation when one side is the integer 1."""
    if isinstance(b, int) and b == 1:
        return a
    if isinstance(a, int) and a == 1:
        return b
    return a * b


def _conv_counts(ev, node, cin, h, w, out, oh, ow, kh, kw, sh, sw, ph, pw, groups, bias):
    k = _times(cin // groups if not (isinstance(groups, int) and groups == 1) else cin, _times(kh, kw))
    n = out // groups if not (isinstance(groups, int) and groups == 1) else out
    m = ev.area(oh, ow)
    weights = _times(out, k)
    params = weights + out if bias else weights
    counts = {"n": n, "k": k, "m": m, "groups": groups, "macs": _times(weights, m), "params": params,
              "weight_elems": params}
    # a 1x1, stride-1, unpadded conv multiplies its input directly: no im2col buffer
    if all(isinstance(v, int) for v in (kh, kw, sh, sw, ph, pw)):
        if not (kh == kw == sh == sw == 1 and ph == pw == 0):
            counts["workspace_elems"] = _times(k, _times(groups, m))
    else:
        direct = (np.asarray(kh) == 1) & (np.asarray(kw) == 1) & (np.asarray(sh) == 1) & (np.asarray(sw) == 1) \
            & (np.asarray(ph) == 0) & (np.asarray(pw) == 0)
        counts["workspace_elems"] = np.where(direct, 0, _times(k, _times(groups, m)))
    return out, oh, ow, counts


@register("dwconv")
def _dwconv(ev, node, ins, act):
    p = node.params
    cin = ev.c[ins[0]]
    kh, kw = ev.pair(p["kernel"])
    sh, sw = ev.pair(p["stride"])
    dh, dw = ev.pair(p["dilation"])
    pad = ev.val(p["pad"])
    if isinstance(pad, str):
        ph, pw = dh * (kh - 1) // 2, dw * (kw - 1) // 2
    else:
        ph, pw = pad if isinstance(pad, tuple) else (pad, pad)
    h, w, eh, ew, oh, ow = _spatial(ev, node, ins, kh, kw, sh, sw, ph, pw, dh, dw)
    _check_spatial(ev, node, act, h, w, eh, ew, ph, pw, oh, ow)
    mult = ev.val(p["multiplier"])
    out = _times(cin, mult)
    # one k x k filter bank per input channel: k = kh*kw, n = multiplier, groups = channels
    k = _times(kh, kw)
    m = ev.area(oh, ow)
    weights = _times(out, k)
    params = weights + out if ev.val(p["bias"]) else weights
    counts = {"n": mult, "k": k, "m": m, "groups": cin, "macs": _times(weights, m), "params": params,
              "weight_elems": params, "workspace_elems": _times(_times(k, cin), m)}
    return out, oh, ow, counts


@register("fc")
def _fc(ev, node, ins, act):
    i = ins[0]
    k = ev.c[i] * ev.h[i] * ev.w[i]
    out = ev.val(node.params["out"])
    params = out * k + (out if ev.val(node.params["bias"]) else 0)
    return out, 1, 1, {"n": out, "k": k, "m": 1, "groups": 1, "macs": out * k, "params": params,
                       "weight_elems": params}


def _pool(ev, node, ins, act):
    p = node.params
    kh, kw = ev.pair(p["kernel"])
    st = ev.val(p["stride"])
    sh, sw = (kh, kw) if st is None else ev.pair(p["stride"])
    ph, pw = ev.pair(p["pad"])
    h, w, eh, ew, oh, ow = _spatial(ev, node, ins, kh, kw, sh, sw, ph, pw, ceil=bool(ev.val(p["ceil"])))
    _check_spatial(ev, node, act, h, w, eh, ew, ph, pw, oh, ow)
    c = ev.c[ins[0]]
    return c, oh, ow, {"macs": c * oh * ow * kh * kw}


register("maxpool")(_pool)
register("avgpool")(_pool)


@register("globalpool")
def _globalpool(ev, node, ins, act):
    i = ins[0]
    c = ev.c[i]
    return c, 1, 1, {"macs": ev.elems(c, ev.h[i], ev.w[i])}


def _unary(cost_per_elem: int, state_per_channel: int = 0, params_per_channel: Callable | None = None):
    def fn(ev, node, ins, act):
        i = ins[0]
        c, h, w = ev.c[i], ev.h[i], ev.w[i]
        counts = {"macs": Scaled(cost_per_elem, ev.elems(c, h, w))}
        if params_per_channel is not None:
            pp = params_per_channel(ev, node)
            counts["params"] = Scaled(pp, c)
            counts["weight_elems"] = Scaled(pp + state_per_channel, c)
        return c, h, w, counts
    return fn


# The paper's per-type "FLOPs" rows count element operations: BN 3 per element, the rest 1.
register("batchnorm")(_unary(
    3, 2, lambda ev, node: 2 if ev.val(node.params["affine"]) else 0))
register("scale")(_unary(1, 0, lambda ev, node: 2 if ev.val(node.params["bias"]) else 1))
for _k in ("relu", "relu6"):
    register(_k)(_unary(1))
for _k in ("sigmoid", "tanh", "hsigmoid", "hswish", "swish", "gelu"):
    register(_k)(_unary(1))
# LayerNorm over the channels at each position (ConvNeXt): mean, variance, normalise, scale and
# shift, 5 element operations; gamma and beta are its parameters. Not in place: runtimes write a
# new tensor.
register("layernorm")(_unary(5, 0, lambda ev, node: 2 if ev.val(node.params["affine"]) else 0))
register("dropout")(_unary(0))
register("softmax")(_unary(1))


@register("lrn")
def _lrn(ev, node, ins, act):
    i = ins[0]
    c, h, w = ev.c[i], ev.h[i], ev.w[i]
    return c, h, w, {"macs": Scaled(ev.val(node.params["size"]), ev.elems(c, h, w))}


@register("flatten")
def _flatten(ev, node, ins, act):
    i = ins[0]
    return ev.c[i] * ev.h[i] * ev.w[i], 1, 1, {}


def _broadcast_shape(ev, node, ins, act, live, verb):
    """The output shape of an element-wise join: inputs of one shape, or a ``[C,1,1]`` input
    broadcast over ``[C,H,W]`` (a squeeze-excite gate, a per-channel bias); anything else is an
    error naming the layer."""
    i0 = ins[0]
    c, h, w = ev.c[i0], ev.h[i0], ev.w[i0]
    for j in ins[1:]:
        cj, hj, wj = ev.c[j], ev.h[j], ev.w[j]
        if cj is c and hj is h and wj is w:
            continue
        same_hw = (np.asarray(hj) == h) & (np.asarray(wj) == w)
        point_j = (np.asarray(hj) == 1) & (np.asarray(wj) == 1)
        point_0 = (np.asarray(h) == 1) & (np.asarray(w) == 1)
        ok = (np.asarray(cj) == c) & (same_hw | point_j | point_0)
        ev.fail_if(~ok & live(j) & live(i0), act, node, lambda p, j=j, c=c, h=h, w=w: (
            f"layer `{node.name}` ({node.op}) {verb} tensors of different shapes: {p(c)}x{p(h)}x{p(w)} and "
            f"{p(ev.c[j])}x{p(ev.h[j])}x{p(ev.w[j])}, which do not broadcast (shapes must agree, or one "
            f"must be Cx1x1 with the same C)"))
        if not np.all(same_hw):
            # the larger spatial size wins: a [C,1,1] operand is spread over [C,H,W]
            h, w = np.maximum(h, hj), np.maximum(w, wj)
            if not isinstance(h, np.ndarray) or h.ndim == 0:
                h, w = int(h), int(w)
    return c, h, w


@register("add")
def _add(ev, node, ins, act):
    nonzero = [(~np.asarray(ev.zero[j])) if ev.zero[j] is not False else True for j in ins]
    live = lambda j: nonzero[ins.index(j)]  # noqa: E731
    c, h, w = _broadcast_shape(ev, node, ins, act, live, "adds")
    if all(z is True for z in nonzero):
        return c, h, w, {"macs": Scaled(len(ins) - 1, ev.elems(c, h, w))}
    n_live = sum(np.asarray(z, dtype=np.int64) for z in nonzero)
    return c, h, w, {"macs": np.maximum(n_live - 1, 0) * ev.elems(c, h, w)}


@register("mul")
def _mul(ev, node, ins, act):
    c, h, w = _broadcast_shape(ev, node, ins, act, lambda j: True, "multiplies")
    return c, h, w, {"macs": Scaled(len(ins) - 1, ev.elems(c, h, w))}


@register("shuffle")
def _shuffle(ev, node, ins, act):
    """Channel shuffle (ShuffleNet): reshape to [G, C/G], transpose, reshape back: one copy."""
    i = ins[0]
    c, h, w = ev.c[i], ev.h[i], ev.w[i]
    g = ev.val(node.params["groups"])
    ev.fail_if(np.asarray(c) % g != 0, act, node, lambda p: (
        f"the `groups` of layer `{node.name}` (shuffle) must divide its input channels, but got "
        f"groups={p(g)} with {p(c)} channels"))
    return c, h, w, {}


@register("slice")
def _slice(ev, node, ins, act):
    """Channels [start, end) of the input (torch.chunk / split / narrow, ONNX Split / Slice)."""
    i = ins[0]
    c, h, w = ev.c[i], ev.h[i], ev.w[i]
    a, b = ev.val(node.params["start"]), ev.val(node.params["end"])
    ev.fail_if((np.asarray(b) <= a) | (np.asarray(b) > np.asarray(c)), act, node, lambda p: (
        f"layer `{node.name}` (slice) takes channels [{p(a)}, {p(b)}) of a tensor with {p(c)} channels; "
        f"the range must be non-empty and inside the channels"))
    return b - a, h, w, {}


@register("concat")
def _concat(ev, node, ins, act):
    i0 = ins[0]
    h, w = ev.h[i0], ev.w[i0]
    for j in ins[1:]:
        bad = (np.asarray(ev.h[j]) != h) | (np.asarray(ev.w[j]) != w)
        ev.fail_if(bad, act, node, lambda p, j=j: (
            f"layer `{node.name}` (concat) joins tensors of different spatial sizes: "
            f"{p(h)}x{p(w)} and {p(ev.h[j])}x{p(ev.w[j])}"))
    c = sum(ev.c[j] for j in ins)
    return c, h, w, {}


@register("identity")
def _identity(ev, node, ins, act):
    i = ins[0]
    return ev.c[i], ev.h[i], ev.w[i], {}


register("zero")(_identity)


@register("select")
def _select(ev, node, ins, act):
    g = node.params["gene"]
    pos = np.asarray(node.params["index"])[ev.X[:, g]]
    ev._select_pos = pos

    def pick(vals):
        vals = [np.broadcast_to(v, (ev.B,)) for v in vals]
        return np.choose(pos, vals) if len(vals) > 1 else vals[0]

    c = pick([ev.c[j] for j in ins])
    h = pick([ev.h[j] for j in ins])
    w = pick([ev.w[j] for j in ins])
    zs = [ev.zero[j] for j in ins]
    ev._select_zero = pick([np.asarray(z, dtype=bool) for z in zs]) if any(z is not False for z in zs) else False
    return c, h, w, {}


if set(REGISTRY) != set(OPS):  # the op table and the handlers describe the same kinds
    raise RuntimeError(f"op kinds without a handler: {sorted(set(OPS) - set(REGISTRY))}; "
                       f"handlers without an op-table record: {sorted(set(REGISTRY) - set(OPS))}")


# ---------------------------------------------------------------------------------------------
# the layer table


@dataclass
class LayerTable:
    """Per-layer arrays of a batch of candidates, a struct of arrays ``[L, B]`` with a mask.

    ``names``, ``ops``, ``types`` and ``inputs`` describe the ``L`` layer slots of the unrolled
    space; every numeric field (``mask``, ``in_c`` ... ``macs``) is ``[L, B]``, one row per layer
    slot (the order the lowering fills and every pricing loop reads): ``table.macs`` is
    ``table.rows["macs"]``, and ``table.macs[:, b]`` is candidate ``b``'s column. Byte counts are
    float32 (4 bytes an element).
    """

    names: list
    ops: list
    types: list
    inputs: list
    rows: dict = field(repr=False)  # field -> [L, B] array
    source: str = ""
    select_pos: dict = field(default_factory=dict, repr=False)  # select slot -> [B] chosen input

    def __getattr__(self, item):
        rows = self.__dict__.get("rows")
        if rows is not None and item in rows:
            return rows[item]
        raise AttributeError(item)

    @property
    def B(self) -> int:
        return self.rows["mask"].shape[1]

    @property
    def L(self) -> int:
        return len(self.names)

    @property
    def weight_bytes(self):
        return self.weight_elems * DTYPE_BYTES

    @property
    def in_bytes(self):
        return self.in_elems * DTYPE_BYTES

    @property
    def out_bytes(self):
        return self.out_elems * DTYPE_BYTES

    @property
    def workspace_bytes(self):
        return self.workspace_elems * DTYPE_BYTES

    def slots(self, kind: str) -> np.ndarray:
        """Indices of the layer slots of one op kind."""
        return np.array([i for i, o in enumerate(self.ops) if o == kind], dtype=np.int64)


class StaticInfo(NamedTuple):
    """A program's per-slot structure, the same for every batch (kept in ``_derived``)."""

    passthrough: list  # must compute its pass-through shape when inactive (``_passthrough_needed``)
    names: list
    ops: list
    types: list  # Table-1 types (the op table's)
    inputs: list  # input slots, -1 the network input


def _static_info(prog) -> StaticInfo:
    d = derived(prog)
    info = d.static
    if info is None:
        for node in prog.nodes:
            if node.op not in REGISTRY:
                raise UnsupportedOpError(f"layer `{node.name}` has op kind `{node.op}`, which no handler "
                                         f"prices ({prog.source}, {node.keypath})")
        info = d.static = StaticInfo(
            passthrough=_passthrough_needed(prog),
            names=[n.name for n in prog.nodes],
            ops=[n.op for n in prog.nodes],
            types=[REGISTRY[n.op].table_type for n in prog.nodes],
            inputs=[list(n.inputs) for n in prog.nodes],
        )
    return info


class _TableSink:
    """Collects every field of every slot: the full layer table."""

    def __init__(self, L, B):
        self.rows = {f: np.zeros((L, B), dtype=np.int64) for f in INT_FIELDS}
        self.rows["macs"] = np.zeros((L, B), dtype=np.float64)
        self.rows["mask"] = np.zeros((L, B), dtype=bool)
        self.B = B

    def __call__(self, ev, nid, node, act, ins, c, h, w, counts):
        rows = self.rows
        i0 = ins[0]
        rows["mask"][nid] = True if act is True else act
        rows["in_c"][nid] = ev.c[i0]
        rows["in_h"][nid] = ev.h[i0]
        rows["in_w"][nid] = ev.w[i0]
        rows["out_c"][nid] = c
        rows["out_h"][nid] = h
        rows["out_w"][nid] = w
        rows["in_elems"][nid] = sum(ev.c[j] * ev.h[j] * ev.w[j] for j in ins)
        rows["out_elems"][nid] = c * h * w
        for f, v in counts.items():
            rows[f][nid] = _value(v)
        if act is not True:
            m = rows["mask"][nid]
            for f in FIELDS:
                rows[f][nid] *= m


def _expr_nodes(e, out: set):
    if isinstance(e, Channels):
        out.add(e.node)
    elif isinstance(e, Fn):
        for a in e.args:
            _expr_nodes(a, out)
    elif isinstance(e, tuple):
        for a in e:
            _expr_nodes(a, out)


def _passthrough_needed(prog) -> list:
    """Which slots must compute their pass-through shape when inactive.

    A slot inactive for a candidate passes its input through. Only readers that can be active
    while the slot is not (readers outside its optional context) see that value, so the
    ``np.where`` is needed only for the slots read from outside their context.
    """
    readers = [[] for _ in prog.nodes]
    for j, n in enumerate(prog.nodes):
        refs = {i for i in n.inputs if i >= 0}
        for e in list(n.params.values()) + [n.when]:
            _expr_nodes(e, refs)
        for i in refs:
            readers[i].append(j)
    need = []
    for i, n in enumerate(prog.nodes):
        mine = set(n.conds)
        need.append(n.when is not None or i == prog.output or not readers[i]
                    or any(not set(prog.nodes[j].conds) >= mine for j in readers[i]))
    return need


def walk(space, X, sink, start: int = 0, stop: int | None = None, entry=None, defer_errors: bool = False):
    """Propagate shapes through slots ``start..stop`` for candidates ``X`` and hand each priced
    slot to ``sink(ev, nid, node, act, ins, c, h, w, counts)``. Returns the evaluation context.

    ``entry`` (an ``Entry``) gives the shapes of the one tensor a range reads from before
    ``start``. With ``defer_errors`` shape errors are collected in ``ev.errors`` (a list of
    ``DeferredError``) instead of raised: rows of a tabulation grid may be combinations
    that no real candidate has.
    """
    X = space.check_encodings(X) if start == 0 and entry is None else X
    prog = space.program
    passthrough = _static_info(prog).passthrough
    ev = _Eval(space, X)
    ev.errors = [] if defer_errors else None
    if entry is not None:
        e = entry.node
        ev.c[e], ev.h[e], ev.w[e], ev.zero[e] = entry.c, entry.h, entry.w, entry.zero
    nodes = prog.nodes if stop is None and start == 0 else prog.nodes[start:stop]
    for nid, node in enumerate(nodes, start):
        handler = REGISTRY[node.op]
        act = ev.active(node)
        ins = node.inputs
        i0 = ins[0]
        c, h, w, counts = handler.fn(ev, node, ins, act)
        in_c, in_h, in_w = ev.c[i0], ev.h[i0], ev.w[i0]
        zero_in = ev.zero[i0]
        z = False
        if node.op == "zero":
            z = True
        elif node.op == "identity":
            z = zero_in  # a skip edge carries a zero tensor on as zero
        elif node.op == "add":
            z = True
            for j in ins:
                z = ev.zero[j] if z is True else (z & ev.zero[j])
        elif node.op == "select":
            z = ev._select_zero
            ev.select_pos[nid] = ev._select_pos
        if passthrough[nid]:
            ev.c[nid] = _where(act, c, in_c)
            ev.h[nid] = _where(act, h, in_h)
            ev.w[nid] = _where(act, w, in_w)
        else:
            ev.c[nid], ev.h[nid], ev.w[nid] = c, h, w
        if z is not False or zero_in is not False:
            ev.zero[nid] = z if act is True else _where(act, z, zero_in)
        if handler.table_type is not None:
            sink(ev, nid, node, act, ins, c, h, w, counts)
    return ev


def lower(space, X) -> LayerTable:
    """The layer table of candidates ``X[B, G]`` of ``space`` (a SearchSpace or a model)."""
    X = space.check_encodings(X)
    info = _static_info(space.program)
    sink = _TableSink(len(space.program.nodes), X.shape[0])
    ev = walk(space, X, sink)
    return LayerTable(info.names, info.ops, info.types, info.inputs, sink.rows,
                      space.program.source, ev.select_pos)


class _Context:
    """The running sums of the slots of one optional context: summed unmasked, masked once."""

    __slots__ = ("act", "sums", "workspace")

    def __init__(self, act):
        self.act = act  # True, or the [B] mask of the context
        self.sums: dict = {}  # field -> _Sum
        self.workspace = None  # the largest workspace of its slots (unmasked), or None


class _Sum:
    """A dense part plus ``Scaled`` terms grouped by their array (``id(arr) -> [arr, coef]``):
    element-wise layers of one tensor add up to one multiply."""

    __slots__ = ("dense", "terms")

    def __init__(self):
        self.dense = 0
        self.terms: dict = {}

    def add(self, v):
        if isinstance(v, Scaled):
            term = self.terms.get(id(v.arr))
            if term is None:
                self.terms[id(v.arr)] = [v.arr, v.coef]
            else:
                term[1] += v.coef
        elif isinstance(self.dense, np.ndarray):
            self.dense += v
        elif isinstance(v, np.ndarray):
            self.dense = v.astype(np.float64) + self.dense  # a new float array, never the caller's
        else:
            self.dense += v

    def value(self):
        total = self.dense
        for arr, coef in self.terms.values():
            total = total + _times(arr, coef)
        return total


class _TotalsSink:
    """Sums whole-network counts without materialising the table (the oracle's hot path): the
    ``_totals.SUM_KEYS`` by the rule of ``_totals.table_sums``.

    Slots sharing an optional context (the same conditions) are summed unmasked and the sum is
    masked once per context, instead of masking every slot.
    """

    KEYS = tuple(k for k in SUM_KEYS if k != "workspace_elems")  # summed; the workspace is a max

    def __init__(self, prog, B):
        self.B = B
        self.shares, self.ctx_key = buffer_facts(prog)
        self.groups: dict = {}  # context key -> _Context

    def _sum(self, grp, key):
        acc = grp.sums.get(key)
        if acc is None:
            acc = grp.sums[key] = _Sum()
        return acc

    def __call__(self, ev, nid, node, act, ins, c, h, w, counts):
        grp = self.groups.get(self.ctx_key[nid])
        if grp is None:
            grp = self.groups[self.ctx_key[nid]] = _Context(act)
        macs = counts.get("macs")
        if macs is not None:
            if REGISTRY[node.op].gemm:
                self._sum(grp, "macs").add(macs)
            self._sum(grp, "ops").add(macs)
        p = counts.get("params")
        if p is not None:
            self._sum(grp, "params").add(p)
            self._sum(grp, "weight_elems").add(counts["weight_elems"])
        if not self.shares[nid]:
            self._sum(grp, "activation_elems").add(_times(c, ev.area(h, w)))
        ws = counts.get("workspace_elems")
        if ws is not None:
            grp.workspace = ws if grp.workspace is None else np.maximum(grp.workspace, ws)

    def result(self) -> dict:
        out = {k: np.zeros(self.B) for k in self.KEYS}
        ws = np.zeros(self.B)
        for grp in self.groups.values():
            act = grp.act
            for k, acc in grp.sums.items():
                v = acc.value()
                out[k] += v if act is True else v * act
            if grp.workspace is not None:
                np.maximum(ws, grp.workspace if act is True else grp.workspace * act, out=ws)
        out["workspace_elems"] = ws
        return out


# --------------------------------------------------------------------------------------------
# The load-time shape check (augur_nas.load_space calls it)
# --------------------------------------------------------------------------------------------

CHECK_ALL_LIMIT = 256  # spaces up to this size have every candidate's shapes checked at load
MAX_TENSOR_ELEMS = 2.0**40  # elements of one tensor (4 TiB of float32)
MAX_LAYER_MACS = 2.0**56    # multiply-accumulates of one layer


def check_shapes(space) -> None:
    """Lower candidates so that a space whose shapes go wrong fails at load time: all of them in a
    small space, else the first, the last options and 30 random ones."""
    if space.n_genes == 0:
        X = np.zeros((1, 0), dtype=np.int64)
    elif space.size <= CHECK_ALL_LIMIT:  # small spaces: every candidate, so the check is exact
        X = space.enumerate()
    else:
        rows = [np.zeros(space.n_genes, dtype=np.int64), np.array([g.size - 1 for g in space.genes], dtype=np.int64)]
        rng = np.random.default_rng(0)
        sizes = np.array([g.size for g in space.genes], dtype=np.int64)
        rows.extend((rng.random((30, space.n_genes)) * sizes).astype(np.int64))
        X = space.canonicalize(np.array(rows).reshape(-1, space.n_genes))
    _check_table(space, X)


def _check_table(space, X) -> None:
    """Lower ``X`` and refuse shapes too large to count (so 64-bit counts never wrap)."""
    try:
        table = lower(space, X)
    except OverflowError:
        raise SpecError(f"the shapes of {space.name} grow too large to count (a tensor or a layer beyond "
                        f"2^63); check the channel counts and the resolution ({space.source})") from None
    mask = np.asarray(table.rows["mask"], dtype=bool).T  # [B, L]: the first bad candidate first
    f = {k: np.asarray(table.rows[k], dtype=np.float64).T for k in ("out_c", "out_h", "out_w", "n", "k", "m", "groups")}
    elems = f["out_c"] * f["out_h"] * f["out_w"]
    macs = f["n"] * f["groups"] * f["k"] * f["m"]
    wrapped = np.zeros_like(mask)
    for v in f.values():
        wrapped |= v < 0
    bad = mask & (wrapped | (elems > MAX_TENSOR_ELEMS) | (macs > MAX_LAYER_MACS))
    if bad.any():
        b, s = (int(i) for i in np.argwhere(bad)[0])
        name = table.names[s]
        keypath = next((n.keypath for n in space.program.nodes if n.name == name), "")
        raise SpecError(f"layer `{name}` is too large to count: its output has {elems[b, s]:.3g} elements and "
                        f"it takes {macs[b, s]:.3g} MACs (the limits are 2^40 elements a tensor and 2^56 MACs "
                        f"a layer); check the channel counts and the resolution ({space.source}, {keypath})")
