"""Graph fusion: which layers a runtime folds into the kernel that produces their input.

A modern runtime does not run a network layer by layer. ONNX Runtime (CPU, ``ORT_ENABLE_ALL``)
folds a BatchNorm into the weights of the convolution before it, runs the activation that
follows inside the convolution kernel, and adds a residual input inside it too: ``conv -> bn
-> add -> relu`` is one kernel. A profile measured on such a runtime prices the fused kernel
with the producing layer's model; the layers folded into it cost nothing of their own.

The rules are data (``latency.fuse`` of a profile): a list of groups, each

    {into: [conv, dwconv], fold: [batchnorm, scale], join: [add], act: [relu, relu6, ...]}

read as the chain grammar ``producer fold* [join] [act]``: after a producer of ``into`` the
runtime absorbs any number of ``fold`` layers, then at most one two-input ``join`` (the other
input is added inside the kernel), then at most one ``act``. Each absorbed layer must be the
only reader of the tensor before it. ``select``, ``identity`` and ``dropout`` are transparent
(no kernel of their own); a ``select`` resolves per candidate, so the result is ``[L, B]``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops import TRANSPARENT_KINDS
from . import _check
from ._ops import Spill

TRANSPARENT = TRANSPARENT_KINDS  # kinds a fusion chain runs through (the op table's `transparent`)
# pass-through kinds a `cse` list may name: duplicates are then found through them (``duplicates``);
# a `select` is not one (its input differs per candidate)
CSE_THROUGH = ("identity", "dropout")


class Boundary(NamedTuple):
    """The fusion and layout state of the one tensor between two segments of the fast path,
    per row (``[B]`` arrays): what the priced layers after it depend on besides its shape.

    ``stage``/``group``/``fzero``: its fusion chain stage and group and whether it is a zero
    edge for fusion (``FusionRules.chain_stages``); ``pfam``: the family of its chain's producer
    (``_latency.PASS_FAMILIES``, -1 none: a fused activation in the next segment pays that
    family's pass, ``latency.fused_pass``); ``layout``: its layout; ``done_plain``/
    ``done_blocked``: whether its source tensor was already converted to that layout;
    ``is_zero``/``zdone``: whether its source is a zero edge and that edge already charged;
    ``z_layout``/``z_done_plain``/``z_elems``: for a zero edge, its input's layout, plain
    conversion and size; ``elems``: its source tensor's size (``LayoutRules.reorders``: the
    segment's own rows may not show it, when every layer reading it is inactive)."""

    stage: np.ndarray
    group: np.ndarray
    fzero: np.ndarray
    pfam: np.ndarray
    layout: np.ndarray
    done_plain: np.ndarray
    done_blocked: np.ndarray
    is_zero: np.ndarray
    zdone: np.ndarray
    z_layout: np.ndarray
    z_done_plain: np.ndarray
    z_elems: np.ndarray
    elems: np.ndarray

    @classmethod
    def start(cls, n: int) -> "Boundary":
        """The network input: no chain, plain, nothing converted."""
        z = np.zeros(n, dtype=np.int64)
        return cls(z - 1, z - 1, z, z - 1, *([z] * 9))

    def relevant(self, readers: int, fusion: bool, layout: bool) -> "Boundary":
        """Only what a segment whose layers read this tensor ``readers`` times can see: a fusion
        chain continues only through a tensor's one reader; without fusion (or layout) rules
        their fields never matter."""
        z = np.zeros_like(self.stage)
        b = self
        if not fusion or readers != 1:
            b = b._replace(stage=z - 1, group=z - 1, pfam=z - 1)
        if not fusion:
            b = b._replace(fzero=z)
        if not layout:
            b = b._replace(**{k: z for k in ("layout", "done_plain", "done_blocked", "is_zero", "zdone",
                                              "z_layout", "z_done_plain", "z_elems", "elems")})
        return b

    def take(self, idx) -> "Boundary":
        return Boundary(*(np.take(a, idx) for a in self))
_KEYS = ("into", "fold", "join", "act")
# chain stages: -1 none, 0 after the producer or a fold, 1 after the join, 2 closed (after the act)
_NONE, _OPEN, _JOINED, _CLOSED = -1, 0, 1, 2


class FusionRules:
    """Groups of ``{into, fold, join, act}`` op-kind lists (see the module docstring)."""

    def __init__(self, groups=()):
        self.groups = []
        for g in groups:
            self.groups.append({k: tuple(str(x) for x in g.get(k, ())) for k in _KEYS})
        self._producer = {}
        for gi, g in enumerate(self.groups):
            for kind in g["into"]:
                self._producer.setdefault(kind, gi)

    def __bool__(self) -> bool:
        return bool(self.groups)

    # ------------------------------------------------------------------------------ analysis

    def chain_stages(self, ops, inputs, mask, select_pos=None, entry=None, with_zero=False, family=None):
        """Fusion of every slot of a table's structure.

        ``ops``/``inputs``: per slot (inputs are slot indices, -1 the tensor entering the table);
        ``mask`` ``[L, B]``; ``select_pos``: select slot -> ``[B]`` chosen input position;
        ``entry``: ``(stage, group, readers)`` of the entering tensor (default: not a chain).
        (or a ``Boundary``: a segment's entering tensor, per row). Returns ``(fused [L, B] bool,
        stage [L, B] int8, group [L, B] int16)``, with ``with_zero`` also ``zero [L + 1, B]`` (is
        the tensor a zero edge, index i + 1; 0 the entry), with ``family`` (``[L, B]`` int: each
        producer slot's family code) last also ``pfam [L, B]``: the family of the producer of
        each slot's chain, carried along the chain as its group is (-1 none; a ``Boundary``
        entry's ``pfam`` for a chain that entered the table).
        """
        L = len(ops)
        B = mask.shape[1] if L else 0
        fused = np.zeros((L, B), dtype=bool)
        stage = np.full((L, B), _NONE, dtype=np.int8)
        group = np.full((L, B), -1, dtype=np.int16)
        pfam = np.full((L, B), -1, dtype=np.int8)
        if not self.groups or L == 0:
            return _chain_out(fused, stage, group, np.zeros((L + 1, B), dtype=bool), pfam, with_zero, family)
        readers = np.zeros(L + 1, dtype=np.int64)  # index i + 1; 0 is the entry
        for s in range(L):
            for i in set(inputs[s]):
                readers[i + 1] += 1
        e_zero, e_fam = False, -1
        if isinstance(entry, Boundary):
            # a segment of the fast path: the entering tensor's readers are this table's own
            e_stage, e_group, e_zero, e_fam = entry.stage, entry.group, entry.fzero, entry.pfam
        else:
            e_stage, e_group, e_readers = entry if entry is not None else (_NONE, -1, 0)
            if entry is not None:
                readers[0] = e_readers
        ent_stage = np.array(np.broadcast_to(np.asarray(e_stage, dtype=np.int8), (B,)))
        ent_group = np.array(np.broadcast_to(np.asarray(e_group, dtype=np.int16), (B,)))
        ent_fam = np.array(np.broadcast_to(np.asarray(e_fam, dtype=np.int8), (B,)))
        # is the tensor a `zero` edge (a multiply by 0 in the exported graph, plain layout)? A join
        # with such an input is not folded into the kernel that produces its other input
        zero = np.zeros((L + 1, B), dtype=bool)  # index i + 1; 0 is the entry
        zero[0] = e_zero

        def st(i):
            return (ent_stage, ent_group) if i < 0 else (stage[i], group[i])

        def fm(i):
            return ent_fam if i < 0 else pfam[i]

        for s in range(L):
            op = ops[s]
            ins = inputs[s]
            act = mask[s]
            if op == "zero":
                zero[s + 1] = True
            if op in TRANSPARENT:
                pos = np.asarray(select_pos[s]) if op == "select" and select_pos is not None and s in select_pos \
                    and len(ins) > 1 else None
                stage[s], group[s], pfam[s], zero[s + 1] = _through(ins, pos, readers, st, fm, zero, B)
                continue
            gi = self._producer.get(op)
            if gi is not None:
                stage[s] = np.where(act, _OPEN, _NONE)
                group[s] = np.where(act, gi, -1)
                if family is not None:
                    pfam[s] = np.where(act, family[s], -1)
            # absorbed into the chain of an input?
            if len(ins) == 1 and op not in self._producer:
                i = ins[0]
                if readers[i + 1] == 1:
                    s0, g0 = st(i)
                    ok_fold = self._allowed(op, "fold", g0) & (s0 == _OPEN)
                    ok_act = self._allowed(op, "act", g0) & ((s0 == _OPEN) | (s0 == _JOINED))
                    f = act & (ok_fold | ok_act)
                    fused[s] = f
                    stage[s] = np.where(f, np.where(ok_fold, _OPEN, _CLOSED), stage[s])
                    group[s] = np.where(f, g0, group[s])
                    if family is not None:
                        pfam[s] = np.where(f, fm(i), pfam[s])
            elif len(ins) == 2 and op not in self._producer:
                f, g, pf = self._join(op, ins, readers, st, fm, B)
                f &= act & ~zero[ins[0] + 1] & ~zero[ins[1] + 1]
                fused[s] = f
                stage[s] = np.where(f, _JOINED, stage[s])
                group[s] = np.where(f, g, group[s])
                pfam[s] = np.where(f, pf, pfam[s])
            if not (act is True or np.all(act)):
                # an inactive slot passes its first input through
                s0, g0 = st(ins[0])
                off = ~np.asarray(act, dtype=bool)
                stage[s] = np.where(off, s0, stage[s])
                group[s] = np.where(off, g0, group[s])
                if family is not None:
                    pfam[s] = np.where(off, fm(ins[0]), pfam[s])
                fused[s] &= ~off
        return _chain_out(fused, stage, group, zero, pfam, with_zero, family)

    def _join(self, op, ins, readers, st, fm, B):
        """``(fused, group, pfam)`` ``[B]`` of a two-input ``op``: the first input whose open
        chain (its only reader) may absorb it as a join, its group and producer family."""
        f = np.zeros(B, dtype=bool)
        g = np.full(B, -1, dtype=np.int16)
        pf = np.full(B, -1, dtype=np.int8)
        for i in ins:
            if readers[i + 1] != 1:
                continue
            s0, g0 = st(i)
            ok = self._allowed(op, "join", g0) & (s0 == _OPEN) & ~f
            g = np.where(ok, g0, g)
            pf = np.where(ok, fm(i), pf)
            f |= ok
        return f, g, pf

    def _allowed(self, op, key, g):
        """Per candidate: does group ``g`` (an ``[B]`` array, -1 none) absorb ``op`` as ``key``?"""
        ok = np.zeros(len(self.groups) + 1, dtype=bool)
        for gi, grp in enumerate(self.groups):
            ok[gi] = op in grp[key]
        return ok[np.asarray(g, dtype=np.int64)]  # index -1 is the trailing False

    def to_list(self) -> list:
        return [{k: list(g[k]) for k in _KEYS if g[k]} for g in self.groups]

    @classmethod
    def from_list(cls, v, source=None, key="latency.fuse", known_kinds=()) -> "FusionRules":
        if not isinstance(v, list):
            raise _check.err(f"`{key}` must be a list of {{into, fold, join, act}} groups, not {_check._kind(v)}",
                             source, key)
        groups = []
        for gi, g in enumerate(v):
            k = f"{key}[{gi}]"
            _check.mapping(g, source, k, required=("into",), optional=("fold", "join", "act"))
            grp = {}
            for part in _KEYS:
                vals = g.get(part, [])
                if not isinstance(vals, list) or not all(isinstance(x, str) for x in vals):
                    raise _check.err(f"`{k}.{part}` must be a list of op kinds", source, f"{k}.{part}")
                for x in vals:
                    if known_kinds and x not in known_kinds:
                        raise _check.err(f"`{k}.{part}`: `{x}` is not an op kind (known: {', '.join(sorted(known_kinds))})",
                                         source, f"{k}.{part}")
                grp[part] = vals
            groups.append(grp)
        return cls(groups)

    def __eq__(self, other) -> bool:
        return isinstance(other, FusionRules) and self.to_list() == other.to_list()

    def __repr__(self) -> str:
        return f"FusionRules({self.to_list()})"


def _through(ins, pos, readers, st, fm, zero, B) -> tuple:
    """``(stage, group, pfam, zero)`` of a transparent slot: its input's (a ``select``'s chosen
    input per row, ``pos``), if this slot is that tensor's only reader, else no chain."""
    if pos is not None:
        one = np.array([readers[i + 1] == 1 for i in ins])[pos]
        cols = np.arange(B)
        pick = [np.stack(v)[pos, cols] for v in zip(*(st(i) + (fm(i), zero[i + 1]) for i in ins))]
        return np.where(one, pick[0], _NONE), np.where(one, pick[1], -1), np.where(one, pick[2], -1), pick[3]
    s0, g0 = st(ins[0])
    one = readers[ins[0] + 1] == 1
    return (s0 if one else _NONE), (g0 if one else -1), (fm(ins[0]) if one else -1), zero[ins[0] + 1]


def _chain_out(fused, stage, group, zero, pfam, with_zero, family) -> tuple:
    """``chain_stages``'s result: ``zero`` with ``with_zero``, ``pfam`` (last) with ``family``."""
    out = (fused, stage, group) + ((zero,) if with_zero else ())
    return out + (pfam,) if family is not None else out


# --------------------------------------------------------------------------------------------- duplicates


def duplicates(ops, inputs, rows, kinds) -> np.ndarray:
    """``[L, B]`` int: for a layer that recomputes an earlier one, that layer's slot (else -1).

    A runtime's common-subexpression elimination computes a weightless op once per input: two
    ReLUs, two identical pools or two zero edges on the same tensor (NAS-Bench-201's cells do
    this) are one node. Two slots match when they have the same kind, read the same slots and
    have the same output size and op count (which tells the pool parameters apart).

    ``kinds`` naming a pass-through kind (``identity``, ``dropout``: ``CSE_THROUGH``) says the
    runtime removes those before it looks for duplicates (ONNX Runtime eliminates Identity nodes
    first): a ReLU of a tensor and a ReLU of its identity are one node. Profiles before this
    (no such kind in their ``cse``) compare the inputs as written."""
    mask = rows["mask"]
    L = len(ops)
    B = mask.shape[1] if L else 0
    alias = np.full((L, B), -1, dtype=np.int64)
    if not kinds or L == 0:
        return alias
    through = tuple(k for k in CSE_THROUGH if k in kinds)

    def source(i):
        while i >= 0 and ops[i] in through:
            i = inputs[i][0]
        return i

    groups: dict = {}
    for s, op in enumerate(ops):
        if op in kinds and op not in through:
            groups.setdefault((op, tuple(source(i) for i in inputs[s])), []).append(s)
    for slots in groups.values():
        if len(slots) < 2:
            continue
        for j, s in enumerate(slots):
            live_s = mask[s] | (ops[s] == "zero")
            for e in slots[:j]:
                live_e = (mask[e] | (ops[e] == "zero")) & (alias[e] < 0)
                same = live_s & live_e & (alias[s] < 0) & (rows["out_elems"][s] == rows["out_elems"][e]) \
                    & (rows["macs"][s] == rows["macs"][e])
                alias[s] = np.where(same, e, alias[s])
    return alias


# --------------------------------------------------------------------------------------------- layouts

_PLAIN, _BLOCKED = 0, 1
# Which layers of a `blocked` kind run blocked, by their channels (``LayoutRules.channels``):
# `any` (padded up to a block), `multiple` (a multiple of `block`; for a grouped conv, each
# group's input and output channels), `never`. Profiles without the key block every such layer.
CHANNEL_RULES = ("any", "multiple", "never")
CHANNELS_ANY = {"dense": "any", "grouped": "any", "depthwise": "any", "pool": "any"}
# the layout of a join fused into a producer (``LayoutRules``): always blocked (the rule of the
# profiles before the key), or blocked only when all its inputs are
FUSED_JOINS = ("blocked", "inputs")


def _depthwise(g, in_c, out_c):
    """Whether a conv of ``g`` groups (at least 1) is depthwise: one input and one output channel
    per group."""
    return (g > 1) & (g == in_c) & (g == out_c)


class LayoutRules:
    """A runtime's blocked tensor layout (ONNX Runtime's NCHWc on x86) and the conversions it costs.

    ONNX Runtime runs convolutions and pools in a blocked layout (channels in blocks of
    ``block``) and inserts a reorder wherever a tensor crosses to an op that only works on plain
    NCHW data (an LRN, a broadcast multiply, a three-way sum with a plain input, a zero edge, an
    fc) and back. Each reorder streams the tensor once: ``reorder`` ``(ms_per_mb, overhead_ms)``.
    The rules, as data (``latency.layout`` of a profile):

    - ``blocked``: kinds that need blocked input and produce blocked output (conv, dwconv, pools),
      except layers with fewer than ``narrow_below`` input channels per group, which read plain
      input directly (a stem on RGB);
    - ``follow``: kinds that run in whatever layout their input has (activations, BatchNorm);
    - ``joins``: kinds that are blocked when all their inputs are (and, for a concat, every
      input's channels are a multiple of ``block``), plain otherwise;
    - every other priced kind (and a ``zero`` edge, a multiply by 0) runs plain.

    Layers fused into a producer (``FusionRules``) share its output. The cost of converting a
    tensor is charged to the first layer that needs it converted, once per tensor and layout.

    ``fused_joins`` says what a join fused into a producer's kernel (``conv -> bn -> add``) runs
    in: ``"blocked"`` (profiles before this key: always blocked, nothing converted) or
    ``"inputs"`` (read on the runtime by ``measure._ortrules``): blocked only when every input is;
    else plain, its blocked inputs converted to plain. ONNX Runtime's NCHWc transformer folds a
    sum into a blocked conv only when the other input is blocked too; a sum with a plain input
    (a grouped conv whose groups do not fill whole blocks, an LRN, a shuffle) runs plain, alone
    or inside the plain conv, and the next blocked layer converts it back.

    ``from_blocked``: kinds of ``blocked`` that run blocked only on an input that already is
    (read on the runtime; profiles before the key: none). ONNX Runtime converts a plain input
    for a conv or a local pool, but runs a global pool on a plain input plain (NAS-Bench-201's
    classifier pools the plain sum of the last cell).
    """

    def __init__(self, blocked=(), follow=(), joins=(), block: int = 8, narrow_below: int = 8,
                 reorder=(0.0, 0.0), channels=None, spill=None, fused_joins: str = "blocked", from_blocked=(),
                 pad_channels: bool = False):
        self.pad_channels = bool(pad_channels)
        if fused_joins not in FUSED_JOINS:
            raise ValueError(f"layout fused_joins must be one of {FUSED_JOINS}, got {fused_joins!r}")
        self.fused_joins = fused_joins
        self.from_blocked = tuple(from_blocked)
        # a conversion of a tensor above the knee streams it from a farther cache (``Spill``)
        self.spill = Spill.of(spill)
        self.channels = dict(CHANNELS_ANY, **(channels or {}))
        bad = {k: v for k, v in self.channels.items() if k not in CHANNELS_ANY or v not in CHANNEL_RULES}
        if bad:
            raise ValueError(f"layout channel rules must be {sorted(CHANNELS_ANY)} -> one of {CHANNEL_RULES}, got {bad}")
        self.blocked = tuple(blocked)
        self.follow = tuple(follow)
        self.joins = tuple(joins)
        self.block = int(block)
        self.narrow_below = int(narrow_below)
        a, c = (float(x) for x in (reorder if not isinstance(reorder, dict) else
                                   (reorder.get("ms_per_mb", 0.0), reorder.get("overhead_ms", 0.0))))
        if not (np.isfinite(a) and np.isfinite(c)) or a < 0 or c < 0:
            raise ValueError("reorder coefficients must be finite and non-negative")
        self.reorder = (a, c)

    def __bool__(self) -> bool:
        return bool(self.blocked)

    def blockable(self, op, rows, s) -> np.ndarray:
        """[B] whether slot ``s`` (a kind of ``blocked``) can run blocked (``blockable_dims``)."""
        return self.blockable_dims(op, rows["in_c"][s], rows["out_c"][s], rows["groups"][s])

    def blockable_dims(self, op, in_c, out_c, groups) -> np.ndarray:
        """Whether a layer of a ``blocked`` kind with these channels runs blocked, by the
        ``channels`` rules (measured by the profiler on the runtime: ONNX Runtime's NCHWc
        transformer pads a dense conv's channels but runs a grouped conv blocked only when each
        group's channels fill whole blocks, and a pool only on a multiple of the block). A layer
        that cannot runs plain (a grouped conv as im2col and GEMM per group)."""
        b, rule = self.block, self.channels
        in_c, out_c = np.asarray(in_c), np.asarray(out_c)
        g = np.maximum(np.asarray(groups), 1)

        def fits(key, *counts):
            if rule[key] == "any":
                return np.ones(np.shape(in_c), dtype=bool)
            if rule[key] == "never":
                return np.zeros(np.shape(in_c), dtype=bool)
            ok = np.ones(np.shape(in_c), dtype=bool)
            for c in counts:
                ok &= c % b == 0
            return ok

        if op not in ("conv", "dwconv"):
            return fits("pool", in_c)
        depthwise = _depthwise(g, in_c, out_c)
        dense = (g <= 1) & ((in_c < self.narrow_below) | fits("dense", in_c))
        grouped = (g > 1) & ~depthwise & fits("grouped", in_c // g, out_c // g)
        return dense | grouped | (depthwise & fits("depthwise", out_c))

    def padded(self, kind, n, k, groups, in_c):
        """``(n, k, group_factor)``: the GEMM sizes a conv or depthwise conv that runs blocked
        works on, with ``pad_channels`` (else as given). ONNX Runtime's NCHWc kernels pad a
        tensor's channels to whole blocks: a blocked conv computes ``ceil(out / block)`` blocks of
        outputs from ``ceil(in / block)`` blocks of inputs (a stem narrower than ``narrow_below``
        reads its input plain, unpadded), a depthwise conv ``ceil(c / block) * block`` channels
        (``group_factor``: padded over real groups; 1.0 where nothing is padded). In place, convs whose channels were not
        multiples of 16 ran 1.2-1.8x what the unpadded sizes priced (median log ratio -0.16 to
        -0.38 on the 16:31 build's in-place samples, against +0.02 for whole blocks). ``n``, ``k``
        per group, ``in_c`` all groups' channels; a layer that runs plain keeps its sizes."""
        n, k, groups, in_c = np.broadcast_arrays(*(np.asarray(v) for v in (n, k, groups, in_c)))
        if not self.pad_channels or kind not in ("conv", "dwconv"):
            return n, k, 1.0
        b = self.block
        g = np.maximum(groups, 1)
        cin = np.maximum(in_c // g, 1)
        # (an inactive slot has 0 channels: whole blocks, nothing to pad)
        ragged = (g % b).any() if kind == "dwconv" else ((n % b).any() or ((in_c // g) % b).any())
        if not ragged:  # whole blocks already (most layers of most networks)
            return n, k, 1.0
        if kind == "dwconv" and self.channels["depthwise"] == "any":
            blocked = np.ones(n.shape, dtype=bool)  # the common case, without the rule's arrays
        else:
            blocked = np.asarray(self.blockable_dims(kind, in_c, n * g, groups), dtype=bool)
        up = lambda c: -(-c // b) * b  # noqa: E731
        depthwise = _depthwise(g, in_c, n * g)
        wide = cin >= self.narrow_below
        n_p = np.where(blocked & ~depthwise, up(n), n)
        k_p = np.where(blocked & ~depthwise & wide, up(cin) * (k // cin), k)
        factor = np.where(blocked & depthwise, up(g) / g, 1.0)
        return n_p, k_p, factor

    def reorders(self, ops, inputs, rows, fused, select_pos=None, entry_layout: int = _PLAIN,
                 free_kinds=(), alias=None, exit_state=False) -> tuple:
        """``(moved_bytes [L, B], conversions [L, B], layout [L, B])``: per slot, the bytes streamed by
        the layout conversions (and zero edges) it needs (as priced: a conversion's bytes above
        ``spill``'s knee count ``1 + ratio`` times) and how many, and its output's layout.

        A ``zero`` edge (a multiply by 0 in the exported graph) runs plain on its input; it is
        charged, with the conversion of that input, to the layer that reads it.

        ``entry_layout`` may be a ``Boundary`` (a segment of the fast path, per row); with
        ``exit_state`` a fourth item gives the layout fields of the last slot's ``Boundary``
        (a dict)."""
        mask = rows["mask"]
        L = len(ops)
        B = mask.shape[1] if L else 0
        if L == 0 or not self:
            return (np.zeros((L, B), dtype=np.float64), np.zeros((L, B), dtype=np.float64),
                    np.zeros((L, B), dtype=np.int8))
        w = _LayoutWalk(self, ops, inputs, rows, fused, select_pos, entry_layout, free_kinds, alias)
        for s in range(L):
            w.slot(s)
        if not exit_state:
            return w.moved, w.count, w.layout
        return w.moved, w.count, w.layout, w.exit_state()

    def cost(self, moved, count) -> np.ndarray:
        """Time (ms) of the conversions: ``ms_per_mb * MB + overhead_ms`` each."""
        return self.reorder[0] * moved / 1e6 + self.reorder[1] * count

    def to_dict(self) -> dict:
        return {"blocked": list(self.blocked), "follow": list(self.follow), "joins": list(self.joins),
                "block": self.block, "narrow_below": self.narrow_below,
                **({"channels": dict(self.channels)} if self.channels != CHANNELS_ANY else {}),
                "reorder": {"ms_per_mb": _check.plain(self.reorder[0]), "overhead_ms": _check.plain(self.reorder[1])},
                **({"spill": self.spill.to_dict()} if self.spill.ratio else {}),
                **({"fused_joins": self.fused_joins} if self.fused_joins != "blocked" else {}),
                **({"from_blocked": list(self.from_blocked)} if self.from_blocked else {}),
                **({"pad_channels": True} if self.pad_channels else {})}

    @classmethod
    def from_dict(cls, d, source=None, key="latency.layout", known_kinds=()) -> "LayoutRules":
        _check.mapping(d, source, key, required=("blocked", "reorder"),
                       optional=("follow", "joins", "block", "narrow_below", "channels", "spill", "fused_joins",
                                 "from_blocked", "pad_channels"))
        lists = {}
        for part in ("blocked", "follow", "joins", "from_blocked"):
            vals = d.get(part, [])
            if not isinstance(vals, list) or not all(isinstance(x, str) for x in vals):
                raise _check.err(f"`{key}.{part}` must be a list of op kinds", source, f"{key}.{part}")
            for x in vals:
                if known_kinds and x not in known_kinds:
                    raise _check.err(f"`{key}.{part}`: `{x}` is not an op kind", source, f"{key}.{part}")
            lists[part] = vals
        _check.mapping(d["reorder"], source, f"{key}.reorder", required=("ms_per_mb",), optional=("overhead_ms",))
        reorder = (_check.number(d["reorder"]["ms_per_mb"], source, f"{key}.reorder.ms_per_mb"),
                   _check.number(d["reorder"].get("overhead_ms", 0.0), source, f"{key}.reorder.overhead_ms"))
        block = _check.number(d.get("block", 8), source, f"{key}.block", minimum=1, integer=True)
        narrow = _check.number(d.get("narrow_below", 8), source, f"{key}.narrow_below", minimum=1, integer=True)
        channels = d.get("channels", {})
        _check.mapping(channels, source, f"{key}.channels", optional=tuple(CHANNELS_ANY))
        for part, rule in channels.items():
            _check.string(rule, source, f"{key}.channels.{part}", CHANNEL_RULES)
        spill = Spill.from_dict(d["spill"], source, f"{key}.spill") if d.get("spill") is not None else None
        fj = _check.string(d.get("fused_joins", "blocked"), source, f"{key}.fused_joins", FUSED_JOINS)
        pad = d.get("pad_channels", False)
        if not isinstance(pad, bool):
            raise _check.err(f"`{key}.pad_channels` must be true or false, got {pad!r}", source, f"{key}.pad_channels")
        return cls(lists["blocked"], lists["follow"], lists["joins"], block, narrow, reorder, channels, spill, fj,
                   lists["from_blocked"], pad)

    def __eq__(self, other) -> bool:
        return isinstance(other, LayoutRules) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LayoutRules({self.to_dict()})"


class _LayoutWalk:
    """One pass of ``LayoutRules.reorders`` over a table's slots, per candidate column: each slot's
    output layout, the tensor it passes on (``src``: a fused, free, inactive or duplicate layer
    passes its input's), which tensors were converted to which layout (``done``) and which zero
    edges were charged (``zdone``), and the bytes and conversions charged to each slot."""

    def __init__(self, rules, ops, inputs, rows, fused, select_pos, entry_layout, free_kinds, alias):
        mask = rows["mask"]
        L, B = mask.shape
        self.rules, self.ops, self.inputs, self.rows = rules, ops, inputs, rows
        self.select_pos, self.free_kinds, self.alias = select_pos, free_kinds, alias
        self.B, self.cols, self.mask = B, np.arange(B), mask
        self.layout = np.zeros((L, B), dtype=np.int8)
        self.moved = np.zeros((L, B), dtype=np.float64)
        self.count = np.zeros((L, B), dtype=np.float64)
        self.done = {t: np.zeros((L + 1, B), dtype=bool) for t in (_PLAIN, _BLOCKED)}  # [tensor + 1, B]
        self.fused = fused if fused is not None else np.zeros((L, B), dtype=bool)
        self.src = {}  # slot -> [B] slot whose tensor it passes on (-1: the entry)
        self.is_zero = np.array([op == "zero" for op in ops] + [False])  # index -1: the entry
        self.zdone = np.zeros((L + 1, B), dtype=bool)  # zero edges already charged (per tensor)
        self._entry(entry_layout)

    def _entry(self, entry_layout):
        """The entering tensor's layout, size, conversions and zero edge (as the segment before
        left them, for a ``Boundary``; else plain, nothing converted)."""
        B, rows = self.B, self.rows
        bd = entry_layout if isinstance(entry_layout, Boundary) else None
        self.ent = np.array(np.broadcast_to(np.asarray(bd.layout if bd is not None else entry_layout, dtype=np.int8),
                                            (B,)))
        self.ent_zero = np.zeros(B, dtype=bool)
        self.z_layout = self.z_elems = self.z_done = None
        if bd is not None:
            self.done[_PLAIN][0] = bd.done_plain
            self.done[_BLOCKED][0] = bd.done_blocked
            self.zdone[0] = bd.zdone
            self.ent_zero = np.asarray(bd.is_zero, dtype=bool)
            self.z_layout, self.z_elems = bd.z_layout, np.asarray(bd.z_elems, dtype=np.float64)
            self.z_done = np.array(bd.z_done_plain, dtype=bool)
            self.entry_elems = np.asarray(bd.elems, dtype=np.float64)
            return
        self.entry_elems = np.zeros(B, dtype=np.float64)
        for s, op in enumerate(self.ops):
            if -1 in self.inputs[s] and op not in TRANSPARENT:
                self.entry_elems = np.maximum(self.entry_elems, rows["in_c"][s] * rows["in_h"][s] * rows["in_w"][s])

    # ------------------------------------------------------------------ tensors

    def lay(self, i):
        return self.ent if i < 0 else self.layout[i]

    def tensor_of(self, i):
        if i < 0:
            return np.full(self.B, -1, dtype=np.int64)
        t = self.src.get(i)
        return np.full(self.B, i, dtype=np.int64) if t is None else t

    def elems(self, t):
        e = np.where(t < 0, self.entry_elems, 0.0)
        ok = t >= 0
        if ok.any():
            e[ok] = self.rows["out_elems"][t[ok], self.cols[ok]]
        return e

    def convert(self, s, i, target, need):
        """Charge slot ``s`` the conversion of its input ``i`` to ``target`` where ``need``
        (once per tensor and layout)."""
        need = need & (self.lay(i) != target)
        if not need.any():
            return
        t = self.tensor_of(i)
        d = self.done[target]
        new = need & ~d[t + 1, self.cols]
        d[t + 1, self.cols] |= new
        if new.any():
            self.moved[s] += np.where(new, self.rules.spill.priced_bytes(self.elems(t) * 4.0), 0.0)
            self.count[s] += new

    def zero_edges(self, s, i, act):
        """A zero edge read by slot s: one plain multiply over the zero's input (and its conversion)."""
        t = self.tensor_of(i)
        z = act & (self.is_zero[t] | ((t < 0) & self.ent_zero))
        if not z.any():
            return
        for zs in np.unique(t[z]):
            sel = z & (t == zs) & ~self.zdone[zs + 1]
            if not sel.any():
                continue
            self.zdone[zs + 1] |= sel
            if zs < 0:  # the entering tensor is a zero edge: its input is before the segment
                need = sel & (self.z_layout != _PLAIN) & ~self.z_done
                self.z_done[need] = True
                priced = self.rules.spill.priced_bytes
                self.moved[s] += np.where(need, priced(self.z_elems * 4.0), 0.0) + np.where(sel, priced(2 * self.z_elems * 4.0), 0.0)
                self.count[s] += need.astype(np.float64) + sel
                continue
            zi = self.inputs[zs][0]
            self.convert(s, zi, _PLAIN, sel)
            self.moved[s] += np.where(sel, self.rules.spill.priced_bytes(2 * self.elems(self.tensor_of(zi)) * 4.0), 0.0)
            self.count[s] += sel

    # ------------------------------------------------------------------ slots

    def slot(self, s):
        """Slot ``s``'s layout, passed-on tensor and charges."""
        op, ins = self.ops[s], self.inputs[s]
        if op in TRANSPARENT:
            return self._transparent(s, op, ins)
        dup = layout_a = src_a = None
        alias = self.alias
        if alias is not None and (alias[s] >= 0).any():
            dup = alias[s] >= 0
            a = np.maximum(alias[s], 0)
            layout_a = self.layout[a, self.cols]
            src_a = _pick_rows(a, self.tensor_of)
            if dup.all():
                self.layout[s], self.src[s] = layout_a, src_a
                return
        if op == "zero":  # plain output, charged to its reader
            self.layout[s] = _PLAIN
            if dup is not None:
                self.src[s] = np.where(dup, src_a, s)
            return
        off = ~self.mask[s]
        if off.all():
            self.layout[s], self.src[s] = self.lay(ins[0]), self.tensor_of(ins[0])
            return
        act, live = self.mask[s] & ~self.fused[s], self.mask[s]
        if dup is not None:
            act, live = act & ~dup, live & ~dup
        for i in ins:
            self.zero_edges(s, i, live)
        if self.fused[s].any():
            self._fused(s, ins, live)
        self._priced(s, op, ins, act)
        if off.any():
            self.layout[s] = np.where(off, self.lay(ins[0]), self.layout[s])
            prev = self.src.get(s, np.full(self.B, s, dtype=np.int64))
            self.src[s] = np.where(off, self.tensor_of(ins[0]), prev)
        if dup is not None:
            self.layout[s] = np.where(dup, layout_a, self.layout[s])
            self.src[s] = np.where(dup, src_a, self.src.get(s, np.full(self.B, s, dtype=np.int64)))

    def _fused(self, s, ins, live):
        """A layer folded into the producer's kernel: its output is the chain's (blocked); a fused
        join under ``fused_joins: inputs`` is blocked only when all its inputs are, else plain
        with its blocked inputs converted (``LayoutRules``)."""
        fused = self.fused[s]
        if len(ins) == 1:
            self.layout[s] = np.where(fused, self.lay(ins[0]), _PLAIN)
            return
        if self.rules.fused_joins == "blocked":
            self.layout[s] = np.where(fused, _BLOCKED, _PLAIN)
            return
        blocked = np.ones(self.B, dtype=bool)
        for i in ins:
            blocked &= self.lay(i) == _BLOCKED
        for i in ins:
            self.convert(s, i, _PLAIN, fused & live & ~blocked)
        self.layout[s] = np.where(fused & blocked, _BLOCKED, _PLAIN)

    def _transparent(self, s, op, ins):
        """A select (per candidate: its chosen input's), identity or dropout passes its input on."""
        if op == "select" and self.select_pos is not None and s in self.select_pos and len(ins) > 1:
            pos = np.asarray(self.select_pos[s])
            self.layout[s] = np.stack([self.lay(i) for i in ins])[pos, self.cols]
            self.src[s] = np.stack([self.tensor_of(i) for i in ins])[pos, self.cols]
        else:
            self.layout[s] = self.lay(ins[0])
            self.src[s] = self.tensor_of(ins[0])

    def _priced(self, s, op, ins, act):
        """The conversions a priced layer (``act``: where it runs a kernel of its own) needs, by
        its kind's rule, and its output layout."""
        rules, rows, layout = self.rules, self.rows, self.layout
        if op in rules.blocked:
            # a dense conv on few channels (a stem on RGB) reads plain input directly; a layer
            # whose channels do not fit the blocks runs plain (as ONNX Runtime decides)
            narrow = (rows["in_c"][s] < rules.narrow_below) & (rows["groups"][s] <= 1) & (op == "conv")
            can = rules.blockable(op, rows, s)
            if op in rules.from_blocked:  # blocked only on a blocked input (a global pool)
                can = can & (self.lay(ins[0]) == _BLOCKED)
            for i in ins:
                self.convert(s, i, _BLOCKED, act & can & ~narrow)
                self.convert(s, i, _PLAIN, act & (narrow | ~can))
            layout[s] = np.where(act, np.where(can, _BLOCKED, _PLAIN), layout[s])
        elif op in rules.follow or op in self.free_kinds:
            layout[s] = np.where(act, self.lay(ins[0]), layout[s])
            if op in self.free_kinds:
                self.src[s] = np.where(act, self.tensor_of(ins[0]), s)
        elif op in rules.joins:
            blocked = np.ones(self.B, dtype=bool)
            for i in ins:
                blocked &= self.lay(i) == _BLOCKED
                if op == "concat":
                    blocked &= _channels(rows, i, s, self.B) % rules.block == 0
            for i in ins:
                self.convert(s, i, _PLAIN, act & ~blocked)
            layout[s] = np.where(act, np.where(blocked, _BLOCKED, _PLAIN), layout[s])
        else:
            for i in ins:
                self.convert(s, i, _PLAIN, act)
            layout[s] = np.where(act, _PLAIN, layout[s])

    def exit_state(self) -> dict:
        """The layout fields of the ``Boundary`` after the last slot."""
        L = len(self.ops)
        cols = self.cols
        t = self.tensor_of(L - 1)
        isz = np.where(t < 0, self.ent_zero, self.is_zero[t])
        zl, zd, ze = (np.zeros(self.B, dtype=np.int64) for _ in range(3))
        for zs in np.unique(t[isz]):
            sel = isz & (t == zs)
            if zs < 0:
                zl, zd, ze = (np.where(sel, a, b) for a, b in ((self.z_layout, zl), (self.z_done, zd), (self.z_elems, ze)))
                continue
            zi = self.inputs[zs][0]
            tz = self.tensor_of(zi)
            zl = np.where(sel, self.lay(zi), zl)
            zd = np.where(sel, self.done[_PLAIN][tz + 1, cols], zd)
            ze = np.where(sel, self.elems(tz), ze)
        return {"layout": self.layout[L - 1], "done_plain": self.done[_PLAIN][t + 1, cols],
                "done_blocked": self.done[_BLOCKED][t + 1, cols], "is_zero": isz, "zdone": self.zdone[t + 1, cols],
                "z_layout": zl, "z_done_plain": zd, "z_elems": ze, "elems": self.elems(t)}


def _pick_rows(a, tensor_of) -> np.ndarray:
    """``[B]``: column ``c`` of ``tensor_of(a[c])``, one array operation per distinct slot in ``a``
    (a handful) rather than a Python step per column."""
    out = np.empty(len(a), dtype=np.int64)
    for x in np.unique(a):
        sel = a == x
        out[sel] = tensor_of(int(x))[sel]
    return out


def _channels(rows, i, s, B):
    """[B] channels of input slot i of slot s (the entry: slot s's own in_c)."""
    if i < 0:
        return rows["in_c"][s]
    return rows["out_c"][i]
