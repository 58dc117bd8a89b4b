"""Compile a model/space description (a dict in the augur-nas language) into a Program.

A Program is the unrolled space: primitive nodes in topological order (every layer slot any
candidate may use), the genes, and two by-products used by ``SearchSpace``: a count/enumeration
tree (exact space size, canonical enumeration) and a template from which ``decode`` writes a
concrete model back in the same language.

An inactive node (a copy beyond the chosen depth, an alternative not chosen) passes its first
input through; builders therefore always put the tensor that flows on first.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

from .._errors import SpecError, UnsupportedOpError
from ..ops import JOIN_KINDS, OPS, SPELLINGS
from ._expr import Channels, Const, Expr, Fn, GeneVal, make_divisible

Cond = tuple  # (gene index, frozenset of allowed option indices)

# ---------------------------------------------------------------------------------------------
# Program data


@dataclass
class Gene:
    name: str
    options: tuple
    conds: tuple  # the gene matters only when every (gene, allowed) condition holds
    raw_options: tuple = ()  # options as written (may be layer entries), for decode

    @property
    def size(self) -> int:
        return len(self.options)


@dataclass
class Node:
    op: str
    name: str
    inputs: list  # node ids, -1 = network input
    params: dict  # name -> Expr
    conds: tuple = ()
    when: Expr | None = None  # a runtime condition (e.g. a residual needs in == out channels)
    keypath: str = ""
    table_type: str | None = None


@dataclass
class Program:
    source: str
    name: str
    in_channels: int
    in_h: Expr
    in_w: Expr
    nodes: list
    genes: list
    tree: object
    template: dict
    output: int


# count / enumeration tree ------------------------------------------------------------------


@dataclass
class Prod:
    children: list = field(default_factory=list)


@dataclass
class Choice:
    gene: int
    branches: list  # one Prod (or None = nothing more) per option


# decode templates ----------------------------------------------------------------------------


@dataclass
class TVal:
    gene: int


@dataclass
class TStage:
    name: str
    depth: object  # int or TVal
    copies: list  # templates of every copy (up to the largest depth)
    extra: dict


@dataclass
class TAlt:
    gene: int
    name: str
    alts: list  # each a list of layer templates


# ---------------------------------------------------------------------------------------------
# parameter schemas

_INT = "int"
_POSINT = "posint"
_NONNEG = "nonneg"
_BOOL = "bool"
_NUM = "num"
_STR = "str"
_PADINT = "padint"  # an integer pad (pools, and the items of a [ph, pw] pad): no `same`
REQUIRED = object()

# Bounds that keep every shape and count far inside 64-bit integers and every compile finite.
MAX_INT = 1 << 24            # any integer or number parameter (channels, out, ratios, ...)
MAX_WINDOW = 4096            # kernel, stride, dilation and pad
MAX_RESOLUTION = 1 << 16     # input height and width
MAX_STAGE_DEPTH = 1_000      # copies of a stage's block
MAX_CELL_NODES = 64          # nodes of a cell
MAX_NODES = 50_000           # primitive layer slots of the unrolled space
# parameters that change a layer's structure: constants only (choose between whole layers instead)
_CHOOSABLE_ENUMS = {"act", "mode"}

COMMON = {"name", "inputs"}

PRIMITIVES: dict[str, dict] = {
    "conv": {"out": (_POSINT, REQUIRED), "kernel": ("kernel", REQUIRED), "stride": ("pair", 1),
             "pad": ("pad", 0), "groups": (_POSINT, 1), "dilation": ("pair", 1), "bias": (_BOOL, True),
             "width": (_BOOL, True)},
    "dwconv": {"kernel": ("kernel", REQUIRED), "stride": ("pair", 1), "pad": ("pad", "same"),
               "multiplier": (_POSINT, 1), "dilation": ("pair", 1), "bias": (_BOOL, False)},
    "fc": {"out": (_POSINT, REQUIRED), "bias": (_BOOL, True)},
    "maxpool": {"kernel": ("kernel", REQUIRED), "stride": ("pair", None), "pad": (_PADINT, 0), "ceil": (_BOOL, False)},
    "avgpool": {"kernel": ("kernel", REQUIRED), "stride": ("pair", None), "pad": (_PADINT, 0), "ceil": (_BOOL, False)},
    "globalpool": {"mode": (("avg", "max"), "avg")},
    "batchnorm": {"affine": (_BOOL, True), "eps": (_NUM, 1e-5)},
    "scale": {"bias": (_BOOL, True)},
    "relu": {}, "relu6": {}, "sigmoid": {}, "tanh": {}, "hsigmoid": {}, "hswish": {}, "swish": {},
    "silu": {}, "gelu": {},
    "layernorm": {"affine": (_BOOL, True), "eps": (_NUM, 1e-6)},
    "shuffle": {"groups": (_POSINT, REQUIRED)},
    "slice": {"start": (_NONNEG, REQUIRED), "end": (_POSINT, REQUIRED)},
    "stochastic_depth": {"p": (_NUM, 0.0)}, "drop_path": {"p": (_NUM, 0.0)},
    "lrn": {"size": (_POSINT, 5), "alpha": (_NUM, 1e-4), "beta": (_NUM, 0.75), "k": (_NUM, 1.0)},
    "dropout": {"ratio": (_NUM, 0.5)},
    "softmax": {},
    "flatten": {},
    "add": {}, "mul": {}, "concat": {},
    "identity": {}, "zero": {},
}
JOINS = set(JOIN_KINDS)  # kinds that read several tensors (the op table's)
ACTS = ("relu", "relu6", "hswish", "hsigmoid", "swish", "silu", "gelu", "sigmoid", "tanh", "none")
# spellings of one op: the layer is built as the op on the right (the op table's SPELLINGS)
ALIASES = SPELLINGS

MACROS: dict[str, dict] = {
    "conv_bn_act": {"out": (_POSINT, REQUIRED), "kernel": ("kernel", REQUIRED), "stride": ("pair", 1),
                    "groups": (_POSINT, 1), "act": (ACTS, "relu"), "width": (_BOOL, True), "pad": ("pad", "same")},
    "relu_conv_bn": {"out": (_POSINT, None), "kernel": ("kernel", REQUIRED), "stride": ("pair", 1)},
    "mbconv": {"out": (_POSINT, REQUIRED), "kernel": ("kernel", 3), "stride": ("pair", 1), "expand": (_NUM, 6),
               "se": (_NUM, 0), "act": (ACTS, "relu6"), "skip": (_BOOL, True), "width": (_BOOL, True)},
    "basic": {"out": (_POSINT, REQUIRED), "stride": ("pair", 1), "width": (_BOOL, True)},
    "bottleneck": {"mid": (_POSINT, REQUIRED), "out": (_POSINT, None), "stride": ("pair", 1),
                   "stride_on": (("first", "middle"), "middle"), "norm": (("batchnorm", "caffe"), "batchnorm"),
                   "width": (_BOOL, True), "groups": (_POSINT, 1), "se": (_NUM, 0)},
    "inception": {k: (_POSINT, REQUIRED) for k in ("c1", "c3r", "c3", "c5r", "c5", "pool_proj")},
    "fire": {"squeeze": (_POSINT, REQUIRED), "e1": (_POSINT, REQUIRED), "e3": (_POSINT, REQUIRED)},
    "se": {"ratio": (_NUM, 0.25), "squeeze": (_POSINT, None), "gate": (("hsigmoid", "sigmoid"), "hsigmoid")},
    "branch": {"paths": ("raw", REQUIRED), "join": (("concat", "add"), "concat")},
    "sequence": {"layers": ("raw", REQUIRED)},
    "stage": {"block": ("raw", None), "blocks": ("raw", None), "depth": (_NONNEG, None), "share": (_BOOL, False)},
    "cell": {"type": ("raw", REQUIRED)},
}
MACROS["inception"]["width"] = (_BOOL, True)
MACROS["fire"]["width"] = (_BOOL, True)
# the mobile zoo's mbconv variants (MobileNetV3 tables, EfficientNet's squeeze-excite, FBNet's
# grouped blocks) and its other blocks; the defaults keep mbconv as it was
MACROS["mbconv"].update({
    "hidden": (_POSINT, None), "se_gate": (("hsigmoid", "sigmoid"), "hsigmoid"),
    "se_base": (("expanded", "input"), "expanded"), "se_act": (ACTS, "relu"), "se_divisor": (_POSINT, 8),
    "groups": (_POSINT, 1), "shuffle": (_BOOL, False), "drop_path": (_NUM, 0)})
MACROS.update({
    "fused_mbconv": {"out": (_POSINT, REQUIRED), "kernel": ("kernel", 3), "stride": ("pair", 1),
                     "expand": (_NUM, 4), "act": (ACTS, "swish"), "skip": (_BOOL, True), "width": (_BOOL, True),
                     "drop_path": (_NUM, 0)},
    "ghost": {"out": (_POSINT, REQUIRED), "kernel": ("kernel", 1), "ratio": (_POSINT, 2), "dw_kernel": ("kernel", 3),
              "act": (ACTS, "relu"), "width": (_BOOL, True)},
    "ghost_bottleneck": {"mid": (_POSINT, REQUIRED), "out": (_POSINT, REQUIRED), "kernel": ("kernel", 3),
                         "stride": ("pair", 1), "se": (_NUM, 0), "width": (_BOOL, True)},
    "shufflev2": {"out": (_POSINT, REQUIRED), "stride": ("pair", 1), "width": (_BOOL, True)},
    "convnext": {"expand": (_POSINT, 4), "kernel": ("kernel", 7), "drop_path": (_NUM, 0)},
})

TOP_KEYS = {"name", "input", "width_multiplier", "width_divisor", "choices", "cells", "layers", "description"}


def _table_type(op):
    """The Table-1 type of a layer (the op table's); an op kind the table lacks keeps its name, and
    the lowering reports it as unsupported."""
    rec = OPS.get(op)
    return rec.table_type if rec is not None else op


def _is_choice(raw) -> bool:
    return isinstance(raw, dict) and set(raw) == {"choice"}


def _kind_name(v) -> str:
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, numbers.Integral):
        return "an integer"
    if isinstance(v, numbers.Real):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "a mapping"
    return type(v).__name__


class Compiler:
    def __init__(self, source: str):
        self.source = source
        self.nodes: list[Node] = []
        self.genes: list[Gene] = []
        self.gene_by_name: dict[str, int] = {}
        self.named: dict[str, int] = {}
        self.by_name: dict[str, int] = {}
        self.cells: dict = {}
        self.cell_genes: dict[str, dict] = {}
        self.tree_stack: list[Prod] = [Prod()]
        self.share = 0
        self.width: Expr = Const(1.0)
        self.divisor = 8
        self.layer_index = 0

    # -- errors -----------------------------------------------------------------------------
    def fail(self, msg: str, keypath: str, cls=SpecError):
        raise cls(f"{msg} ({self.source}, {keypath})")

    # -- genes ------------------------------------------------------------------------------
    def new_gene(self, name: str, options: list, conds: tuple, keypath: str, raw=None) -> int:
        if name in self.gene_by_name:
            if self.share:
                return self.gene_by_name[name]
            self.fail(f"two choices are named `{name}`", keypath)
        if not isinstance(options, list) or not options:
            self.fail(f"`choice` must be a non-empty list of options, but got {options!r}", keypath)
        g = len(self.genes)
        self.genes.append(Gene(name, tuple(options), conds, tuple(raw if raw is not None else options)))
        self.gene_by_name[name] = g
        self.tree_stack[-1].children.append(Choice(g, [None] * len(options)))
        return g

    def value(self, raw, keypath: str, conds: tuple) -> tuple[Expr, object]:
        """An Expr for a parameter value, and its decode template."""
        if isinstance(raw, str) and raw.startswith("$"):
            key = raw[1:]
            if key not in self.named:
                known = ", ".join(sorted(self.named)) or "none are defined"
                self.fail(f"`{raw}` names no entry of the top-level `choices` map (known: {known})", keypath)
            g = self.named[key]
            return GeneVal(g, self.genes[g].options), TVal(g)
        if _is_choice(raw):
            opts = raw["choice"]
            if not isinstance(opts, list) or not opts:
                self.fail(f"`choice` must be a non-empty list of options, but got {opts!r}", keypath)
            for o in opts:
                if isinstance(o, (dict, list)) or o is None:
                    self.fail(f"options of a parameter choice must be numbers, strings or booleans, but got {_kind_name(o)}", keypath)
            g = self.new_gene(keypath, list(opts), conds, keypath)
            return GeneVal(g, self.genes[g].options), TVal(g)
        if isinstance(raw, dict):
            keys = ", ".join(map(str, raw))
            self.fail(f"expected a value or {{choice: [...]}}, but got a mapping with keys {keys}", keypath)
        return Const(raw), raw

    # -- parameter checking -----------------------------------------------------------------
    def _check_scalar(self, kind, v, pname: str, where: str, keypath: str):
        def bad(expect):
            self.fail(f"`{pname}` of {where} must be {expect}, but got {v!r}", keypath)

        if kind == "raw":
            return
        if isinstance(kind, tuple):
            if v not in kind:
                bad("one of " + ", ".join(kind))
            return
        if kind == _BOOL:
            if not isinstance(v, bool):
                bad("true or false")
            return
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or (isinstance(v, float) and not math.isfinite(v)):
            if not (kind == "pad" and v == "same"):
                bad("a number" if kind == _NUM else "an integer" + (" or `same`" if kind == "pad" else ""))
            return
        if kind == _NUM:
            if v < 0:
                bad(">= 0")
            if v > MAX_INT:
                bad(f"at most {MAX_INT:,}")
            return
        if not float(v).is_integer():
            bad("an integer")
        if kind in (_POSINT, "kernel", "pair") and v < 1:
            self.fail(f"`{pname}` of {where} must be >= 1, but got {v}", keypath)
        if kind in (_NONNEG, "pad", _PADINT) and v < 0:
            self.fail(f"`{pname}` of {where} must be >= 0, but got {v}", keypath)
        limit = MAX_WINDOW if kind in ("kernel", "pair", "pad", _PADINT) else MAX_INT
        if pname == "resolution":
            limit = MAX_RESOLUTION
        if v > limit:
            self.fail(f"`{pname}` of {where} must be at most {limit:,}, but got {v:,}", keypath)

    def params(self, op: str, schema: dict, raw: dict, keypath: str, where: str, conds: tuple):
        """Validate and convert an op's parameters into Exprs (plus the decode template)."""
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            self.fail(f"the parameters of {where} must be a mapping, but got {_kind_name(raw)}", keypath)
        unknown = [k for k in raw if k not in schema and k not in COMMON]
        if unknown:
            allowed = ", ".join(sorted(set(schema) | COMMON))
            self.fail(f"{where} has no parameter `{unknown[0]}` (allowed: {allowed})", f"{keypath}.{unknown[0]}")
        out, tmpl = {}, {}
        for pname, (kind, default) in schema.items():
            kp = f"{keypath}.{pname}"
            if pname not in raw or raw[pname] is None:
                if default is REQUIRED:
                    self.fail(f"{where} needs the parameter `{pname}`", kp)
                out[pname] = Const(default)
                continue
            rv = raw[pname]
            if kind == "raw":
                out[pname] = rv
                tmpl[pname] = rv
                continue
            if isinstance(rv, list) and kind in ("kernel", "pair", "pad", _PADINT):
                if len(rv) != 2:
                    self.fail(f"`{pname}` of {where} must be one value or [h, w], but got {rv!r}", kp)
                pair = []
                for i, item in enumerate(rv):
                    e, t = self.value(item, f"{kp}[{i}]", conds)
                    # `same` is a whole-pad setting; the items of [ph, pw] are integers
                    self._check_expr(_PADINT if kind == "pad" else kind, e, pname, where, f"{kp}[{i}]")
                    pair.append((e, t))
                out[pname] = (pair[0][0], pair[1][0])
                tmpl[pname] = [pair[0][1], pair[1][1]]
                continue
            e, t = self.value(rv, kp, conds)
            if isinstance(e, GeneVal) and (kind == _BOOL or (isinstance(kind, tuple) and pname not in _CHOOSABLE_ENUMS)):
                self.fail(f"`{pname}` of {where} cannot be a choice: it changes the structure of the layer; "
                          f"write a layer `choice` between the variants instead", kp)
            if isinstance(e, GeneVal) and kind == "pad" and "same" in e.options:
                self.fail(f"a choice of `pad` for {where} must list integers, but it lists `same`; write "
                          f"`pad: same` and choose the kernel instead", kp)
            self._check_expr(kind, e, pname, where, kp)
            out[pname] = e
            tmpl[pname] = t
        return out, tmpl

    def _check_expr(self, kind, e: Expr, pname, where, keypath):
        vals = [e.value] if isinstance(e, Const) else list(e.options)
        for v in vals:
            if v is None:
                self.fail(f"`{pname}` of {where} has no value", keypath)
            self._check_scalar(kind, v, pname, where, keypath)

    # -- nodes ------------------------------------------------------------------------------
    def add_node(self, op, name, inputs, params, conds, keypath, when=None) -> int:
        if name in self.by_name:
            self.fail(f"the layer name `{name}` is used twice; layer names must be unique", keypath)
        if len(self.nodes) >= MAX_NODES:
            self.fail(f"the network unrolls to more than {MAX_NODES:,} layers (every copy of every stage and "
                      f"every alternative counts); the file is refused", keypath)
        nid = len(self.nodes)
        self.nodes.append(Node(op, name, list(inputs), params, conds, when, keypath, _table_type(op)))
        self.by_name[name] = nid
        return nid

    def resolve_inputs(self, raw, prev: int, prefix: str, keypath: str) -> list[int]:
        if raw is None:
            return [prev]
        if isinstance(raw, str):
            raw = [raw]
        if not isinstance(raw, list) or not raw or not all(isinstance(r, str) for r in raw):
            self.fail(f"`inputs` must be a non-empty list of layer names, but got {raw!r}", keypath)
        ids = []
        for r in raw:
            if r in ("input", "data") and r not in self.by_name and prefix + r not in self.by_name:
                ids.append(-1)
            elif prefix + r in self.by_name:
                ids.append(self.by_name[prefix + r])
            elif r in self.by_name:
                ids.append(self.by_name[r])
            else:
                self.fail(f"`inputs` names `{r}`, which is no earlier layer (a layer can only take inputs "
                          f"from layers above it)", keypath)
        return ids

    def scaled(self, e: Expr, apply_width: Expr) -> Expr:
        """Channel count scaled by the width multiplier (when the layer does not opt out)."""
        if isinstance(self.width, Const) and self.width.value == 1.0:
            return e
        if isinstance(apply_width, Const) and not apply_width.value:
            return e
        div = self.divisor
        return Fn(lambda c, w: make_divisible(c * w, div), (e, self.width))

    # -- layers -----------------------------------------------------------------------------
    def layer_list(self, entries, inp: int, prefix: str, keypath: str, conds: tuple):
        if not isinstance(entries, list):
            self.fail(f"expected a list of layers, but got {_kind_name(entries)}", keypath)
        cur, tmpl = inp, []
        for i, entry in enumerate(entries):
            cur, t = self.layer(entry, cur, prefix, f"{keypath}[{i}]", conds, i)
            tmpl.append(t)
        return cur, tmpl

    def layer(self, entry, inp: int, prefix: str, keypath: str, conds: tuple, index: int):
        if isinstance(entry, str):
            op, raw = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            op, raw = next(iter(entry.items()))
            raw = {} if raw is None else raw
        elif isinstance(entry, dict) and len(entry) == 0:
            self.fail("a layer entry is empty; write e.g. `- relu` or `- conv: {out: 64, kernel: 3}`", keypath)
        elif isinstance(entry, dict):
            keys = ", ".join(map(str, entry))
            self.fail(f"a layer entry must have exactly one op key, but got {keys} (put `name` and `inputs` "
                      f"inside the op's parameters)", keypath)
        else:
            self.fail(f"a layer entry must be an op name or a mapping, but got {_kind_name(entry)}", keypath)
        if not isinstance(op, str):
            self.fail(f"a layer's op must be a name, but got {op!r}", keypath)
        kp = f"{keypath}.{op}"
        if op == "choice":
            return self.alternatives(raw, inp, prefix, kp, conds, index)
        if op not in PRIMITIVES and op not in MACROS:
            known = ", ".join(sorted(set(PRIMITIVES) | set(MACROS) - {"select"}))
            self.fail(f"unknown layer type `{op}` (known: {known})", kp, UnsupportedOpError)
        if not isinstance(raw, dict):
            self.fail(f"the parameters of `{op}` must be a mapping, but got {_kind_name(raw)}", kp)
        if op == "cell" and "type" not in raw and isinstance(raw.get("name"), str):
            # `- cell: {name: nb201}` names the cell definition, not the layer
            raw = {**{k: v for k, v in raw.items() if k != "name"}, "type": raw["name"]}
        local = raw.get("name", f"{op}{index}")
        if not isinstance(local, str) or not local:
            self.fail(f"`name` must be a non-empty string, but got {local!r}", f"{kp}.name")
        name = prefix + local
        where = f"layer `{name}` ({op})"
        if op in PRIMITIVES:
            params, tmpl = self.params(op, PRIMITIVES[op], raw, kp, where, conds)
            inputs = self.resolve_inputs(raw.get("inputs"), inp, prefix, f"{kp}.inputs")
            if op in JOINS and len(inputs) < 2:
                self.fail(f"{where} joins tensors and needs at least two `inputs`", f"{kp}.inputs")
            if op not in JOINS and len(inputs) != 1:
                self.fail(f"{where} takes one input, but `inputs` names {len(inputs)}", f"{kp}.inputs")
            out = self.primitive(op, name, inputs, params, conds, kp)
        else:
            params, tmpl = self.params(op, MACROS[op], raw, kp, where, conds)
            start = self.resolve_inputs(raw.get("inputs"), inp, prefix, f"{kp}.inputs")
            if len(start) != 1:
                self.fail(f"{where} takes one input, but `inputs` names {len(start)}", f"{kp}.inputs")
            out, tmpl = getattr(self, f"macro_{op}")(start[0], name, params, tmpl, raw, kp, conds, prefix)
            if name in self.by_name and self.by_name[name] != out:
                self.fail(f"the layer name `{name}` is used twice; layer names must be unique", kp)
            self.by_name.setdefault(name, out)
        if isinstance(tmpl, (TStage, TAlt)):
            return out, tmpl
        if "inputs" in raw:
            tmpl["inputs"] = raw["inputs"]
        tmpl["name"] = local
        return out, {op: tmpl}

    def primitive(self, op, name, inputs, params, conds, keypath, when=None) -> int:
        if op in ALIASES:
            op = ALIASES[op]
            params = {} if op == "identity" else params
        if op == "conv":
            params = dict(params)
            params["out"] = self.scaled(params["out"], params.pop("width"))
        return self.add_node(op, name, inputs, params, conds, keypath, when)

    def prim(self, op, name, inp, conds, keypath, **params) -> int:
        """A primitive node from macro code (parameters are Exprs or plain values)."""
        op = ALIASES.get(op, op)
        full = {k: (v if isinstance(v, (Expr, tuple)) else Const(v)) for k, v in params.items()}
        defaults = PRIMITIVES[op]
        for k, (kind, d) in defaults.items():
            if k not in full and k != "width":
                full[k] = Const(d)
        inputs = inp if isinstance(inp, list) else [inp]
        return self.add_node(op, name, inputs, full, conds, keypath)

    def act(self, act_expr: Expr, x: int, name: str, conds, keypath) -> int:
        """An activation that may itself be a choice (one node per option, then a select)."""
        if isinstance(act_expr, Const):
            return x if act_expr.value == "none" else self.prim(act_expr.value, name, x, conds, keypath)
        g = act_expr.gene
        outs, index = [], []
        for o, val in enumerate(act_expr.options):
            if val == "none":
                index.append(self._slot(outs, x))
                continue
            allowed = frozenset(i for i, v in enumerate(act_expr.options) if v == val)
            nid = self.by_name.get(f"{name}.{val}")
            if nid is None:
                nid = self.prim(val, f"{name}.{val}", x, conds + ((g, allowed),), keypath)
            index.append(self._slot(outs, nid))
        return self.select(g, outs, index, f"{name}.select", conds, keypath)

    @staticmethod
    def _slot(outs: list, nid: int) -> int:
        if nid not in outs:
            outs.append(nid)
        return outs.index(nid)

    def select(self, g, outs, index, name, conds, keypath) -> int:
        return self.add_node("select", name, outs, {"gene": g, "index": tuple(index)}, conds, keypath)

    def optional(self, e: Expr, pred, conds):
        """Conditions under which a sub-block controlled by a parameter exists, or None if never."""
        if isinstance(e, Const):
            return conds if pred(e.value) else None
        allowed = frozenset(i for i, v in enumerate(e.options) if pred(v))
        if not allowed:
            return None
        if len(allowed) == len(e.options):
            return conds
        return conds + ((e.gene, allowed),)

    # -- macros -----------------------------------------------------------------------------
    def conv_bn(self, x, name, conds, kp, out, kernel, stride=Const(1), groups=Const(1), act=None,
                caffe=False, bias=False, pad=Const("same")):
        if _is_same(pad):
            pad = Fn(_same_pad, (kernel,)) if not isinstance(kernel, tuple) else tuple(Fn(_same_pad, (k,)) for k in kernel)
        y = self.prim("conv", name, x, conds, kp, out=out, kernel=kernel, stride=stride, pad=pad,
                      groups=groups, bias=bias, dilation=1)
        y = self.prim("batchnorm", f"{name}.bn", y, conds, kp, affine=not caffe)
        if caffe:
            y = self.prim("scale", f"{name}.scale", y, conds, kp)
        if act is not None:
            y = self.act(act, y, f"{name}.act", conds, kp)
        return y

    def macro_conv_bn_act(self, x, name, p, tmpl, raw, kp, conds, prefix):
        out = self.scaled(p["out"], p["width"])
        y = self.conv_bn(x, f"{name}.conv", conds, kp, out, p["kernel"], p["stride"], p["groups"], p["act"],
                         pad=p["pad"])
        return y, tmpl

    def macro_relu_conv_bn(self, x, name, p, tmpl, raw, kp, conds, prefix):
        out = Channels(x) if (isinstance(p["out"], Const) and p["out"].value is None) else self.scaled(p["out"], Const(True))
        y = self.prim("relu", f"{name}.relu", x, conds, kp)
        y = self.conv_bn(y, f"{name}.conv", conds, kp, out, p["kernel"], p["stride"])
        return y, tmpl

    def macro_mbconv(self, x, name, p, tmpl, raw, kp, conds, prefix):
        for v in ([p["expand"].value] if isinstance(p["expand"], Const) else p["expand"].options):
            if v < 1:
                self.fail(f"`expand` of layer `{name}` (mbconv) must be >= 1 (the expansion ratio of an inverted "
                          f"residual), but got {v}", f"{kp}.expand")
        out = self.scaled(p["out"], p["width"])
        y = x
        if isinstance(p["hidden"], Const) and p["hidden"].value is None:
            hidden = Fn(lambda c, e: _round_half_even(c * e), (Channels(x), p["expand"]))
            c_exp = self.optional(p["expand"], lambda v: v != 1, conds)
        else:  # explicit expanded channels (MobileNetV3's table): the expansion conv is always there
            hidden, c_exp = self.scaled(p["hidden"], p["width"]), conds
        if c_exp is not None:
            y = self.conv_bn(x, f"{name}.expand", c_exp, kp, hidden, Const(1), groups=p["groups"], act=p["act"])
            if p["shuffle"].value:  # FBNet's g2 blocks: channel shuffle between the grouped 1x1 convs
                y = self._shuffle(y, f"{name}.shuffle", p["groups"], c_exp, kp)
        pad = Fn(_same_pad, (p["kernel"],))
        y = self.prim("dwconv", f"{name}.dw", y, conds, kp, kernel=p["kernel"], stride=p["stride"], pad=pad)
        y = self.prim("batchnorm", f"{name}.dw.bn", y, conds, kp)
        y = self.act(p["act"], y, f"{name}.dw.act", conds, kp)
        c_se = self.optional(p["se"], lambda v: v > 0, conds)
        if c_se is not None:
            y = self._mbconv_se(x, y, name, p, c_se, kp)
        y = self.conv_bn(y, f"{name}.project", conds, kp, out, Const(1), groups=p["groups"])
        if isinstance(p["skip"], Const) and p["skip"].value:
            when = Fn(lambda s, cin, cout: (s == 1) & (cin == cout), (_first(p["stride"]), Channels(x), out))
            y = self._drop_path(y, name, p["drop_path"], when, conds, kp)
            y = self.add_node("add", f"{name}.add", [y, x], {}, conds, kp, when=when)
        return y, tmpl

    def squeeze_excite(self, x, name, squeeze: Expr, conds, kp, gate="hsigmoid"):
        s = self.prim("globalpool", f"{name}.pool", x, conds, kp)
        s = self.prim("conv", f"{name}.reduce", s, conds, kp, out=squeeze, kernel=1, bias=True)
        s = self.prim("relu", f"{name}.relu", s, conds, kp)
        s = self.prim("conv", f"{name}.expand", s, conds, kp, out=Channels(x), kernel=1, bias=True)
        s = self.prim(gate, f"{name}.gate", s, conds, kp)
        return self.prim("mul", f"{name}.mul", [x, s], conds, kp)

    def macro_se(self, x, name, p, tmpl, raw, kp, conds, prefix):
        if isinstance(p["squeeze"], Const) and p["squeeze"].value is None:
            squeeze = Fn(lambda c, r: make_divisible(c * r, 8), (Channels(x), p["ratio"]))
        else:  # an explicit squeeze width (RegNet, SENet): a channel count like any conv's `out`
            squeeze = self.scaled(p["squeeze"], Const(True))
        return self.squeeze_excite(x, name, squeeze, conds, kp, gate=p["gate"].value), tmpl

    def _shortcut(self, x, name, out, stride, conds, kp, caffe=False):
        """A projection shortcut when stride or channels change, else the identity."""
        needs = Fn(lambda s, cin, cout: (s != 1) | (cin != cout), (_first(stride), Channels(x), out))
        pad0 = Const(0)
        sc = self.prim("conv", f"{name}.shortcut", x, conds, kp, out=out, kernel=1, stride=stride, pad=pad0, bias=False)
        self.nodes[sc].when = needs
        sc = self.prim("batchnorm", f"{name}.shortcut.bn", sc, conds, kp, affine=not caffe)
        self.nodes[sc].when = needs
        if caffe:
            sc = self.prim("scale", f"{name}.shortcut.scale", sc, conds, kp)
            self.nodes[sc].when = needs
        return sc

    def macro_basic(self, x, name, p, tmpl, raw, kp, conds, prefix):
        out = self.scaled(p["out"], p["width"])
        y = self.conv_bn(x, f"{name}.conv1", conds, kp, out, Const(3), p["stride"], act=Const("relu"))
        y = self.conv_bn(y, f"{name}.conv2", conds, kp, out, Const(3))
        sc = self._shortcut(x, name, out, p["stride"], conds, kp)
        y = self.prim("add", f"{name}.add", [y, sc], conds, kp)
        return self.prim("relu", f"{name}.relu", y, conds, kp), tmpl

    def macro_bottleneck(self, x, name, p, tmpl, raw, kp, conds, prefix):
        mid = self.scaled(p["mid"], p["width"])
        out = (Fn(lambda m: 4 * m, (mid,)) if isinstance(p["out"], Const) and p["out"].value is None
               else self.scaled(p["out"], p["width"]))
        caffe = p["norm"].value == "caffe"
        first = p["stride_on"].value == "first"
        s1, s2 = (p["stride"], Const(1)) if first else (Const(1), p["stride"])
        relu = Const("relu")
        y = self.conv_bn(x, f"{name}.conv1", conds, kp, mid, Const(1), s1, act=relu, caffe=caffe)
        y = self.conv_bn(y, f"{name}.conv2", conds, kp, mid, Const(3), s2, p["groups"], act=relu, caffe=caffe)
        c_se = self.optional(p["se"], lambda v: v > 0, conds)
        if c_se is not None:
            # RegNetY / pycls: the squeeze width is a ratio of the BLOCK's input channels, rounded
            # (at least one channel: a zero-width conv would price as free)
            squeeze = Fn(lambda c, r: np.maximum(_round_half_even(c * r), 1), (Channels(x), p["se"]))
            y = self.squeeze_excite(y, f"{name}.se", squeeze, c_se, kp, gate="sigmoid")
        y = self.conv_bn(y, f"{name}.conv3", conds, kp, out, Const(1), caffe=caffe)
        sc = self._shortcut(x, name, out, p["stride"], conds, kp, caffe=caffe)
        y = self.prim("add", f"{name}.add", [y, sc], conds, kp)
        return self.prim("relu", f"{name}.relu", y, conds, kp), tmpl

    def macro_inception(self, x, name, p, tmpl, raw, kp, conds, prefix):
        w = p["width"]
        c = {k: self.scaled(p[k], w) for k in ("c1", "c3r", "c3", "c5r", "c5", "pool_proj")}

        def conv_relu(inp, suffix, out, k):
            y = self.prim("conv", f"{name}.{suffix}", inp, conds, kp, out=out, kernel=k, pad=(k - 1) // 2)
            return self.prim("relu", f"{name}.{suffix}.relu", y, conds, kp)

        b1 = conv_relu(x, "1x1", c["c1"], 1)
        b2 = conv_relu(conv_relu(x, "3x3_reduce", c["c3r"], 1), "3x3", c["c3"], 3)
        b3 = conv_relu(conv_relu(x, "5x5_reduce", c["c5r"], 1), "5x5", c["c5"], 5)
        pool = self.prim("maxpool", f"{name}.pool", x, conds, kp, kernel=3, stride=1, pad=1, ceil=True)
        b4 = conv_relu(pool, "pool_proj", c["pool_proj"], 1)
        return self.prim("concat", f"{name}.output", [b1, b2, b3, b4], conds, kp), tmpl

    def macro_fire(self, x, name, p, tmpl, raw, kp, conds, prefix):
        w = Const(True)
        s = self.prim("conv", f"{name}.squeeze", x, conds, kp, out=self.scaled(p["squeeze"], w), kernel=1)
        s = self.prim("relu", f"{name}.squeeze.relu", s, conds, kp)
        e1 = self.prim("conv", f"{name}.expand1x1", s, conds, kp, out=self.scaled(p["e1"], w), kernel=1)
        e1 = self.prim("relu", f"{name}.expand1x1.relu", e1, conds, kp)
        e3 = self.prim("conv", f"{name}.expand3x3", s, conds, kp, out=self.scaled(p["e3"], w), kernel=3, pad=1)
        e3 = self.prim("relu", f"{name}.expand3x3.relu", e3, conds, kp)
        return self.prim("concat", f"{name}.concat", [e1, e3], conds, kp), tmpl

    # -- the mobile zoo's blocks ----------------------------------------------------------
    def _new_op(self, op, name, x, conds, kp, **params):
        """A primitive from the newer op set (shuffle, slice, layernorm, gelu, stochastic_depth)."""
        if op not in PRIMITIVES:
            self.fail(f"layer `{name}` needs the `{op}` op, which this version does not have", kp)
        return self.prim(op, name, x, conds, kp, **params)

    def _shuffle(self, x, name, groups: Expr, conds, kp):
        return self._new_op("shuffle", name, x, conds, kp, groups=groups)

    def macro_shufflev2(self, x, name, p, tmpl, raw, kp, conds, prefix):
        """ShuffleNetV2's unit. Stride 1: the input's channels split in halves; the second half
        goes through 1x1 conv-bn-relu, 3x3 depthwise-bn, 1x1 conv-bn-relu; concat with the first
        half. Stride 2: both branches see the whole input (3x3/2 depthwise-bn, 1x1 conv-bn-relu |
        1x1 conv-bn-relu, 3x3/2 depthwise-bn, 1x1 conv-bn-relu), concat. Then a channel shuffle
        of 2 groups. Each branch makes out/2 channels."""
        out = self.scaled(p["out"], p["width"])
        half = Fn(lambda c: c // 2, (out,))
        stride, relu = p["stride"], Const("relu")
        c2 = self.optional(stride, lambda v: (v[0] if isinstance(v, (list, tuple)) else v) != 1, conds)
        c1 = self.optional(stride, lambda v: (v[0] if isinstance(v, (list, tuple)) else v) == 1, conds)
        if c1 is not None and c2 is not None:
            self.fail(f"`stride` of layer `{name}` (shufflev2) cannot be a choice between 1 and 2: the "
                      f"units differ; choose between shufflev2 layers instead", f"{kp}.stride")
        if c1 is not None:
            cin_half = Fn(lambda c: c // 2, (Channels(x),))
            a = self._new_op("slice", f"{name}.split0", x, conds, kp, start=Const(0), end=cin_half)
            b = self._new_op("slice", f"{name}.split1", x, conds, kp, start=cin_half, end=Channels(x))
        else:
            a = self.prim("dwconv", f"{name}.branch1.dw", x, conds, kp, kernel=3, stride=stride, pad=1)
            a = self.prim("batchnorm", f"{name}.branch1.dw.bn", a, conds, kp)
            a = self.conv_bn(a, f"{name}.branch1.pw", conds, kp, half, Const(1), act=relu)
            b = x
        b = self.conv_bn(b, f"{name}.branch2.pw1", conds, kp, half, Const(1), act=relu)
        b = self.prim("dwconv", f"{name}.branch2.dw", b, conds, kp, kernel=3, stride=stride, pad=1)
        b = self.prim("batchnorm", f"{name}.branch2.dw.bn", b, conds, kp)
        b = self.conv_bn(b, f"{name}.branch2.pw2", conds, kp, half, Const(1), act=relu)
        y = self.prim("concat", f"{name}.concat", [a, b], conds, kp)
        return self._shuffle(y, f"{name}.shuffle", Const(2), conds, kp), tmpl

    def macro_convnext(self, x, name, p, tmpl, raw, kp, conds, prefix):
        """ConvNeXt's block on C channels: 7x7 depthwise conv with bias, layernorm over channels,
        1x1 (Linear) to expand*C with bias, gelu, 1x1 back to C with bias, layer scale (a per-
        channel gamma), stochastic depth (identity at inference), add the input."""
        k = p["kernel"]
        y = self.prim("dwconv", f"{name}.dw", x, conds, kp, kernel=k, pad=Fn(_same_pad, (k,)), bias=True)
        y = self._new_op("layernorm", f"{name}.norm", y, conds, kp)
        wide = Fn(lambda c, e: c * e, (Channels(x), p["expand"]))
        y = self.prim("conv", f"{name}.pw1", y, conds, kp, out=wide, kernel=1, bias=True)
        y = self._new_op("gelu", f"{name}.gelu", y, conds, kp)
        y = self.prim("conv", f"{name}.pw2", y, conds, kp, out=Channels(x), kernel=1, bias=True)
        y = self.prim("scale", f"{name}.layer_scale", y, conds, kp, bias=False)
        y = self._new_op("stochastic_depth", f"{name}.drop_path", y, conds, kp, p=p["drop_path"])
        return self.prim("add", f"{name}.add", [y, x], conds, kp), tmpl

    def _mbconv_se(self, x, y, name, p, c_se, kp):
        """mbconv's squeeze-excite: MobileNetV3's by default (make_divisible(expanded * se, 8), relu,
        hsigmoid); EfficientNet squeezes the block input (se_base: input, se_divisor: 1) with swish
        and a sigmoid gate."""
        if (p["se_base"].value, p["se_divisor"].value) == ("expanded", 8):
            squeeze = Fn(lambda c, r: make_divisible(c * r, 8), (Channels(y), p["se"]))
        else:
            div = p["se_divisor"].value
            base = Channels(y) if p["se_base"].value == "expanded" else Channels(x)
            squeeze = Fn(lambda c, r: make_divisible(c * r, div), (base, p["se"]))
        if (p["se_act"].value, p["se_gate"].value) == ("relu", "hsigmoid"):
            return self.squeeze_excite(y, f"{name}.se", squeeze, c_se, kp)
        return self._squeeze_excite_as(y, f"{name}.se", squeeze, c_se, kp, p["se_act"], p["se_gate"].value)

    def _squeeze_excite_as(self, x, name, squeeze: Expr, conds, kp, act: Expr, gate: str):
        """squeeze_excite with another activation and gate (EfficientNet: swish, sigmoid)."""
        s = self.prim("globalpool", f"{name}.pool", x, conds, kp)
        s = self.prim("conv", f"{name}.reduce", s, conds, kp, out=squeeze, kernel=1, bias=True)
        s = self.act(act, s, f"{name}.act", conds, kp)
        s = self.prim("conv", f"{name}.expand", s, conds, kp, out=Channels(x), kernel=1, bias=True)
        s = self.prim(gate, f"{name}.gate", s, conds, kp)
        return self.prim("mul", f"{name}.mul", [x, s], conds, kp)

    def macro_fused_mbconv(self, x, name, p, tmpl, raw, kp, conds, prefix):
        """EfficientNetV2's FusedMBConv: a kxk conv to the expanded channels (bn, act) and a 1x1
        linear projection (bn); with expand 1 a single kxk conv to `out` (bn, act). A residual add
        when stride 1 and in == out."""
        if not isinstance(p["expand"], Const):
            self.fail(f"`expand` of layer `{name}` (fused_mbconv) cannot be a choice; choose between "
                      f"fused_mbconv layers instead", f"{kp}.expand")
        e = p["expand"].value
        if e < 1:
            self.fail(f"`expand` of layer `{name}` (fused_mbconv) must be >= 1, but got {e}", f"{kp}.expand")
        out = self.scaled(p["out"], p["width"])
        if e == 1:
            y = self.conv_bn(x, f"{name}.conv", conds, kp, out, p["kernel"], p["stride"], act=p["act"])
        else:
            hidden = Fn(lambda c: _round_half_even(c * e), (Channels(x),))
            y = self.conv_bn(x, f"{name}.expand", conds, kp, hidden, p["kernel"], p["stride"], act=p["act"])
            y = self.conv_bn(y, f"{name}.project", conds, kp, out, Const(1))
        if p["skip"].value:
            when = Fn(lambda s, cin, cout: (s == 1) & (cin == cout), (_first(p["stride"]), Channels(x), out))
            y = self._drop_path(y, name, p["drop_path"], when, conds, kp)
            y = self.add_node("add", f"{name}.add", [y, x], {}, conds, kp, when=when)
        return y, tmpl

    def _drop_path(self, y, name, p_drop: Expr, when, conds, kp):
        """Stochastic depth on the residual branch (EfficientNet's), only where the block adds and
        only when written (drop_path > 0): the identity at inference, it costs nothing."""
        if isinstance(p_drop, Const) and not p_drop.value:
            return y
        y = self._new_op("stochastic_depth", f"{name}.drop_path", y, conds, kp, p=p_drop)
        self.nodes[y].when = when
        return y

    def _ghost(self, x, name, out, p_kernel, ratio, dw_kernel, act, conds, kp):
        """GhostNet's module: a primary conv to out/ratio channels (bn, act), a depthwise conv
        making ratio-1 cheap maps of each (bn, act), both concatenated to `out` channels."""
        init = Fn(lambda c: -(-c // ratio), (out,))
        y1 = self.conv_bn(x, f"{name}.primary", conds, kp, init, p_kernel, act=act)
        y2 = self.prim("dwconv", f"{name}.cheap", y1, conds, kp, kernel=dw_kernel, multiplier=ratio - 1,
                       pad=Fn(_same_pad, (dw_kernel,)))
        y2 = self.prim("batchnorm", f"{name}.cheap.bn", y2, conds, kp)
        y2 = self.act(act, y2, f"{name}.cheap.act", conds, kp)
        return self.prim("concat", f"{name}.concat", [y1, y2], conds, kp)

    def _check_ghost_out(self, out: Expr, ratio: int, name, kp):
        # the reference keeps the first `out` of ceil(out/ratio)*ratio maps (a channel slice);
        # without a slice op the language builds exactly `out` only when ratio divides it
        for v in ([out.value] if isinstance(out, Const) else getattr(out, "options", [])):
            if v % ratio:
                self.fail(f"`out` of layer `{name}` ({v}) must be a multiple of its ghost `ratio` ({ratio})",
                          f"{kp}.out")

    def macro_ghost(self, x, name, p, tmpl, raw, kp, conds, prefix):
        ratio = p["ratio"].value
        if ratio < 2:
            self.fail(f"`ratio` of layer `{name}` (ghost) must be at least 2, but got {ratio}", f"{kp}.ratio")
        self._check_ghost_out(p["out"], ratio, name, kp)
        out = self.scaled(p["out"], p["width"])
        return self._ghost(x, name, out, p["kernel"], ratio, p["dw_kernel"], p["act"], conds, kp), tmpl

    def macro_ghost_bottleneck(self, x, name, p, tmpl, raw, kp, conds, prefix):
        """GhostNet's bottleneck: ghost (relu), [kxk depthwise-bn when stride 2], [squeeze-excite to
        make_divisible(mid * se, 4), relu, hsigmoid], ghost (linear); the shortcut is the identity
        when stride 1 and in == out, else kxk depthwise-bn, 1x1 conv-bn."""
        for key in ("mid", "out"):
            self._check_ghost_out(p[key], 2, name, kp)
        mid, out = self.scaled(p["mid"], p["width"]), self.scaled(p["out"], p["width"])
        k, stride = p["kernel"], p["stride"]
        y = self._ghost(x, f"{name}.ghost1", mid, Const(1), 2, Const(3), Const("relu"), conds, kp)
        c_dw = self.optional(stride, lambda v: (v[0] if isinstance(v, (list, tuple)) else v) != 1, conds)
        if c_dw is not None:
            y = self.prim("dwconv", f"{name}.dw", y, c_dw, kp, kernel=k, stride=stride, pad=Fn(_same_pad, (k,)))
            y = self.prim("batchnorm", f"{name}.dw.bn", y, c_dw, kp)
        c_se = self.optional(p["se"], lambda v: v > 0, conds)
        if c_se is not None:
            squeeze = Fn(lambda c, r: make_divisible(c * r, 4), (Channels(y), p["se"]))
            y = self.squeeze_excite(y, f"{name}.se", squeeze, c_se, kp)
        y = self._ghost(y, f"{name}.ghost2", out, Const(1), 2, Const(3), Const("none"), conds, kp)
        needs = Fn(lambda s, cin, cout: (s != 1) | (cin != cout), (_first(stride), Channels(x), out))
        first = len(self.nodes)
        sc = self.prim("dwconv", f"{name}.shortcut.dw", x, conds, kp, kernel=k, stride=stride, pad=Fn(_same_pad, (k,)))
        sc = self.prim("batchnorm", f"{name}.shortcut.dw.bn", sc, conds, kp)
        sc = self.conv_bn(sc, f"{name}.shortcut.conv", conds, kp, out, Const(1))
        for nid in range(first, len(self.nodes)):
            self.nodes[nid].when = needs
        return self.prim("add", f"{name}.add", [y, sc], conds, kp), tmpl

    def macro_branch(self, x, name, p, tmpl, raw, kp, conds, prefix):
        paths = p["paths"]
        if not isinstance(paths, list) or len(paths) < 2:
            self.fail(f"`paths` of layer `{name}` (branch) must be a list of at least two layer lists", f"{kp}.paths")
        outs, ptmpl = [], []
        for i, path in enumerate(paths):
            if path is None:
                path = []
            o, t = self.layer_list(path, x, f"{name}.p{i}.", f"{kp}.paths[{i}]", conds)
            outs.append(o)
            ptmpl.append(t)
        # the main path flows first, so an inactive join passes it through
        order = sorted(range(len(outs)), key=lambda i: outs[i] == x) if p["join"].value == "add" else range(len(outs))
        join = "add" if p["join"].value == "add" else "concat"
        y = self.prim(join, f"{name}.{join}", [outs[i] for i in order], conds, kp)
        tmpl["paths"] = ptmpl
        return y, tmpl

    def macro_sequence(self, x, name, p, tmpl, raw, kp, conds, prefix):
        y, t = self.layer_list(p["layers"], x, f"{name}.", f"{kp}.layers", conds)
        tmpl["layers"] = t
        return y, tmpl

    def macro_stage(self, x, name, p, tmpl, raw, kp, conds, prefix):
        block, blocks, depth_raw = raw.get("block"), raw.get("blocks"), raw.get("depth")
        if (block is None) == (blocks is None):
            self.fail(f"layer `{name}` (stage) needs exactly one of `block` (with `depth`) or `blocks`", kp)
        if blocks is not None:
            if not isinstance(blocks, list):
                self.fail(f"`blocks` of layer `{name}` (stage) must be a list of layer entries", f"{kp}.blocks")
            y, copies = x, []
            # blocks with distinct names of their own (decode writes b0, b1, ...) are <stage>.<name>;
            # otherwise the index keeps them apart (<stage>.<i>.mbconv0, the names of the golden tables)
            own = [_entry_name(b) for b in blocks]
            by_name = None not in own and len(set(own)) == len(own)
            for i, b in enumerate(blocks):
                y, t = self.layer(b, y, f"{name}." if by_name else f"{name}.{i}.", f"{kp}.blocks[{i}]", conds, 0)
                copies.append(t)
            return y, TStage(_local(name, prefix), len(blocks), copies, {})
        if depth_raw is None:
            self.fail(f"layer `{name}` (stage) with `block` needs `depth`", kp)
        depth_e, depth_t = p["depth"], tmpl.get("depth")
        depths = [int(v) for v in ([depth_e.value] if isinstance(depth_e, Const) else depth_e.options)]
        if max(depths) > MAX_STAGE_DEPTH:
            self.fail(f"`depth` of layer `{name}` (stage) must be at most {MAX_STAGE_DEPTH:,}, but got "
                      f"{max(depths):,}", f"{kp}.depth")
        share = bool(p["share"].value)
        g = depth_e.gene if isinstance(depth_e, GeneVal) else None
        parent = self.tree_stack[-1]
        if g is not None:
            # the depth gene's leaf was appended by value(); replace it with a structured Choice
            parent.children.pop()
        copy_trees, copies, y = [], [], x
        for i in range(max(depths)):
            if g is None:
                c = conds
            else:
                c = conds + ((g, frozenset(o for o, d in enumerate(depths) if d > i)),)
            entry = block
            if i > 0:
                entry = _with_stride_one(block)
            self.tree_stack.append(Prod())
            if share:
                self.share += 1
            kp_i = f"{kp}[0]" if share else f"{kp}[{i}]"
            y, t = self.layer(entry, y, f"{name}.{i}.", kp_i, c, 0)
            if share:
                self.share -= 1
            copy_trees.append(self.tree_stack.pop())
            copies.append(t)
        if g is None:
            parent.children.extend(copy_trees if not share else copy_trees[:1])
        elif share:
            parent.children.append(Choice(g, [copy_trees[0] if d > 0 else None for d in depths]))
        else:
            parent.children.append(Choice(g, [Prod(copy_trees[:d]) for d in depths]))
        return y, TStage(_local(name, prefix), depth_t if g is not None else depths[0], copies, {})

    def macro_cell(self, x, name, p, tmpl, raw, kp, conds, prefix):
        cname = raw.get("type")
        if cname not in self.cells:
            known = ", ".join(sorted(self.cells)) or "no cells are defined"
            self.fail(f"layer `{name}` uses cell `{cname}`, which the top-level `cells` map does not define (known: {known})", kp)
        cdef = self.cells[cname]
        nodes = cdef["nodes"]
        genes = self.cell_genes.setdefault(cname, {})
        state = [x]
        for j in range(1, nodes):
            ins = []
            for i in range(j):
                key = f"{j}<-{i}"
                ekp = f"cells.{cname}.edge[{key}]"
                spec = cdef["edges"].get(key, cdef.get("edge")) if isinstance(cdef.get("edges"), dict) else cdef.get("edge")
                if spec is None:
                    self.fail(f"cell `{cname}` gives no op for edge {key}", ekp)
                alts = spec["choice"] if _is_choice(spec) else [spec]
                if len(alts) == 1:
                    o, _ = self.layer(alts[0], state[i], f"{name}.e{j}{i}.", ekp, conds, 0)
                    ins.append(o)
                    continue
                if key not in genes:
                    saved = self.tree_stack
                    self.tree_stack = [saved[0]]  # cell genes are global: one genotype per network
                    genes[key] = self.new_gene(ekp, [_alt_label(a) for a in alts], (), ekp, raw=alts)
                    self.tree_stack = saved
                g = genes[key]
                outs = []
                for a, alt in enumerate(alts):
                    o, _ = self.layer(alt, state[i], f"{name}.e{j}{i}.o{a}.", ekp, conds + ((g, frozenset([a])),), 0)
                    outs.append(o)
                ins.append(self.select(g, outs, list(range(len(outs))), f"{name}.e{j}{i}.select", conds, ekp))
            state.append(ins[0] if len(ins) == 1 else self.prim("add", f"{name}.node{j}", ins, conds, kp))
        return state[-1], tmpl

    def alternatives(self, raw, inp, prefix, kp, conds, index):
        if not isinstance(raw, list) or not raw:
            self.fail("a layer `choice` must be a non-empty list of alternatives (a layer entry or a list of them)", kp)
        name = f"{prefix}choice{index}"
        g = self.new_gene(kp, [_alt_label(a) for a in raw], conds, kp, raw=raw)
        self.tree_stack[-1].children.pop()
        outs, alts, trees = [], [], []
        for a, alt in enumerate(raw):
            entries = alt if isinstance(alt, list) else [alt]
            self.tree_stack.append(Prod())
            o, t = self.layer_list(entries, inp, f"{name}.{a}.", f"{kp}[{a}]", conds + ((g, frozenset([a])),))
            trees.append(self.tree_stack.pop())
            outs.append(o)
            alts.append(t)
        self.tree_stack[-1].children.append(Choice(g, trees))
        uniq, index_map = [], []
        for o in outs:
            index_map.append(self._slot(uniq, o))
        out = self.select(g, uniq, index_map, f"{name}.select", conds, kp)
        self.by_name[name] = out
        return out, TAlt(g, f"choice{index}", alts)

    # -- top level --------------------------------------------------------------------------
    def compile(self, spec) -> Program:
        src = self.source
        if not isinstance(spec, dict):
            raise SpecError(f"{src} must hold a mapping with `input` and `layers`, but holds {_kind_name(spec)} ({src})")
        unknown = [k for k in spec if k not in TOP_KEYS]
        if unknown:
            self.fail(f"unknown top-level key `{unknown[0]}` (allowed: {', '.join(sorted(TOP_KEYS))})", str(unknown[0]))
        for key in ("input", "layers"):
            if key not in spec:
                self.fail(f"the file needs a top-level `{key}`", key)
        template: dict = {"name": spec.get("name")}
        choices = spec.get("choices") or {}
        if not isinstance(choices, dict):
            self.fail("`choices` must be a mapping of names to {choice: [...]}", "choices")
        template["choices"] = {}
        for cname, craw in choices.items():
            if not _is_choice(craw):
                self.fail(f"`choices.{cname}` must be {{choice: [...]}}", f"choices.{cname}")
            e, _ = self.value(craw, f"choices.{cname}", ())
            self.named[str(cname)] = e.gene
        inp = spec["input"]
        if not isinstance(inp, dict):
            self.fail("`input` must be a mapping like {channels: 3, resolution: 224}", "input")
        bad = [k for k in inp if k not in ("channels", "resolution")]
        if bad:
            self.fail(f"`input` has no key `{bad[0]}` (allowed: channels, resolution)", f"input.{bad[0]}")
        ch = inp.get("channels", 3)
        if isinstance(ch, bool) or not isinstance(ch, int) or not 1 <= ch <= MAX_INT:
            self.fail(f"`channels` of the input must be an integer from 1 to {MAX_INT:,}, but got {ch!r}",
                      "input.channels")
        if "resolution" not in inp:
            self.fail("`input` needs `resolution` (an integer, [h, w], or a choice)", "input.resolution")
        res = inp["resolution"]
        tin = {"channels": ch}
        if isinstance(res, list):
            if len(res) != 2:
                self.fail(f"`resolution` must be one integer or [h, w], but got {res!r}", "input.resolution")
            (h, th), (w, tw) = (self.value(r, f"input.resolution[{i}]", ()) for i, r in enumerate(res))
            tin["resolution"] = [th, tw]
        else:
            h, t = self.value(res, "input.resolution", ())
            w = h
            tin["resolution"] = t
        for e in (h, w):
            self._check_expr(_POSINT, e, "resolution", "the input", "input.resolution")
        template["input"] = tin
        if "width_multiplier" in spec:
            self.width, template["width_multiplier"] = self.value(spec["width_multiplier"], "width_multiplier", ())
            self._check_expr(_NUM, self.width, "width_multiplier", "the network", "width_multiplier")
            for v in ([self.width.value] if isinstance(self.width, Const) else self.width.options):
                if v <= 0:
                    self.fail(f"`width_multiplier` must be > 0, but got {v}", "width_multiplier")
        if "width_divisor" in spec:
            d = spec["width_divisor"]
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= MAX_INT:
                self.fail(f"`width_divisor` must be an integer from 1 to {MAX_INT:,}, but got {d!r}", "width_divisor")
            self.divisor = d
            template["width_divisor"] = d
        cells = spec.get("cells") or {}
        if not isinstance(cells, dict):
            self.fail("`cells` must be a mapping of cell names to definitions", "cells")
        for cname, cdef in cells.items():
            ckp = f"cells.{cname}"
            if not isinstance(cdef, dict) or "nodes" not in cdef or ("edge" not in cdef and "edges" not in cdef):
                self.fail(f"cell `{cname}` needs `nodes` and `edge` (or `edges`)", ckp)
            n = cdef["nodes"]
            if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_CELL_NODES:
                self.fail(f"`nodes` of cell `{cname}` must be an integer from 2 to {MAX_CELL_NODES}, but got {n!r}",
                          f"{ckp}.nodes")
            self.cells[str(cname)] = cdef
        layers = spec["layers"]
        if not isinstance(layers, list) or not layers:
            self.fail("`layers` must be a non-empty list of layer entries", "layers")
        out, ltmpl = self.layer_list(layers, -1, "", "layers", ())
        template["layers"] = ltmpl
        template["cells"] = {c: {"nodes": d["nodes"]} for c, d in self.cells.items()}
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            self.fail(f"`name` must be a string, but got {name!r}", "name")
        prog = Program(src, name or "", ch, h, w, self.nodes, self.genes, self.tree_stack[0], template, out)
        prog.cells = {c: {"def": d, "genes": dict(self.cell_genes.get(c, {}))} for c, d in self.cells.items()}
        return prog


def _is_same(pad) -> bool:
    return isinstance(pad, Const) and pad.value == "same"


def _same_pad(k):
    return (k - 1) // 2


def _first(e):
    return e[0] if isinstance(e, tuple) else e


def _round_half_even(v):
    out = np.rint(v).astype(np.int64) if isinstance(v, np.ndarray) else int(round(v))
    return out


def _local(name: str, prefix: str) -> str:
    return name[len(prefix):] if prefix and name.startswith(prefix) else name


def _entry_name(entry):
    """The `name` a layer entry gives itself, or None (an op name alone, a choice, no name; the
    short `- cell: {name: nb201}` names the cell definition, not the layer)."""
    if isinstance(entry, dict) and len(entry) == 1:
        op, params = next(iter(entry.items()))
        if op == "cell" and isinstance(params, dict) and "type" not in params:
            return None
        if isinstance(params, dict) and isinstance(params.get("name"), str):
            return params["name"]
    return None


def _with_stride_one(block):
    if isinstance(block, dict) and len(block) == 1:
        op, params = next(iter(block.items()))
        if isinstance(params, dict) and op in MACROS | PRIMITIVES and "stride" in (MACROS.get(op) or PRIMITIVES.get(op)):
            return {op: {**params, "stride": 1}}
    return block


def _alt_label(alt) -> str:
    if isinstance(alt, str):
        return alt
    if isinstance(alt, list):
        return "[" + ", ".join(_alt_label(a) for a in alt) + "]" if alt else "skip"
    if isinstance(alt, dict) and len(alt) == 1:
        op, p = next(iter(alt.items()))
        if isinstance(p, dict):
            inner = ",".join(f"{k}={v}" for k, v in p.items() if k not in ("name", "inputs"))
            return f"{op}({inner})" if inner else op
        return str(op)
    return repr(alt)


import numpy as np  # noqa: E402  (used by the small helpers above)
