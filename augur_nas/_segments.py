"""The fast path: whole-network sums by tabulating segments of the unrolled space.

A network is a chain of segments (blocks) that read exactly one tensor from before them. What a
segment adds to the totals depends only on that tensor's shape and on the genes the segment
itself uses, and across a batch there are few distinct combinations of the two. So each
segment is evaluated once per combination on a small grid (a few hundred rows), and each
candidate gathers its segment sums by a dense key: a handful of array operations per segment
instead of several per layer slot. Segments whose grid would be larger than the batch are
evaluated directly, unless the caller keeps the grids (an Oracle's cache: see
``segment_sums``). The grids depend on the entry shapes, never on the candidates, and the exit
shapes of a grid are all its rows', so a chain of tabulated segments meets the same entry shapes
in every call; two segments built alike (same layers relative to their entry, same genes) with
the same entry shapes share one grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from . import _reach
from ._derived import derived
from ._errors import ShapeError
from ._totals import buffer_facts, network_totals, peak_activation, table_sums
from .lowering import (
    FIELDS,
    REGISTRY,
    Entry,
    LayerTable,
    _Eval,
    _expr_nodes,
    _fn_key,
    _static_info,
    _TotalsSink,
    _value,
    walk,
)
from .space._expr import Channels, Const, Fn, GeneVal
from .space._space import column_max

MAX_GRID = 4096
CACHED_MAX_GRID = 32768  # with a cache (an Oracle's), grids up to this size are priced once and kept
CACHED_GRID_CELLS = 2**21  # ... and rows x slots at most this (a grid's table: 16 fields of 8 bytes per cell)
WALK_CELLS = 2**18  # a grid is walked in blocks of at most this many rows x slots (the per-slot arrays
# of a block stay in the caches: on NAS-Bench-201 with layout rules 1.3-1.6x quicker than 2**21, and
# ~1.09x quicker than 2**17, whose twice as many blocks pay the per-slot Python steps twice) ...
MIN_BLOCK_ROWS = 1024  # ... and at least this many rows
CALLS_BEFORE_GRID = 2  # ... from this many earlier calls of the cache on (see segment_sums)
GRID_CACHE_BYTES = 64 * 2**20  # a cache of segment grids (``segment_sums(cache=...)``) is cleared beyond this
STATE_GRID = 2**17  # ... and, over several entry states (fusion/layout profiles), this many rows in all
NARROW_BATCH = 1024  # from this batch size on, keys are computed from int8/int16 gene rows
GENE_ROWS_PER_STEP = 2048  # candidates whose gene rows are cast and transposed together
MERGE_GRID = 512  # neighbouring segments are merged while their joint grid has at most this many rows
MAX_SUBSET_STATES = 64  # entry state sets up to this size are looked up in larger ones met before
MAX_STATE_SETS = 4  # entry state sets remembered per segment (``GridCache.entering``)


@dataclass
class Segment:
    start: int
    stop: int  # exclusive; the exit tensor is node stop - 1
    entry: int  # the one node read from before the segment (-1: the network input)
    genes: tuple  # genes the segment's own slots use
    radix: np.ndarray  # mixed-radix multipliers of those genes
    combos: int  # product of their option counts

    @property
    def gene_index(self) -> np.ndarray:
        g = self.__dict__.get("_gene_index")
        if g is None:
            g = self.__dict__["_gene_index"] = np.asarray(self.genes, dtype=np.intp)
        return g


def _expr_genes(e, out: set):
    if isinstance(e, GeneVal):
        out.add(e.gene)
    elif isinstance(e, Fn):
        for a in e.args:
            _expr_genes(a, out)
    elif isinstance(e, tuple):
        for a in e:
            _expr_genes(a, out)


def segments(prog) -> list:
    cached = derived(prog).segments
    if cached is not None:
        return cached
    nodes = prog.nodes
    L = len(nodes)
    refs = []
    for n in nodes:
        r = set(n.inputs)
        for e in list(n.params.values()) + [n.when]:
            _expr_nodes(e, r)
        refs.append(r)
    # earliest node referenced by any node at or after position p
    min_ref_after = [L] * (L + 1)
    for p in range(L - 1, -1, -1):
        min_ref_after[p] = min(min_ref_after[p + 1], min(refs[p]) if refs[p] else L)
    # a cut after node p: nothing after p reads a node before p
    segs, start = [], 0
    for p in range(L):
        if p == L - 1 or min_ref_after[p + 1] >= p:
            entry_refs = {r for j in range(start, p + 1) for r in refs[j] if r < start}
            if len(entry_refs) <= 1:
                entry = entry_refs.pop() if entry_refs else start - 1
                genes = set()
                for j in range(start, p + 1):
                    n = nodes[j]
                    for e in list(n.params.values()) + [n.when]:
                        _expr_genes(e, genes)
                    if n.op == "select":
                        genes.add(n.params["gene"])
                    for g, _ in n.conds:
                        genes.add(g)
                genes = tuple(sorted(genes))
                _, radix, combos = _mixed_radix(prog, genes)
                segs.append(Segment(start, p + 1, entry, genes, radix, combos))
                start = p + 1
    derived(prog).segments = segs
    return segs


def _mixed_radix(prog, genes):
    """``(option counts, multipliers [int64], combinations)`` of ``genes``: a combination's dense
    index is ``sum(option * multiplier)``, the last gene varying fastest."""
    sizes = [len(prog.genes[g].options) for g in genes]
    radix = np.ones(len(genes), dtype=np.int64)
    for i in range(len(genes) - 2, -1, -1):
        radix[i] = radix[i + 1] * sizes[i + 1]
    combos = int(np.prod(sizes, dtype=np.float64)) if genes else 1
    return sizes, radix, combos


def _combinations(n_genes, genes, radix, sizes, n):
    """Encodings ``[n, n_genes]`` whose row ``i`` is combination ``i % prod(sizes)`` of ``genes``
    (other genes 0)."""
    idx = np.arange(n, dtype=np.int64)
    grid = np.zeros((n, n_genes), dtype=np.int64)
    for g, r, sz in zip(genes, radix, sizes):
        grid[:, g] = (idx // r) % sz
    return grid


class _Recorder:
    """Records every field of one segment's slots (a small layer table of the grid rows), for
    the liveness analysis and for cost models that price layer tables.

    With ``full`` the whole-network sums are taken from the recorded table afterwards (a few
    reductions over ``[slots, rows]``) instead of slot by slot through ``inner``; inactive rows
    are zeroed once at the end rather than field by field per slot."""

    PEAK_FIELDS = ("out_elems", "workspace_elems")

    def __init__(self, prog, seg, N, inner, full=True):
        n = seg.stop - seg.start
        self.ops = [nd.op for nd in prog.nodes[seg.start:seg.stop]]
        self.shares = buffer_facts(prog).shares[seg.start:seg.stop]
        self.seg, self.inner, self.N, self.full = seg, inner, N, full
        self.fields = FIELDS if full else self.PEAK_FIELDS
        ints = [f for f in self.fields if f != "macs"]
        self._ints = np.zeros((len(ints), n, N), dtype=np.int64)
        self.rows = {f: self._ints[i] for i, f in enumerate(ints)}
        if full:
            self.rows["macs"] = np.zeros((n, N), dtype=np.float64)
        self.rows["mask"] = np.zeros((n, N), dtype=bool)
        self._partial: list = []  # slots active for some rows only, zeroed where inactive in _finish
        self._done = False

    def __call__(self, ev, nid, node, act, ins, c, h, w, counts):
        if not self.full:
            self.inner(ev, nid, node, act, ins, c, h, w, counts)
        j = nid - self.seg.start
        rows = self.rows
        rows["mask"][j] = act
        rows["out_elems"][j] = ev.elems(c, h, w)
        if self.full:
            i0 = ins[0]
            rows["in_c"][j], rows["in_h"][j], rows["in_w"][j] = ev.c[i0], ev.h[i0], ev.w[i0]
            rows["out_c"][j], rows["out_h"][j], rows["out_w"][j] = c, h, w
            rows["in_elems"][j] = (ev.elems(ev.c[i0], ev.h[i0], ev.w[i0]) if len(ins) == 1
                                   else sum(ev.elems(ev.c[i], ev.h[i], ev.w[i]) for i in ins))
            for f, v in counts.items():
                rows[f][j] = _value(v)
        elif "workspace_elems" in counts:
            rows["workspace_elems"][j] = _value(counts["workspace_elems"])
        if act is not True:
            self._partial.append(j)

    def _finish(self):
        if self._done:
            return
        self._done = True
        mask = self.rows["mask"]
        for j in self._partial:  # in place per slot: a fancy-indexed update copies the block twice
            self._ints[:, j] *= mask[j]
            if self.full:
                self.rows["macs"][j] *= mask[j]

    def result(self):
        if not self.full:
            return self.inner.result()
        self._finish()
        return table_sums(self.ops, self.rows, self.shares)

    def table(self, prog, ev):
        self._finish()
        seg = self.seg
        nodes = prog.nodes[seg.start:seg.stop]
        inputs = [[i - seg.start if i >= seg.start else -1 for i in n.inputs] for n in nodes]
        sel = {j: ev.select_pos[seg.start + j] for j, n in enumerate(nodes) if n.op == "select"}
        return LayerTable([n.name for n in nodes], [n.op for n in nodes], [REGISTRY[n.op].table_type for n in nodes],
                          inputs, self.rows, prog.source, sel)

    def peak(self, prog, table, entry_elems):
        self._finish()
        peak, _ = peak_activation(table.ops, table.inputs, self.shares, self.rows["mask"], self.rows["out_elems"],
                                  self.rows["workspace_elems"], table.select_pos, entry_elems)
        return peak


class _State:
    """Distinct shapes of the tensor between two segments, and each candidate's code into them."""

    def __init__(self, c, h, w, zero, bound=None, reach=None):
        self.c, self.h, self.w, self.zero = c, h, w, zero
        # the assignments of the genes tracked here with which candidates arrive in each state
        # (``_reach.Reach``; None: nothing tracked, every grid row is priced). Not part of the
        # token: masks are complete, so a grid priced under any of them serves every candidate
        self.reach = reach
        # the fusion and layout state of each distinct entry (a ``costmodel.Boundary``; None: the
        # network input's, or a profile without fusion and layout rules)
        self.bound = bound
        self._token = None
        self._rows = None  # ``row_index``
        # readers -> (projected state, index of each of these states in it) or None (unchanged):
        # a grid's exit states are met again by every later call (``_projected``)
        self.projected: dict = {}

    @property
    def token(self) -> bytes:
        """The shapes and boundary states as bytes: part of a grid's cache key (computed once
        per state)."""
        if self._token is None:
            parts = (self.c, self.h, self.w, self.zero) + (tuple(self.bound) if self.bound is not None else ())
            self._token = b"".join(np.ascontiguousarray(a).tobytes() for a in parts) + \
                bytes(str((len(self.c), self.c.dtype, self.h.dtype, self.w.dtype, self.bound is not None)), "ascii")
        return self._token

    @property
    def n(self) -> int:
        return len(self.c)

    def row_index(self) -> dict:
        """Each distinct state (``_state_rows``) -> its index (computed once per state set)."""
        if self._rows is None:
            self._rows = {r: i for i, r in enumerate(_state_rows(self))}
        return self._rows


def _state_rows(st: "_State") -> list:
    """The states of ``st`` as hashable tuples: shape, zero flag and boundary fields."""
    cols = [st.c, st.h, st.w, st.zero] + (list(st.bound) if st.bound is not None else [])
    cols = [np.broadcast_to(np.asarray(a), (st.n,)).tolist() for a in cols]
    return list(zip(*cols))


def _unique_states(c, h, w, zero, N, bound=None):
    c = np.broadcast_to(np.asarray(c, dtype=np.int64), (N,))
    h = np.broadcast_to(np.asarray(h, dtype=np.int64), (N,))
    w = np.broadcast_to(np.asarray(w, dtype=np.int64), (N,))
    z = np.broadcast_to(np.asarray(zero, dtype=np.int64), (N,))
    if bound is not None:
        # shapes and boundary states together: one column each
        cols = [c, h, w, z] + [np.broadcast_to(np.asarray(a, dtype=np.int64), (N,)) for a in bound]
        uniq, inv = _unique_rows(cols)
        kept = type(bound)(*uniq[4:])  # the same record type
        return _State(uniq[0], uniq[1], uniq[2], uniq[3].astype(bool), kept), inv
    if c.max(initial=0) < 2**21 and max(h.max(initial=0), w.max(initial=0)) < 2**20 and min(c.min(initial=0), h.min(initial=0), w.min(initial=0)) >= 0:
        packed = (c << 42) | (h << 22) | (w << 1) | z
        uniq, inv = np.unique(packed, return_inverse=True)
        return _State(uniq >> 42, (uniq >> 22) & (2**20 - 1), (uniq >> 1) & (2**21 - 1), (uniq & 1).astype(bool)), inv.reshape(-1)
    stacked = np.stack([c, h, w, z], axis=1)
    uniq, inv = np.unique(stacked, axis=0, return_inverse=True)
    return _State(uniq[:, 0], uniq[:, 1], uniq[:, 2], uniq[:, 3].astype(bool)), inv.reshape(-1)


def _unique_rows(cols) -> tuple:
    """``np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)`` as (distinct rows' columns,
    each row's index), in the same (lexicographic) order. The columns are packed into one int64
    key when their ranges allow (the first column most significant, so the keys sort like the
    rows), and a key range not much larger than the rows is made distinct by marking a table
    instead of sorting: a segment's exit states are a few distinct values over many rows."""
    N = len(cols[0])
    if N == 0:
        return [np.zeros(0, dtype=np.int64) for _ in cols], np.zeros(0, dtype=np.intp)
    lo = [int(a.min()) for a in cols]
    span = [int(a.max()) - m + 1 for a, m in zip(cols, lo)]
    total = 1
    for sz in span:
        total *= sz
    if total >= 2**62:
        uniq, inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
        return [np.ascontiguousarray(a) for a in uniq.T], inv.reshape(-1)
    radix, r = [], 1
    for sz in reversed(span):
        radix.append(r)
        r *= sz
    radix.reverse()
    key = np.zeros(N, dtype=np.int64)
    for a, m, rd, sz in zip(cols, lo, radix, span):
        if sz > 1:
            key += (a - m) * rd if rd != 1 else a - m
    if total <= max(4 * N, 65536):
        seen = np.zeros(total, dtype=bool)
        seen[key] = True
        uniq = np.flatnonzero(seen)
        rank = np.zeros(total, dtype=np.intp)
        rank[uniq] = np.arange(len(uniq))
        inv = rank[key]
    else:
        uniq, inv = np.unique(key, return_inverse=True)
        inv = inv.reshape(-1)
    return [(uniq // rd) % sz + m for m, rd, sz in zip(lo, radix, span)], inv


def segment_sums(space, X, make_sink, reduce_max=("workspace_elems", "peak_activation_bytes"), peak=False,
                 seg_fn=None, keep=None, cache=None, derive=None, checked=False, project=None, priced_for=None,
                 XT=None):
    """Whole-network sums for candidates ``X`` through segment tabulation.

    ``make_sink(B)`` makes a sink for ``walk`` with a ``result() -> {field: [B] array}``.
    With ``peak`` the largest live activation bytes are added (``peak_activation_bytes``, a
    max over segments); ``seg_fn(table)`` prices a segment's small layer table (its rows are
    the grid; ``entry``: the rows' entering ``Boundary`` or None) and returns ``(more {field:
    [rows] array} sums, the exit's Boundary or None)``, e.g. a cost model's latency
    (with ``seg_fn`` the sink's sums are those of ``_TotalsSink``, taken from that table).
    ``keep`` (a set of field names) limits what is gathered per candidate; ``derive(sums)`` may
    add fields computed from a grid's sums (a linear combination gathered once instead of its
    terms one by one). ``cache`` (a dict the caller keeps, one per
    ``make_sink``/``seg_fn``/``keep`` setting) keeps the segment grids from one call to the next:
    a search asks for many batches of the same space. ``checked``: ``X`` is already validated;
    ``XT``: its gene rows, built (and ``X`` validated) by ``gene_rows``.
    ``project(readers, bound)`` keeps only the parts of an entering boundary state (see
    ``seg_fn``) that matter to a segment whose layers read the entering tensor ``readers``
    times: fewer distinct entry states, smaller grids.
    ``priced_for``: how many candidates the caller's call prices when ``X`` holds only their
    distinct encodings (what a grid is weighed against: a grid shared by the cells of a stage
    pays off against the whole batch).
    Returns ({field: [B] array}, the network input's element count per candidate).
    """
    if XT is None:
        X, XT = gene_rows(space, X) if not checked else (X, _gene_columns(space, X))
    prog = space.program
    B = X.shape[0]
    segs = segments(prog)
    totals = _Totals(B, reduce_max)
    # the network input: its shape depends on the genes of the resolution only
    inp = _input_states(space)
    codes, in_elems = inp.of(XT)
    states = {-1: (inp.state, codes)}
    # which segments are tabulated: a grid larger than the batch costs more than walking the
    # batch itself, unless it is kept for later calls. With a cache (an Oracle's), a grid of up to
    # CACHED_MAX_GRID rows is priced when the batch is at least that large, or from the cache's
    # CALLS_BEFORE_GRID-th call on (NAS code asking for a candidate at a time): then every grid
    # is priced in one call for every entry shape, and later calls only gather. Once a segment is
    # walked directly, the later entry shapes are the batch's own and such grids are not priced
    # (each batch would ask for others). Merging follows the cache's limit, so every call cuts
    # the network the same way and finds the same grids.
    Bw = max(B, priced_for or 0)  # the batch a grid is weighed against
    limit = CACHED_MAX_GRID if cache is not None else min(MAX_GRID, Bw)
    calls = 0
    if cache is not None:
        calls = cache.calls
        cache.calls += 1
    stable = True
    i = 0
    while i < len(segs):
        seg = segs[i]
        st, cd = states[seg.entry]
        if project is not None and st.bound is not None:
            st, cd = _projected(prog, seg, st, cd, project)
        if cache is not None:
            # a few candidates enter with some of the states an earlier batch entered with: read
            # them as that batch's state set, so the network is cut as it was and its grids hit
            st, cd = cache.entering(seg.start, st, cd)
        N = st.n * seg.combos
        # every per-candidate step (key arithmetic, gathers, adds) is paid per segment, so small
        # neighbours are tabulated together while the merged grid stays small
        j, run_combos = i + 1, seg.combos
        while j < len(segs):
            # the merged grid is the product over the whole run (a run of many small segments,
            # e.g. FBNet's 22 nine-way layers, must not merge into one 9^22 grid)
            nxt = st.n * run_combos * segs[j].combos
            if nxt > limit or (segs[j].combos > 1 and nxt > MERGE_GRID) or \
                    nxt * (segs[j].stop - seg.start) > CACHED_GRID_CELLS:
                break
            run_combos *= segs[j].combos
            j += 1
        if j > i + 1:
            seg = _merge(prog, segs[i:j])
            N = st.n * seg.combos
        i = j
        tab = N <= min(MAX_GRID, Bw)
        if not tab and cache is not None and N <= STATE_GRID and seg.combos <= CACHED_MAX_GRID and \
                seg.combos * (seg.stop - seg.start) <= CACHED_GRID_CELLS:
            tab = _grid_key(seg, st) in cache.grids or (stable and (N <= Bw or calls >= CALLS_BEFORE_GRID))
        if tab:
            out_state, out_codes = _tabulate(space, X, XT, seg, st, cd, make_sink, peak, seg_fn, keep, cache,
                                             derive, totals)
        else:
            out_state, out_codes, sums = _direct(space, X, seg, st, cd, make_sink, peak, seg_fn, derive)
            stable = False
            for k, v in sums.items():
                totals.add_field(k, v)
        states[seg.stop - 1] = (out_state, out_codes)
    return totals.result(), in_elems


def _projected(prog, seg, st, codes, project):
    """The entry states ``st`` with only what matters to ``seg`` kept (``project``), distinct
    again, and each candidate's code into them."""
    readers = sum(1 for n in prog.nodes[seg.start:seg.stop] if seg.entry in n.inputs)
    if readers not in st.projected:  # a state set belongs to one profile's cache: one projection
        bound = project(readers, st.bound)
        hit = None
        if bound is not st.bound:
            new, inv = _unique_states(st.c, st.h, st.w, st.zero, st.n, bound)
            hit = (new, inv) if new.n != st.n else None
            if hit is not None and st.reach is not None:
                new.reach = st.reach._replace(mask=_reach.merged(st.reach.mask, inv, new.n))
        st.projected[readers] = hit
    hit = st.projected[readers]
    if hit is None:
        return st, codes
    return hit[0], _mapped(hit[1], codes)


class _Codes(NamedTuple):
    """Each candidate's code into a state set, kept as ``table[key]`` (a grid's exit codes and the
    candidates' rows in it): the maps applied to the codes before the next grid reads them
    (``_projected``, ``GridCache.entering``, ``codes * R`` in ``_keys``) run on the small table,
    and the next key is one gather of it instead of a gather and a pass over the batch per map."""

    table: np.ndarray  # [rows] codes
    key: np.ndarray  # [B] row of each candidate

    def values(self) -> np.ndarray:
        return np.take(self.table, self.key)


def _mapped(m, codes):
    """``m[codes]`` for plain codes or ``_Codes`` (mapped on their table)."""
    if isinstance(codes, _Codes):
        return codes._replace(table=np.take(m, codes.table))
    return np.take(m, codes)


def _values(codes) -> np.ndarray:
    """Plain codes of plain codes or ``_Codes``."""
    return codes.values() if isinstance(codes, _Codes) else codes


def _gene_columns(space, X, top=None):
    """``X`` transposed to one contiguous row per gene, for a large batch in the narrowest
    integer type that holds the options: the key arithmetic reads these rows once per segment,
    and a narrow copy is several times cheaper to transpose and to read than the int64
    encodings. A small batch keeps int64 (see ``_keys``). With ``top`` (``[G]`` uint64) the
    largest option of each gene (read as unsigned) is folded into it block by block, while the
    block is in the caches (``gene_rows``)."""
    dt = _gene_type(space, X.shape[0])
    if dt is np.int64:
        if top is not None:
            np.maximum(top, column_max(X.view(np.uint64)), out=top)
        return np.ascontiguousarray(X.T)
    # cast and turned a block of rows at a time (the block stays in the caches): about 3x quicker
    # than a whole-batch cast followed by a whole-batch transpose
    out = np.empty((X.shape[1], X.shape[0]), dtype=dt)
    for lo in range(0, X.shape[0], GENE_ROWS_PER_STEP):
        block = X[lo:lo + GENE_ROWS_PER_STEP]
        if top is not None:
            np.maximum(top, column_max(block.view(np.uint64)), out=top)
        out[:, lo:lo + GENE_ROWS_PER_STEP] = block.T  # options fit ``dt`` (checked, or ``top`` tells)
    return out


def _gene_type(space, B):
    """The integer type of a batch's gene rows (``_gene_columns``)."""
    most = int(space._sizes.max(initial=1))
    return np.int64 if B < NARROW_BATCH else np.int8 if most <= 127 else np.int16 if most <= 32767 else np.int64


def gene_rows(space, X) -> tuple:
    """``(X as int64 encodings, its gene rows)``: ``space.check_encodings`` and
    ``_gene_columns`` in one pass over the batch. A large batch streams from memory once instead
    of twice (the check's per-gene maxima are taken from the blocks being transposed); a bad
    option is reported by ``check_encodings`` as ever (the first bad candidate of ``X``)."""
    X = space.check_encodings(X, values=False)
    if not X.size:
        return space.check_encodings(X), _gene_columns(space, X)
    top = np.zeros(X.shape[1], dtype=np.uint64)
    XT = _gene_columns(space, X, top)
    if (top >= space._sizes.astype(np.uint64)).any():
        space.check_encodings(X)  # raises, naming the first bad candidate
    return X, XT


class _Totals:
    """Per-candidate sums of the gathered grid fields.

    Each tabulated segment hands over its grid's ``[rows, F]`` values and each candidate's row
    (``key``); segments with the same fields are gathered and added together at the end, a few
    thousand candidates at a time, so that the running ``[candidates, F]`` block stays in the
    caches instead of streaming through memory once per segment. The additions run in the
    segments' order (the same sums as adding whole blocks). Fields are split out only at the end."""

    # a step gathers about this many values ([rows, F]: about 256 KB, in L2 with the block it
    # adds), in at least MIN_ROWS_PER_STEP rows: few fields take many rows a step, so the Python
    # steps per segment stay few (mobile's 5 fields: 6,553 rows; a residual's 26: 2,048)
    VALUES_PER_STEP = 2**15
    MIN_ROWS_PER_STEP = 2048

    def __init__(self, B, reduce_max):
        self.B, self.reduce_max = B, set(reduce_max)
        self.blocks: dict = {}  # (names, is max) -> [(grid values [rows, F], key [B])]
        self.fields: dict = {}  # name -> [B] array, owned (segments evaluated directly)

    def add_block(self, names, vals, key, is_max=False):
        self.blocks.setdefault((names, is_max), []).append((vals, key))

    def add_field(self, k, v, owned=False):
        """Add ``v`` ([B], or a scalar) to field ``k`` (max for a reduced field); an ``owned`` ``[B]``
        float64 array that nothing else holds is kept as it is when ``k`` is new."""
        cur = self.fields.get(k)
        if cur is None:
            self.fields[k] = v if owned else np.array(np.broadcast_to(v, (self.B,)), dtype=np.float64)
        elif k in self.reduce_max:
            np.maximum(cur, v, out=cur)
        else:
            np.add(cur, v, out=cur)

    def _gather(self, parts, is_max) -> np.ndarray:
        """``[F, B]``: the fields' sums (or maxima) over the parts, one contiguous row per field."""
        op = np.maximum if is_max else np.add
        F = parts[0][0].shape[1]
        out = np.empty((F, self.B), dtype=np.float64)
        rows = max(self.MIN_ROWS_PER_STEP, self.VALUES_PER_STEP // max(1, F))
        step = np.empty((min(self.B, rows), F), dtype=np.float64)
        got = np.empty_like(step)
        for lo in range(0, self.B, rows):
            hi = min(self.B, lo + rows)
            acc, add = step[:hi - lo], got[:hi - lo]
            # keys are in range: ``clip`` writes straight into ``out`` (no buffer)
            np.take(parts[0][0], parts[0][1][lo:hi], axis=0, out=acc, mode="clip")
            for vals, key in parts[1:]:
                op(acc, np.take(vals, key[lo:hi], axis=0, out=add, mode="clip"), out=acc)
            # turned while the block is in the caches: the fields come out as rows, not strided
            # columns that would each be copied again
            out[:, lo:hi] = acc.T
        return out

    def result(self) -> dict:
        for (names, is_max), parts in self.blocks.items():
            block = self._gather(parts, is_max)
            for c, k in enumerate(names):
                self.add_field(k, block[c], owned=True)
        return self.fields


def _merge(prog, run) -> Segment:
    """Consecutive segments as one (each reads the previous one's exit, so the run reads only
    the first one's entry)."""
    cache = derived(prog).merged
    key = (run[0].start, run[-1].stop)
    seg = cache.get(key)
    if seg is None:
        genes = tuple(sorted({g for s in run for g in s.genes}))
        _, radix, combos = _mixed_radix(prog, genes)
        seg = cache[key] = Segment(run[0].start, run[-1].stop, run[0].entry, genes, radix, combos)
    return seg


class InputStates(NamedTuple):
    """The network input, whose shape depends on the resolution genes only: the one place its
    size is computed (per distinct shape), once per space."""

    genes: tuple  # the genes its shape depends on
    radix: np.ndarray  # their mixed-radix multipliers
    state: "_State"  # its distinct shapes
    codes: np.ndarray  # each combination of ``genes``: its shape's index in ``state``
    elems: np.ndarray  # elements of each distinct shape

    def of(self, XT) -> tuple:
        """``(each candidate's shape code, each candidate's input elements)`` of gene rows ``XT``."""
        codes = np.take(self.codes, _keys(XT, np.zeros(XT.shape[1], dtype=np.int64), 1, self.genes, self.radix))
        return codes, np.take(self.elems, codes)


def _input_states(space) -> InputStates:
    """The network input's ``InputStates``, computed once per program."""
    prog = space.program
    d = derived(prog)
    if d.input_states is not None:
        return d.input_states
    genes = _input_genes(prog)
    sizes, radix, n = _mixed_radix(prog, genes)
    ev = _Eval(space, _combinations(space.n_genes, genes, radix, sizes, n))
    h = np.broadcast_to(np.asarray(ev.h[-1], dtype=np.int64), (n,))
    w = np.broadcast_to(np.asarray(ev.w[-1], dtype=np.int64), (n,))
    state, codes = _unique_states(prog.in_channels, h, w, False, n)
    state.reach = _reach.input_reach(genes, sizes, codes, state.n, _live_genes(prog)[-1], _option_counts(prog))
    d.input_states = InputStates(genes, radix, state, codes.astype(np.int64),
                                 (state.c * state.h * state.w).astype(np.int64))
    return d.input_states


def _input_genes(prog) -> tuple:
    """The genes the network input's shape depends on (the resolution's)."""
    genes: set = set()
    _expr_genes(prog.in_h, genes)
    _expr_genes(prog.in_w, genes)
    return tuple(sorted(genes))


def _option_counts(prog) -> list:
    """Each gene's option count (computed once per program)."""
    d = derived(prog)
    if d.option_counts is None:
        d.option_counts = [len(g.options) for g in prog.genes]
    return d.option_counts


def _live_genes(prog) -> dict:
    """Boundary node -> the genes whose assignments its states carry (``_reach.live_genes``),
    computed once per program."""
    d = derived(prog)
    if d.live_genes is None:
        segs = segments(prog)
        d.live_genes = _reach.live_genes([s.genes for s in segs], [s.stop for s in segs], _input_genes(prog),
                                         _option_counts(prog))
    return d.live_genes


def _keys(XT, codes, R, genes, radix, gene_index=None):
    """``codes * R + sum(XT[g] * r)``: each candidate's row in a grid of ``R`` combinations per
    entry code. Narrow gene rows (int8/int16, large batches) give int16 keys (int32 for a
    grid over more than 32767 rows); a small batch takes one product over its genes (a few calls on tiny
    arrays instead of two per gene)."""
    table = codes.table if isinstance(codes, _Codes) else codes
    if XT.dtype == np.int64:
        dt = np.int64
    else:  # from the table's largest code (of a _Codes: some may be no candidate's, a wider type at worst)
        dt = np.int16 if (int(table.max(initial=0)) + 1) * R <= 32767 else np.int32
    if isinstance(codes, _Codes):  # scaled on the small table, then one gather
        key = np.take(table.astype(dt) * dt(R), codes.key)
    else:
        key = codes.astype(dt)
        if R != 1:
            key *= dt(R)
    if XT.dtype == np.int64:
        if len(genes):
            key += np.dot(radix, XT[gene_index if gene_index is not None else list(genes)])
        return key
    for g, r in zip(genes, radix):
        key += XT[g] * dt(r) if r != 1 else XT[g]
    return key


class Grid(NamedTuple):
    """A segment priced on every (entry state, segment genes) row: what each candidate gathers by
    its key."""

    out_state: "_State"  # the distinct exit states of its rows
    codes: np.ndarray  # each row's exit state code (int16 when it fits)
    sum_names: tuple  # the summed fields, the columns of ``sum_vals``
    sum_vals: np.ndarray  # [rows, len(sum_names)] float64
    max_names: tuple  # the fields reduced by max over segments, the columns of ``max_vals``
    max_vals: np.ndarray  # [rows, len(max_names)] float64
    errors: list  # lowering.DeferredError of rows whose shapes do not work
    # rows no candidate can gather were left out (``_reach``), or the exit states carry gene
    # assignments: shared only with a segment of the same genes and tracking (``_tracking_key``)
    tracked: bool = False
    walked: np.ndarray | None = None  # the rows priced (``_reach.grid_rows``; None: every row)

    @property
    def nbytes(self) -> int:
        st = self.out_state
        return sum(a.nbytes for a in (self.codes, self.sum_vals, self.max_vals, st.c, st.h, st.w))


class GridCache:
    """Segment grids kept from one call of ``segment_sums`` to the next (an Oracle keeps one per
    profile, batch and breakdown setting)."""

    def __init__(self):
        self.grids: dict = {}  # (start, stop, entry-state token) -> Grid
        self.shared: dict = {}  # (segment signature, entry-state token) -> Grid, for segments built alike
        # (signature, entry-state token, ``_walk_key``) -> a tracked Grid: its walk serves a segment
        # built alike whose exit tracks other genes (``_retracked``)
        self.walked: dict = {}
        self.bytes = 0  # of the grids kept; beyond GRID_CACHE_BYTES the cache starts over
        self.calls = 0  # calls of segment_sums with this cache so far
        self.entries: dict = {}  # segment start -> the entry state sets met there, latest last
        # the costs of every candidate of a small space, kept by the oracle (``oracle._whole_space``;
        # False: the space holds candidates whose shapes fail, so none is kept)
        self.whole = None

    def clear(self):
        self.grids.clear()
        self.shared.clear()
        self.walked.clear()
        self.entries.clear()
        self.whole = None
        self.bytes = self.calls = 0

    def entering(self, start: int, st: "_State", codes):
        """``(st, codes)``, or an earlier state set at segment ``start`` holding every state of
        ``st`` and the codes into it (the grids priced for it hold these states' rows, so the
        call finds them instead of pricing grids for its own few states). A state set not met
        before is remembered."""
        met = self.entries.setdefault(start, [])
        if any(k is st for k in met):
            return st, codes
        if st.n <= MAX_SUBSET_STATES:
            rows = _state_rows(st)
            for k in reversed(met):
                if k.n < st.n:
                    continue
                index = k.row_index()
                if all(r in index for r in rows):
                    return k, _mapped(np.array([index[r] for r in rows], dtype=np.int64), codes)
        if not any(k.token == st.token for k in met):
            met.append(st)
            del met[:-MAX_STATE_SETS]
        return st, codes

    def keep(self, key, grid: Grid, shared_key=None, walk_key=None):
        """Keep ``grid`` under ``key`` (and ``shared_key``, and a tracked grid's ``walk_key``,
        unless it has deferred errors, which name this segment's layers); start over beyond the
        byte budget."""
        size = grid.nbytes
        if self.bytes + size > GRID_CACHE_BYTES:  # batches whose entry shapes keep changing
            self.clear()
        self.bytes += size
        self.grids[key] = grid
        if shared_key is not None and not grid.errors:
            self.shared[shared_key] = grid
            if walk_key is not None and grid.tracked:
                self.walked[walk_key] = grid


def _grid_key(seg, st):
    return seg.start, seg.stop, st.token


def _tabulate(space, X, XT, seg, st, codes, make_sink, peak, seg_fn, keep, cache, derive, totals):
    key = _keys(XT, codes, seg.combos, seg.genes, seg.radix, seg.gene_index)
    hit = None
    if cache is not None:
        ck = _grid_key(seg, st)
        hit = cache.grids.get(ck)
        if hit is None:
            # a segment built like one priced before (the cells of a stage: same layers, same
            # genes, same entry shapes) has the same grid; one whose rows or exit states follow
            # its genes (``Grid.tracked``) only when the genes and what is tracked are the same
            sig = _signature(space.program, seg)
            sk = wk = None if sig is None else (sig, st.token)
            hit = cache.shared.get(sk) if sk is not None else None
            if hit is None and sk is not None:
                wk = sk + _walk_key(seg, st)
                sk = wk + (_exit_genes(space.program, seg),)
                hit = cache.shared.get(sk)
                if hit is None and wk in cache.walked:
                    # walked alike, only the genes tracked at the exit differ (NAS-Bench-201's last
                    # cell before the head tracks none, the cells before it all six)
                    hit = _retracked(space, seg, st, cache.walked[wk])
                    if hit is not None:
                        cache.keep(ck, hit, sk)
            if hit is not None:
                cache.grids[ck] = hit
    if hit is None:
        hit = _grid_values(space, seg, st, make_sink, peak, seg_fn, keep, derive, totals.reduce_max)
        if cache is not None:
            cache.keep(ck, hit, sk if sk is None or hit.tracked else sk[:2], wk)
    _raise_deferred(space, X, hit.errors, key)
    # one gather of every field of a grid row ([rows, F] rows are contiguous; take beats fancy indexing)
    if hit.sum_names:
        totals.add_block(hit.sum_names, hit.sum_vals, key)
    if hit.max_names:
        totals.add_block(hit.max_names, hit.max_vals, key, is_max=True)
    return hit.out_state, _Codes(hit.codes, key)


def _tracking_key(prog, seg, st) -> tuple:
    """What a tracked grid's rows and exit assignments depend on besides its signature and entry
    states: the segment's genes and entry assignments (``_walk_key``), the genes tracked at its
    exit."""
    return _walk_key(seg, st) + (_exit_genes(prog, seg),)


def _walk_key(seg, st) -> tuple:
    """What the rows a tracked grid walks depend on besides its signature and entry states: the
    segment's genes and the entry assignments (``_reach.grid_rows``)."""
    r = st.reach
    return (seg.genes, None if r is None else (r.genes, r.mask.shape, r.mask.tobytes()))


def _exit_genes(prog, seg) -> tuple:
    """The genes whose assignments ``seg``'s exit states carry."""
    return _live_genes(prog).get(seg.stop - 1, ())


def _retracked(space, seg, st, grid):
    """``grid``, priced for a segment with ``seg``'s signature, genes, entry states and entry
    assignments, with the assignments of ``seg``'s exit genes on its exit states; None when
    ``seg`` would walk other rows. The walk (sums, exit shapes and layouts) depends on the rows
    only, the exit's tracked genes on nothing else."""
    _, found = _reachable(space, seg, st)
    if (found.rows is None) != (grid.walked is None) or \
            (found.rows is not None and not np.array_equal(found.rows, grid.walked)):
        return None
    old = grid.out_state
    codes = grid.codes if found.rows is None else np.take(grid.codes, found.rows)
    out_state = _State(old.c, old.h, old.w, old.zero, old.bound, _reach.exit_reach(found, codes, old.n))
    return grid._replace(out_state=out_state, tracked=found.rows is not None or out_state.reach is not None)


def _reachable(space, seg, st, prune=True) -> tuple:
    """``(grid rows [N, G], _reach.RowReach)``: every (entry state, segment genes) combination of
    ``seg`` as encodings, and those some candidate can gather (with ``prune`` off, every one)."""
    prog = space.program
    counts = _option_counts(prog)
    grid = _combinations(space.n_genes, seg.genes, seg.radix, [counts[g] for g in seg.genes], st.n * seg.combos)
    found = (_reach.grid_rows(st.reach, st.n, seg.genes, grid, _exit_genes(prog, seg), counts)
             if prune else _reach.UNTRACKED)
    return grid, found


class _Unshared(Exception):
    pass


def _signature(prog, seg):
    """What a segment's grid depends on besides its entry shapes, with node ids relative to the
    segment and genes by their rank in it: equal signatures, equal grids. ``None`` when some
    part cannot be compared (the segment is then never shared)."""
    cache = derived(prog).signatures
    key = (seg.start, seg.stop)
    if key in cache:
        return cache[key]
    rank = {g: i for i, g in enumerate(seg.genes)}

    def ref(i):
        if seg.start <= i < seg.stop:
            return i - seg.start
        if i == seg.entry:
            return "entry"
        raise _Unshared

    def expr(e):
        if e is None or isinstance(e, (bool, int, float, str)):
            return ("v", type(e).__name__, e)
        if isinstance(e, Const):
            return ("c", expr(e.value) if not isinstance(e.value, (tuple, list)) else tuple(expr(v) for v in e.value))
        if isinstance(e, GeneVal):
            return ("g", rank[e.gene], tuple(e.options))
        if isinstance(e, Fn):
            k = _fn_key(e.fn)
            hash(k)
            return ("f", k, tuple(expr(a) for a in e.args))
        if isinstance(e, Channels):
            return ("ch", ref(e.node))
        if isinstance(e, tuple):
            return ("t", tuple(expr(a) for a in e))
        raise _Unshared

    passthrough = _static_info(prog).passthrough
    shares = buffer_facts(prog).shares
    try:
        parts = [tuple(len(prog.genes[g].options) for g in seg.genes), seg.entry == -1]
        for i in range(seg.start, seg.stop):
            n = prog.nodes[i]
            params = []
            for k in sorted(n.params):
                v = n.params[k]
                params.append((k, ("gene", rank[v]) if n.op == "select" and k == "gene" else expr(v)))
            parts.append((n.op, n.table_type, tuple(ref(j) for j in n.inputs), tuple(params),
                          tuple((rank[g], tuple(sorted(a))) for g, a in n.conds), expr(n.when),
                          passthrough[i], shares[i], i == prog.output))
        sig = tuple(parts)
        hash(sig)
    except (_Unshared, KeyError, TypeError):
        sig = None
    cache[key] = sig
    return sig


def _grid_values(space, seg, st, make_sink, peak, seg_fn, keep, derive=None, reduce_max=(), prune=True):
    """A segment evaluated on every (entry state, segment genes) combination that some candidate
    can gather (``_reach``; with ``prune`` off, on every one): what each candidate then gathers
    by its key. Depends on the entry states, not on the candidates. The rows no candidate can
    gather are left zero (their exit code 0). Many entry states (fusion and layout profiles)
    are walked a block of rows at a time, so that a block's layer table stays within
    CACHED_GRID_CELLS."""
    R = seg.combos
    N = st.n * R
    grid, found = _reachable(space, seg, st, prune)
    rows = found.rows
    n = N if rows is None else len(rows)
    per = max(MIN_BLOCK_ROWS, WALK_CELLS // max(1, seg.stop - seg.start))  # rows per block
    parts = []
    for lo in range(0, n, per):
        hi = min(n, lo + per)
        idx = np.arange(lo, hi, dtype=np.int64) if rows is None else rows[lo:hi]
        parts.append(_Block(idx, *_walk_segment(space, grid[lo:hi] if rows is None else grid[idx], seg, st, idx // R,
                                                make_sink, peak, seg_fn, derive)))
    if len(parts) == 1:
        out_state, grid_codes, res = parts[0].out_state, parts[0].codes, parts[0].sums
        errors = list(parts[0].ev.errors) if rows is None else _spread_errors(parts, N, False)
    else:
        out_state, grid_codes, res, errors = _join_blocks(parts, n, N, rows is None)
    out_state.reach = _reach.exit_reach(found, grid_codes, out_state.n)
    names = [k for k in res if keep is None or k in keep or k.startswith("latency_ms.")]
    sum_names = tuple(k for k in names if k not in reduce_max)
    max_names = tuple(k for k in names if k in reduce_max)
    sum_vals, max_vals = (np.column_stack([np.broadcast_to(np.asarray(res[k], dtype=np.float64), (n,)) for k in names])
                          if names else np.empty((n, 0)) for names in (sum_names, max_names))
    if rows is not None:  # the rows no candidate gathers stay zero
        sum_vals, max_vals, grid_codes = (_scattered(a, rows, N) for a in (sum_vals, max_vals, grid_codes))
    if N <= 32767:
        grid_codes = grid_codes.astype(np.int16)
    return Grid(out_state, grid_codes, sum_names, sum_vals, max_names, max_vals, errors,
                rows is not None or out_state.reach is not None, rows)


def _scattered(a, rows, N) -> np.ndarray:
    """``a`` (one entry per row of ``rows``) spread to ``N`` rows, zero elsewhere."""
    out = np.zeros((N,) + a.shape[1:], dtype=a.dtype)
    out[rows] = a
    return out


class _Walked(NamedTuple):
    """A walk of a segment over some rows (``_walk_segment``)."""

    ev: object  # the lowering's evaluation context (its ``errors``: deferred shape errors)
    out_state: "_State"  # the distinct exit states
    codes: np.ndarray  # each row's code into them
    sums: dict  # field -> [rows] sums


class _Block(NamedTuple):
    """Grid rows ``rows`` walked together (a block of entry states, or of the rows candidates
    can gather)."""

    rows: np.ndarray
    ev: object
    out_state: "_State"
    codes: np.ndarray
    sums: dict


def _join_blocks(parts, n, N, contiguous):
    """One grid from ``_Block``s (``n`` rows walked of ``N``; ``contiguous``: all of them, in
    order): the exit states made distinct again, the sums concatenated (one per walked row), the
    deferred errors spread to the grid's rows."""
    exits = [np.concatenate([np.take(getattr(p.out_state, f), p.codes) for p in parts])
             for f in ("c", "h", "w", "zero")]
    bound = None
    first = parts[0].out_state.bound
    if first is not None:
        bound = type(first)(*(np.concatenate([np.take(p.out_state.bound[i], p.codes) for p in parts])
                              for i in range(len(first))))
    out_state, grid_codes = _unique_states(*exits, n, bound)
    res = {k: np.concatenate([np.broadcast_to(np.asarray(p.sums[k], dtype=np.float64), (len(p.rows),)) for p in parts])
           for k in parts[0].sums}
    return out_state, grid_codes, res, _spread_errors(parts, N, contiguous)


def _spread_errors(parts, N, contiguous) -> list:
    """The deferred errors of ``_Block``s spread to a grid's ``N`` rows."""
    errors = []
    for p in parts:
        for e in p.ev.errors:
            full = np.zeros(N, dtype=bool)
            full[p.rows] = e.bad
            if contiguous:
                offset = int(p.rows[0])
            else:  # each grid row's row in the block
                offset = np.zeros(N, dtype=np.int64)
                offset[p.rows] = np.arange(len(p.rows))
            errors.append(e._replace(bad=full, offset=offset))
    return errors


def _walk_segment(space, X, seg, st, codes, make_sink, peak, seg_fn, derive, candidates=False):
    """Walk ``seg`` for the rows ``X`` entering with shapes ``st`` by ``codes``: ``(evaluation,
    exit shapes, each row's code into them, {field: [rows] sums})``. Shape errors are kept in
    ``evaluation.errors`` for a grid (its rows may be combinations no candidate has) and raised
    before anything is priced when the rows are ``candidates``."""
    N = X.shape[0]
    entry = Entry(seg.entry, st.c[codes], st.h[codes], st.w[codes], st.zero[codes] if st.zero.any() else False)
    if peak or seg_fn:
        sink = _Recorder(space.program, seg, N, None if seg_fn else make_sink(N), full=bool(seg_fn))
    else:
        sink = make_sink(N)
    ev = walk(space, X, sink, seg.start, seg.stop, entry, defer_errors=True)
    if candidates:
        _raise_deferred(space, X, ev.errors, np.arange(N))
    out = seg.stop - 1
    out_state = None
    res = dict(sink.result())
    if peak or seg_fn:
        table = sink.table(space.program, ev)
        if peak:
            res["peak_activation_bytes"] = sink.peak(space.program, table, st.c[codes] * st.h[codes] * st.w[codes])
        if seg_fn:
            entry_bound = st.bound.take(codes) if st.bound is not None else None
            sums, exit_bound = seg_fn(table, entry_bound)
            res.update(sums)
            if exit_bound is not None:
                out_state, out_codes = _unique_states(ev.c[out], ev.h[out], ev.w[out], ev.zero[out], N, exit_bound)
    if out_state is None:
        out_state, out_codes = _unique_states(ev.c[out], ev.h[out], ev.w[out], ev.zero[out], N)
    if derive is not None:
        res.update(derive(res))
    return _Walked(ev, out_state, out_codes, res)


def _direct(space, X, seg, st, codes, make_sink, peak=False, seg_fn=None, derive=None):
    w = _walk_segment(space, X, seg, st, _values(codes), make_sink, peak, seg_fn, derive, candidates=True)
    return w.out_state, w.codes, w.sums


def _raise_deferred(space, X, errors, key):
    if not errors:
        return
    for e in errors:
        hit = e.bad[key]
        if hit.any():
            i = int(np.argmax(hit))
            # a row of the block the message was made for
            row = int(e.offset[key[i]]) if isinstance(e.offset, np.ndarray) else int(key[i]) - e.offset
            pick = (lambda a: a[row] if isinstance(a, np.ndarray) and a.ndim else a)
            picks = [f"{g.name}={g.options[X[i, j]]}" for j, g in enumerate(space.genes)][:8]
            cand = f" for candidate {i} ({', '.join(picks)}{', ...' if space.n_genes > 8 else ''})" if space.n_genes else ""
            raise ShapeError(f"{e.msg(pick)}{cand} ({space.program.source}, {e.node.keypath})")


def fast_totals(space, X, peak: bool = True) -> dict:
    """The figures of ``analysis.totals`` for ``X[B, G]``, each ``[B]``, without building the
    layer table: segments of the network are tabulated, summed by ``lowering._TotalsSink`` and
    assembled by the one rule of ``_totals.network_totals``."""
    prog = space.program
    r, in_elems = segment_sums(space, X, lambda n: _TotalsSink(prog, n), peak=peak)
    return network_totals(r, in_elems, r.get("peak_activation_bytes", np.zeros(len(in_elems))) if peak else None)
