"""The exact Pareto front of a search space on a device, without sampling.

``exact_front(space, device, limits, objectives)`` returns every Pareto-optimal trade-off of the
oracle's composable quantities (latency without a residual, MACs, params, memory) under hard
limits, for spaces far too large to enumerate (spaces/mobile.yaml: 2.5e19 candidates).

Why it is exact: the oracle's fast path already cuts a network into **segments** (blocks that
read one tensor from before them, ``_segments``); what a segment adds to latency, MACs, params
and the additive memory terms depends only on its entry state and its own genes, and peak
activation and shared workspace compose by maximum. The entry state is the entry tensor's shape
and, on a profile with fusion or layout rules (the measured ORT profile), the tensor's fusion and
layout state (``costmodel.Boundary``: a fusion chain or a layout runs across segment boundaries),
projected as the oracle projects it. So the front is a dynamic program over segments whose states
are the entry states (``_dp``): the adapter below turns each segment's grid (every entry state x
every combination of its genes, priced by the profile's own cost model) into the DP's choices.
Global and shared genes (resolution, width multiplier, a stage's depth, a cell genotype shared by
all cells) are **carried in the DP state** between the first and the last segment that use them,
so they are conditioned on, never relaxed. A choice between whole subnetworks (spaces/resnet.yaml's
block family, spaces/classic.yaml's stage depths) would be one segment of every gene inside it: the
space is cut into parts, one per option of that choice, each solved on its own (``_parts``).

Not composable, refused (``ConstraintError``): a latency residual (a booster on whole-network
features; ``layer_sum=True`` gives the exact front of the layer sum instead, which a search can
refine).
"""

from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _dp
from ._errors import ConstraintError
from ._segments import _grid_values, _input_states, _projected, _signature, segments
from ._totals import DTYPE_BYTES
from .costmodel._memory import BYTES_PER_MB
from .lowering import _TotalsSink
from .oracle import Oracle, _positive_int, boundary_projector, segment_pricer
from .space._space import GeneInfo
from .space._expr import Channels, Fn, GeneVal

OBJECTIVES = {"latency_ms": +1.0, "memory_mb": +1.0, "macs": -1.0, "params": -1.0}  # +1 minimized, -1 maximized
LIMITS = ("latency_ms", "memory_mb", "params", "macs")
ADD = ("latency_ms", "macs", "params", "mem_add_mb")  # the DP's additive columns
SAME_REL = 1e-12  # final points closer than this in every objective are one trade-off (summation order)
MAX_GRID_ROWS = 2**20  # a segment's grid (entry states x its gene combinations) priced at most this large
MAX_GRID_CELLS = 2**22  # ... and rows x layer slots at most this (its recorded table: ~16 int64 fields a cell)
MAX_FIELDS = ("peak_activation_bytes", "workspace_elems")  # grid fields composed by maximum over segments
EDGE_REL = 1e-9  # totals this close to a limit are re-priced by the oracle, whose summation order decides
CONDITION_ROWS = 2**16  # a segment choosing between subnetworks among more combinations is conditioned on the choice
MAX_PARTS = 4096  # ... into at most this many parts (one dynamic program each)


@dataclass
class ExactFront:
    """The exact front: members sorted by latency, their encodings and predicted values."""

    space: str
    device: str
    objectives: tuple
    limits: dict
    X: np.ndarray  # [n, G] canonical encodings
    values: dict  # {latency_ms, memory_mb, macs, params: [n]}, as the DP summed them
    exact: tuple  # the quantities whose front is exact
    layer_sum: bool  # True: a residual profile's latency without its residual
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.X)

    def summary(self) -> str:
        s = self.stats
        lat = self.values["latency_ms"]
        span = f"{lat.min():.2f}-{lat.max():.2f} ms" if len(lat) else "empty"
        return (f"exact front of ({', '.join(self.objectives)}): {len(self)} Pareto-optimal points, latency {span}; "
                f"{s.get('segments', 0)} segments, {max(s.get('states', [0]) or [0])} DP states at most, "
                f"{s.get('peak_points', 0):,} partial points at most, {s.get('seconds', 0.0):.2f} s "
                f"(grids {s.get('grid_seconds', 0.0):.2f} s)")


class _Columns:
    """Which values the DP carries for a profile, and how memory is composed from them."""

    def __init__(self, profile, batch):
        mem = profile.memory
        self.mem, self.batch = mem, batch
        # the model's own coefficients (MemoryModel.terms); the activations of a ``caffe`` mode are
        # additive over segments, those of a ``peak`` mode a max over the network
        self.terms = t = mem.terms(batch)
        self.peak_coef = ((t.activations if mem.activations == "peak" else 0.0)
                          + (t.batch_activations if mem.batch_activations == "peak" else 0.0))
        self.overhead_ms = profile.latency.network_overhead_ms
        self.peak = "peak" in (mem.activations, mem.batch_activations)  # the grids record peak activations
        self.max = tuple(k for k, on in (("peak_activation_bytes", self.peak),
                                         ("workspace_elems", mem.workspace == "max")) if on)

    def _linear_mb(self, weights, fc_weights, activations, workspace_sum):
        """``MemoryTerms.linear_mb`` with the activations priced by the modes that add them up."""
        mem = self.mem
        return self.terms.linear_mb(weights=weights, fc_weights=fc_weights if mem.fc_weights_coef is not None else 0.0,
                                    activations=activations if mem.activations == "caffe" else 0.0,
                                    batch_activations=activations if mem.batch_activations == "caffe" else 0.0,
                                    workspace=workspace_sum if mem.workspace == "sum" else 0.0)

    def mem_add_mb(self, res):
        """Every additive memory term of a grid row, MB."""
        g = lambda k: np.asarray(res.get(k, 0.0), dtype=np.float64)  # noqa: E731
        return self._linear_mb(g("weight_elems") * DTYPE_BYTES, g("fc_weight_bytes"),
                               g("activation_elems") * DTYPE_BYTES, g("workspace_sum_elems") * DTYPE_BYTES)

    def input_terms(self, in_elems):
        """(additive [n, A], max [n, M]) contributions of the network input, per input shape."""
        n = len(in_elems)
        add = np.zeros((n, len(ADD)))
        mx = np.zeros((n, len(self.max)))
        add[:, 3] = self._linear_mb(0.0, 0.0, in_elems * DTYPE_BYTES, 0.0)
        if "peak_activation_bytes" in self.max:
            mx[:, self.max.index("peak_activation_bytes")] = in_elems * DTYPE_BYTES
        return add, mx

    def memory_mb(self, add, mx):
        """The process memory of totals (non-decreasing in every column)."""
        m = self.terms.constant_mb + add[:, 3]
        if "peak_activation_bytes" in self.max:
            m = m + self.peak_coef * mx[:, self.max.index("peak_activation_bytes")] / BYTES_PER_MB
        if "workspace_elems" in self.max:
            m = m + self.terms.workspace * mx[:, self.max.index("workspace_elems")] * DTYPE_BYTES / BYTES_PER_MB
        return m

    def value(self, name, add, mx):
        if name == "latency_ms":
            return add[:, 0] + self.overhead_ms
        if name == "memory_mb":
            return self.memory_mb(add, mx)
        return add[:, ADD.index(name)]

    def criteria(self, name, sign):
        if name == "memory_mb":
            return [_dp.Criterion("add", 3, sign)] + [_dp.Criterion("max", i, sign) for i in range(len(self.max))]
        return [_dp.Criterion("add", ADD.index(name), sign)]


class _Part(NamedTuple):
    """A part of the space: its candidates with some choice genes fixed (``fixed``: ((gene,
    option), ...)), as a space (``space``) whose unchosen subnetworks are removed."""

    space: object
    fixed: tuple


class _Unfixable(Exception):
    pass


def structural_obstacle(space) -> str | None:
    """Why the segments of ``space`` cannot be tabulated for the DP, even with its choices between
    whole subnetworks conditioned on (``_parts``); ``None``: they can, as far as the gene
    combinations tell (the entry shapes multiply the rows further, checked when priced)."""
    return _parts(space)[1]


def _parts(space):
    """``(parts, None)``: the space cut into parts each of whose segments can be tabulated, or
    ``(None, why not)``.

    A choice between whole subnetworks (spaces/resnet.yaml's block family, a stage's depth in
    spaces/classic.yaml) joins every gene inside it into one segment: its alternatives all read the
    tensor before the choice and a ``select`` reads theirs. Fixing the choice gene to one option
    removes the other alternatives, and the chosen one is a chain of small segments again. So a
    segment of more than ``CONDITION_ROWS`` combinations is conditioned on its outermost choice
    gene: one part per option, each priced by its own dynamic program (the front of the space is
    the front of the parts' fronts: conditioning, exact). Computed once per space."""
    hit = space.program.__dict__.get("_exact_parts")
    if hit is not None:
        return hit
    todo, done, why = [_Part(space, ())], [], None
    while todo and why is None:
        part = todo.pop()
        big = [seg for seg in segments(part.space.program) if seg.combos > CONDITION_ROWS
               or seg.combos * (seg.stop - seg.start) > MAX_GRID_CELLS]
        if not big:
            done.append(part)
            continue
        split = next((sp for sp in (_split(part, seg) for seg in big) if sp is not None), None)
        if split is None:
            over = [seg for seg in big if seg.combos > MAX_GRID_ROWS
                    or seg.combos * (seg.stop - seg.start) > MAX_GRID_CELLS]
            if over:
                why = _too_large(part.space, over[0], over[0].combos)
            else:
                done.append(part)
        elif len(done) + len(todo) + len(split) > MAX_PARTS:
            why = (f"conditioning {space.name} on its choices between whole subnetworks would take more than "
                   f"{MAX_PARTS:,} dynamic programs")
        else:
            todo.extend(reversed(split))
    hit = space.program._exact_parts = (None, why) if why else (done, None)
    return hit


def _split(part, seg):
    """The parts of ``part`` with the outermost choice gene of ``seg`` fixed to each of its options,
    or ``None`` when ``seg`` chooses no subnetwork that can be removed."""
    prog = part.space.program
    sel = [i for i in range(seg.start, seg.stop) if prog.nodes[i].op == "select"]
    for i in reversed(sel):  # the outermost choice ends last
        g = prog.nodes[i].params["gene"]
        if len(prog.genes[g].options) < 2:
            continue
        try:
            return [_Part(_fix(part.space, g, v), part.fixed + ((g, v),)) for v in range(len(prog.genes[g].options))]
        except _Unfixable:
            continue
    return None


def _fix(space, g, v):
    """``space`` with gene ``g`` fixed to option ``v``: the layers that exist only for other options
    removed (node ids renumbered), each ``select`` on ``g`` reading its one chosen input, and ``g``
    left with that one option (so encodings keep their columns; its code is 0 in the part).
    Candidates of the part are priced exactly as in ``space``: what is removed is inactive for
    them. Raises ``_Unfixable`` when a kept layer reads a removed one other than through a select."""

    prog = space.program
    kept = [i for i, n in enumerate(prog.nodes) if all(cg != g or v in allowed for cg, allowed in n.conds)]
    new_id = {old: new for new, old in enumerate(kept)}
    new_id[-1] = -1

    def ref(i):
        if i not in new_id:
            raise _Unfixable
        return new_id[i]

    def expr(e):
        if isinstance(e, Channels):
            return Channels(ref(e.node))
        if isinstance(e, GeneVal) and e.gene == g:
            return GeneVal(g, (e.options[v],))
        if isinstance(e, Fn):
            return Fn(e.fn, tuple(expr(x) for x in e.args))
        if isinstance(e, tuple):
            return tuple(expr(x) for x in e)
        return e

    nodes = []
    for i in kept:
        n = prog.nodes[i]
        inputs, params = n.inputs, {k: expr(x) for k, x in n.params.items()}
        if n.op == "select" and n.params["gene"] == g:
            inputs, params = [n.inputs[n.params["index"][v]]], {**n.params, "index": (0,)}
        nodes.append(dataclasses.replace(n, inputs=[ref(j) for j in inputs], params=params, when=expr(n.when),
                                         conds=tuple((cg, a) for cg, a in n.conds if cg != g)))
    genes = [dataclasses.replace(gene, conds=tuple((cg, a) for cg, a in gene.conds if cg != g)) for gene in prog.genes]
    gene = genes[g]
    genes[g] = dataclasses.replace(gene, options=(gene.options[v],),
                                   raw_options=(gene.raw_options[v],) if gene.raw_options else ())
    sub = copy.copy(space)
    sub.program = dataclasses.replace(prog, nodes=nodes, genes=genes, output=ref(prog.output),
                                      in_h=expr(prog.in_h), in_w=expr(prog.in_w))
    sub.genes = [GeneInfo(x.name, x.options) for x in genes]
    sub._sizes = np.array([len(x.options) for x in genes], dtype=np.int64)
    sub._conds = [[(cg, np.isin(np.arange(len(genes[cg].options)), list(a))) for cg, a in x.conds] for x in genes]
    return sub


def _too_large(space, seg, rows) -> str:
    nodes = space.program.nodes
    return (f"segment {nodes[seg.start].name}..{nodes[seg.stop - 1].name} of {space.name} reads one tensor but "
            f"chooses among {seg.combos:.3g} combinations of {len(seg.genes)} genes ({rows:.3g} grid rows, more than "
            f"the {MAX_GRID_ROWS:,} the exact front tabulates; a choice between whole subnetworks joins every gene "
            f"inside it into one segment)")


def _check_profile(profile, layer_sum):
    if getattr(profile, "residual", None) is not None and not layer_sum:
        raise ConstraintError(
            f"the exact front needs additive quantities, but `{profile.name}` corrects its latency with a "
            f"residual model over whole-network features, which is not a sum over segments; the exact front "
            f"of its layer sum can seed a search instead (search --sampler exact on such a profile does that, "
            f"exact_front(..., layer_sum=True) in Python)")


def _stages(space, profile, batch, cols, shared):
    """The DP's stages from the segment grids: a DP state is a distinct entry state of a segment
    (``_segments._State``: the tensor's shape and, for a profile with fusion or layout rules, its
    ``costmodel.Boundary``, projected as the oracle projects it), one choice per grid row."""

    prog = space.program
    segs = segments(prog)
    inp = _input_states(space)
    in_genes, state, in_codes, in_size = inp.genes, inp.state, inp.codes, inp.elems
    sizes_of = lambda genes: tuple(len(prog.genes[g].options) for g in genes)  # noqa: E731
    add0, mx0 = cols.input_terms(in_size[in_codes].astype(np.float64))
    n = len(in_codes)
    stages = [_dp.Stage(tuple(in_genes), sizes_of(in_genes), np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64),
                        np.asarray(in_codes, dtype=np.int64), add0, mx0)]
    n_after = [state.n]
    seg_fn = segment_pricer(profile, batch, breakdown=False, residual=False)
    project = boundary_projector(profile.latency)
    derive = lambda res: {"mem_add_mb": cols.mem_add_mb(res)}  # noqa: E731
    prev_exit = -1
    for seg in segs:
        if seg.entry != prev_exit:
            raise ConstraintError(f"the exact front needs a chain of segments, but segment {seg.start}..{seg.stop - 1} "
                                  f"of {space.name} reads node {seg.entry}, not the previous segment's output "
                                  f"({prog.source})")
        prev_exit = seg.stop - 1
        if project is not None and state.bound is not None:
            # the previous stage's exits renamed to the projected states this segment enters with
            state, to = _projected(prog, seg, state, np.arange(state.n, dtype=np.int64), project)
            stages[-1] = stages[-1]._replace(exit=np.asarray(to, dtype=np.int64)[stages[-1].exit])
            n_after[-1] = state.n
        rows = state.n * seg.combos
        if rows > MAX_GRID_ROWS or rows * (seg.stop - seg.start) > MAX_GRID_CELLS:
            raise ConstraintError(f"the exact front cannot be computed: {_too_large(space, seg, rows)}; use a sampling "
                                  f"search (--sampler nsga2) ({prog.source})")
        sig = _signature(prog, seg)
        key = None if sig is None else (sig, state.token)
        hit = shared.get(key) if key is not None else None
        if hit is None:
            # every row: the DP's stages take each (state, combination) on its own
            hit = _grid_values(space, seg, state, lambda b: _TotalsSink(prog, b), cols.peak, seg_fn, None, derive,
                               MAX_FIELDS, prune=False)
            if key is not None and not hit.errors:
                shared[key] = hit
        stages.append(_stage_of(seg, sizes_of(seg.genes), state.n, hit, cols))
        state = hit.out_state
        n_after.append(state.n)
    if state.bound is not None:  # the network's output state matters to nothing after it: one end state
        stages[-1] = stages[-1]._replace(exit=np.zeros_like(stages[-1].exit))
        n_after[-1] = 1
    return stages, n_after


def _stage_of(seg, sizes, n_entry, grid, cols):
    """The DP stage of a segment's ``_segments.Grid``."""
    R = seg.combos
    N = n_entry * R
    grid_codes, sum_names, sum_vals, max_names, max_vals = (grid.codes, grid.sum_names, grid.sum_vals,
                                                            grid.max_names, grid.max_vals)
    ok = np.ones(N, dtype=bool)
    for e in grid.errors:  # combinations whose shapes do not work: no candidate takes them
        ok &= ~np.broadcast_to(np.asarray(e.bad, dtype=bool), (N,))
    rows = np.flatnonzero(ok)
    col = {k: i for i, k in enumerate(sum_names)}
    add = np.zeros((len(rows), len(ADD)))
    for j, k in enumerate(ADD):
        if k in col:
            add[:, j] = sum_vals[rows, col[k]]
    mcol = {k: i for i, k in enumerate(max_names)}
    mx = np.zeros((len(rows), len(cols.max)))
    for j, k in enumerate(cols.max):
        if k in mcol:
            mx[:, j] = max_vals[rows, mcol[k]]
    return _dp.Stage(tuple(seg.genes), sizes, rows // R, rows % R, np.asarray(grid_codes, dtype=np.int64)[rows], add, mx)


def _parse(objectives, limits):
    objectives = tuple(objectives)
    if len(objectives) < 1 or any(o not in OBJECTIVES for o in objectives) or len(set(objectives)) != len(objectives):
        raise ConstraintError(f"exact_front objectives must be distinct names among {', '.join(OBJECTIVES)} "
                              f"(latency and memory minimized, MACs and params maximized), got {objectives!r}; "
                              f"a user objective is not a sum over segments")
    limits = dict(limits or {})
    for k, v in limits.items():
        if k not in LIMITS:
            raise ConstraintError(f"exact_front limits must be among {', '.join(LIMITS)}, got {k!r}")
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)) or not np.isfinite(v) or v <= 0:
            raise ConstraintError(f"the {k} limit must be a positive finite number, got {v!r}")
    return objectives, {k: float(v) for k, v in limits.items()}


def _feasible(res, cols, limits, reprice):
    """Indices of the DP's points that meet every limit exactly, and every quantity of them.

    The DP sums segment by segment, the oracle in its own (merged) order: the two differ in the
    last bits, so a total within ``EDGE_REL`` of a limit is decided by the oracle itself
    (``reprice(indices) -> {quantity: values}``) and the front agrees with an exhaustive scan even
    for candidates exactly at a limit."""
    vals = {k: cols.value(k, res.add, res.mx) for k in LIMITS}
    ok = np.ones(len(res.add), dtype=bool)
    edge = np.zeros(len(res.add), dtype=bool)
    for k, b in limits.items():
        ok &= vals[k] <= b * (1 + EDGE_REL)
        edge |= np.abs(vals[k] - b) <= EDGE_REL * b
    edge &= ok
    if edge.any():
        e = np.flatnonzero(edge)
        again = reprice(e)
        for k, b in limits.items():
            ok[e] &= again[k] <= b
    idx = np.flatnonzero(ok)
    return idx, {k: v[idx] for k, v in vals.items()}


def _front(vals, objectives):
    """Indices of the points of ``vals`` on the front of the objectives, one per trade-off, by
    latency (then the other objectives)."""
    idx = np.arange(len(vals["latency_ms"]))
    V = np.column_stack([OBJECTIVES[o] * vals[o] for o in objectives])
    idx = idx[_dp.nondominated(V, np.zeros(len(idx), dtype=np.int64))]
    V = V[idx]
    order = np.lexsort(tuple(V[:, d] for d in range(V.shape[1] - 1, -1, -1)))
    idx, V = idx[order], V[order]
    if len(idx) > 1:  # the same trade-off summed in two orders differs in the last bits
        same = np.all(np.abs(V[1:] - V[:-1]) <= SAME_REL * np.maximum(np.abs(V[1:]), np.abs(V[:-1])), axis=1)
        idx = idx[np.r_[True, ~same]]
    return idx


def _solve_part(part, oracle, cols, objectives, limits, shared):
    """The feasible end points of the DP over one part of the space: ``(encodings of the whole
    space, {quantity: values}, statistics)``."""
    profile, batch, n_genes = oracle.profile, oracle.batch, oracle.space.n_genes
    t0 = time.perf_counter()
    # the stages depend on the part, the profile and the batch only: an Oracle keeps them for its
    # next front (other limits or objectives, the closest candidates of an empty one)
    cache = oracle.__dict__.setdefault("_exact_stages", {})
    hit = cache.get(part.fixed)
    if hit is None:
        hit = cache[part.fixed] = _stages(part.space, profile, batch, cols, shared)
    stages, n_after = hit
    t1 = time.perf_counter()
    crit = []
    for o in objectives:
        crit += cols.criteria(o, OBJECTIVES[o])
    for k in limits:
        crit += cols.criteria(k, +1.0)
    crit = list(dict.fromkeys(crit))
    # pruning with a little slack: the totals near a limit are decided by the oracle (_feasible)
    lims = [_dp.Limit(k, (lambda a, m, k=k: cols.value(k, a, m)), b * (1 + EDGE_REL)) for k, b in limits.items()]
    sizes = [len(g.options) for g in part.space.program.genes]
    res = _dp.solve(stages, n_after, sizes, crit, lims)
    residual = getattr(profile, "residual", None) is not None

    def enc(i):
        X = _dp.encodings(stages, res.choices[i], n_genes)
        for g, v in part.fixed:  # a fixed gene's one option in the part is option v of the space
            X[:, g] = v
        return X

    def reprice(i):
        out = oracle.evaluate(enc(i), breakdown=False)
        if residual:  # the layer sum: the DP's own total is the quantity
            out["latency_ms"] = cols.value("latency_ms", res.add[i], res.mx[i])
        return out

    idx, vals = _feasible(res, cols, limits, reprice)
    st = res.stats
    stats = {"segments": len(stages) - 1, "states": st.states, "points": st.points, "expanded": st.expanded,
             "peak_points": st.peak_points, "dp_end_points": int(len(res.add)), "grid_seconds": t1 - t0,
             "dp_seconds": st.seconds}
    return enc(idx), vals, stats


def _merged_stats(stats, parts, space, seconds):
    """One part: its statistics; several: summed times and point counts, the most states."""
    out = dict(stats[0]) if len(stats) == 1 else {
        "segments": max(s["segments"] for s in stats), "states": [max(s["states"]) for s in stats],
        "points": [max(s["points"]) for s in stats], "expanded": sum(s["expanded"] for s in stats),
        "peak_points": max(s["peak_points"] for s in stats), "dp_end_points": sum(s["dp_end_points"] for s in stats),
        "grid_seconds": sum(s["grid_seconds"] for s in stats), "dp_seconds": sum(s["dp_seconds"] for s in stats)}
    out["seconds"] = seconds
    out["parts"] = len(parts)
    fixed = sorted({space.genes[g].name for p in parts for g, _ in p.fixed})
    if fixed:
        out["conditioned_on"] = fixed
    out["carried"] = ("genes shared by several segments are carried in the DP state" +
                      (f"; one dynamic program per choice of {', '.join(fixed)} (choices between whole "
                       f"subnetworks)" if fixed else "") + " (conditioning, exact)")
    return out


def exact_front(space, device, limits=None, objectives=("latency_ms", "macs"), batch: int = 1,
                layer_sum: bool = False) -> ExactFront:
    """The exact Pareto front of ``objectives`` over every candidate of ``space`` on ``device``
    that meets ``limits`` (``{"latency_ms": 50, "memory_mb": .., "params": .., "macs": ..}``).

    ``objectives``: names among ``latency_ms``, ``memory_mb`` (minimized), ``macs``, ``params``
    (maximized). Returns an ``ExactFront`` (members by latency: ``X`` canonical encodings,
    ``values`` per quantity, ``stats`` of the sweep). ``space`` may be an ``Oracle`` (its
    profile and batch are used; ``device`` and ``batch`` are then ignored). An empty front means that no candidate meets
    the limits (a proof, not a failed search). ``layer_sum``: on a profile with a latency
    residual, the front of the latency without it (exact for that quantity only).
    """
    objectives, limits = _parse(objectives, limits)
    # an Oracle passed in keeps its own batch (the members are re-priced through it)
    oracle = space if isinstance(space, Oracle) else Oracle(space, device, _positive_int(batch, "batch"))
    space, profile, batch = oracle.space, oracle.profile, oracle.batch
    _check_profile(profile, layer_sum)
    parts, why = _parts(space)
    if why is not None:
        raise ConstraintError(f"the exact front cannot be computed: {why}; use a sampling search (--sampler nsga2) "
                              f"({space.program.source})")
    cols = _Columns(profile, batch)
    t0 = time.perf_counter()
    shared: dict = {}  # grids of segments built alike, across the parts too
    got = [_solve_part(part, oracle, cols, objectives, limits, shared) for part in parts]
    X = np.concatenate([x for x, _, _ in got])
    vals = {k: np.concatenate([v[k] for _, v, _ in got]) for k in LIMITS}
    idx = _front(vals, objectives) if len(X) else np.zeros(0, dtype=np.int64)
    X = space.canonicalize(X[idx]) if len(idx) else np.zeros((0, space.n_genes), dtype=np.int64)
    stats = _merged_stats([s for _, _, s in got], parts, space, time.perf_counter() - t0)
    residual = getattr(profile, "residual", None) is not None
    exact = ("latency_ms (layer sum, without the residual)" if residual else "latency_ms", "memory_mb", "macs", "params")
    return ExactFront(space.name, profile.name, objectives, limits, X, {k: v[idx] for k, v in vals.items()}, exact,
                      residual, stats)


def thin(front: ExactFront, k: int) -> np.ndarray:
    """Indices of at most ``k`` members spanning the front: the fastest, the largest (last by
    latency) and members evenly spaced in latency in between (the nearest to each target)."""
    n = len(front)
    if k < 1:
        raise ConstraintError(f"the front size must be a positive whole number, got {k!r}")
    if n <= k:
        return np.arange(n)
    lat = front.values["latency_ms"]
    targets = np.linspace(lat[0], lat[-1], k)
    pick = {0, n - 1}
    for t in targets[1:-1]:
        order = np.argsort(np.abs(lat - t), kind="stable")
        for i in order:
            if int(i) not in pick:
                pick.add(int(i))
                break
    return np.array(sorted(pick))
