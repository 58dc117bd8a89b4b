"""The exact Pareto front of a chain of segments, by dynamic programming over their entry states.

This module knows nothing about networks. A problem is a chain of **stages** (segments); each
stage offers **choices**: from an entry state id, one combination of the stage's genes leads to
an exit state id and adds a vector of values (``add``, summed along the chain) and raises another
(``mx``, composed by maximum). A candidate is one choice per stage, chained by state ids. Its
totals depend only on its choices, so the Pareto front of the totals is found by a shortest-path
like sweep: per state, keep the non-dominated partial totals; extend stage by stage; prune what
can no longer meet a limit.

State ids are whatever the adapter makes them (today a tensor shape; a shape plus fusion/layout
flags works the same way: the core only compares ids). Genes shared by several stages (a width
multiplier, a stage's depth, a cell genotype repeated along the network) are handled by
**carrying** them in the state: between two stages that both use a gene, the gene's option is part
of the DP state, so every candidate stays consistent. The cost is a larger state count (the
product of the carried genes' option counts), never an approximation.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import numpy as np

from ._errors import ConstraintError

MAX_CARRY_STATES = 2**40  # carried gene combinations x states must fit an int64 key comfortably
BLOCK = 2048  # points compared at once in the k-dimensional non-dominance filter
BLOCK_3D = 256  # ... in the three-column filter (its blocks are compared among themselves pairwise)


class Stage(NamedTuple):
    """The choices of one segment, flat over entry states (choice ``i``: ``entry[i]`` ->
    ``exit[i]`` with gene combination ``combo[i]``)."""

    genes: tuple  # gene indices (into the encoding) the combinations range over
    sizes: tuple  # their option counts; combo = sum(option * radix), the last gene fastest
    entry: np.ndarray  # [n] int64
    combo: np.ndarray  # [n] int64
    exit: np.ndarray  # [n] int64
    add: np.ndarray  # [n, A] float64
    mx: np.ndarray  # [n, M] float64


class Criterion(NamedTuple):
    """A column the partial fronts are compared on: ``sign * column`` is minimized."""

    kind: str  # "add" or "max"
    column: int
    sign: float  # +1 (smaller is better) or -1 (larger is better)


class Limit(NamedTuple):
    """``value(add totals [n, A], max totals [n, M]) <= bound``; ``value`` must be non-decreasing in
    every column (it is used on optimistic totals to prune)."""

    name: str
    value: Callable
    bound: float


@dataclass
class DPStats:
    states: list = field(default_factory=list)  # DP nodes (state x carried genes) per boundary
    points: list = field(default_factory=list)  # kept partial points per boundary
    expanded: int = 0  # partial points generated before filtering, all stages
    peak_points: int = 0
    seconds: float = 0.0


class DPResult(NamedTuple):
    choices: np.ndarray  # [n, S] index of each point's choice in each stage
    add: np.ndarray  # [n, A]
    mx: np.ndarray  # [n, M]
    stats: DPStats


def _radix(sizes) -> np.ndarray:
    r = np.ones(len(sizes), dtype=np.int64)
    for i in range(len(sizes) - 2, -1, -1):
        r[i] = r[i + 1] * sizes[i + 1]
    return r


def _digits(stage: Stage) -> dict:
    """``{gene: [n] option}`` of every choice of ``stage``."""
    r = _radix(stage.sizes)
    return {g: (stage.combo // r[i]) % stage.sizes[i] for i, g in enumerate(stage.genes)}


def _carried(stages) -> list:
    """Per boundary ``s`` (before stage ``s``; ``len(stages) + 1`` of them): the sorted genes used
    both by some stage before ``s`` and by some stage at or after ``s``."""
    first, last = {}, {}
    for s, st in enumerate(stages):
        for g in st.genes:
            first.setdefault(g, s)
            last[g] = s
    return [tuple(sorted(g for g in first if first[g] < s <= last[g])) for s in range(len(stages) + 1)]


def lower_bounds(stages, n_states_after) -> list:
    """Per boundary, per state id: the least each ``add`` column can still grow (each column
    minimized on its own over the remaining choices, ignoring carried genes: a valid bound).
    ``inf`` where no chain reaches the end."""
    A = stages[0].add.shape[1]
    lb = [None] * (len(stages) + 1)
    lb[-1] = np.zeros((n_states_after[-1], A))
    for s in range(len(stages) - 1, -1, -1):
        st = stages[s]
        # every entry state, also one whose every choice was dropped (shapes that do not work)
        n_in = max(int(st.entry.max(initial=-1)) + 1, n_states_after[s - 1] if s else 1)
        cur = np.full((n_in, A), np.inf)
        if len(st.entry):
            np.minimum.at(cur, st.entry, st.add + lb[s + 1][st.exit])
        lb[s] = cur
    return lb


def nondominated(V: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Mask of the rows of ``V`` ([n, D], minimized) that no row of the same ``group`` dominates;
    of identical rows the first is kept."""
    n, D = V.shape
    if n == 0:
        return np.zeros(0, dtype=bool)
    if D == 1:
        order = np.lexsort((V[:, 0], group))
        g = group[order]
        first = np.ones(n, dtype=bool)
        first[1:] = g[1:] != g[:-1]
        keep = np.zeros(n, dtype=bool)
        keep[order[first]] = True
        return keep
    if D == 2:
        return _nondominated_2d(V, group)
    keep = np.zeros(n, dtype=bool)
    order = np.lexsort(tuple(V[:, d] for d in range(D - 1, -1, -1)) + (group,))
    g = group[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], n]
    single = ends - starts == 1
    keep[order[starts[single]]] = True  # alone in its group: nothing to compare with
    filt = _nondominated_sorted_3d if D == 3 else _nondominated_sorted
    for a, b in zip(starts[~single], ends[~single]):
        idx = order[a:b]
        keep[idx[filt(V[idx])]] = True
    return keep


def _nondominated_2d(V, group):
    """Two columns: sort by (group, first, second); a row is kept when its second column beats
    every earlier row's of its group. The running minimum is taken over dense ranks offset per
    group (integers, exact), so it restarts at each group in one vectorized pass."""
    n = len(V)
    order = np.lexsort((V[:, 1], V[:, 0], group))
    g = group[order]
    _, rank = np.unique(V[order, 1], return_inverse=True)
    gstart = np.r_[True, g[1:] != g[:-1]]
    gid = np.cumsum(gstart) - 1
    key = rank.reshape(-1).astype(np.int64) - gid * (n + 1)
    best_before = np.empty(n, dtype=np.int64)
    best_before[0] = np.iinfo(np.int64).max
    best_before[1:] = np.minimum.accumulate(key)[:-1]
    keep_sorted = (key < best_before) | gstart
    keep = np.zeros(n, dtype=bool)
    keep[order[keep_sorted]] = True
    return keep


def _nondominated_sorted_3d(V):
    """Three columns, rows sorted lexicographically: every kept row before a row has a first
    column no larger, so the row is dominated when some kept row has second <= its second and
    third <= its third: a prefix minimum of the third column over the kept rows sorted by the
    second, looked up by binary search (a block at a time; within a block, pairwise)."""
    n = len(V)
    kept = np.zeros(n, dtype=bool)
    Kb = np.empty(0)
    Kc = np.empty(0)
    for a in range(0, n, BLOCK_3D):
        blk = V[a:a + BLOCK_3D]
        ok = np.ones(len(blk), dtype=bool)
        if len(Kb):
            pos = np.searchsorted(Kb, blk[:, 1], "right")
            best = np.concatenate(([np.inf], np.minimum.accumulate(Kc)))[pos]
            ok &= ~(best <= blk[:, 2])
        le = (blk[None, :, 1:] <= blk[:, None, 1:]).all(axis=2)  # le[i, j]: row j weakly dominates row i
        le &= np.tri(len(blk), k=-1, dtype=bool)
        ok &= ~le.any(axis=1)
        kept[a:a + BLOCK_3D] = ok
        if ok.any():
            Kb = np.concatenate([Kb, blk[ok, 1]])
            Kc = np.concatenate([Kc, blk[ok, 2]])
            o = np.argsort(Kb, kind="stable")
            Kb, Kc = Kb[o], Kc[o]
    return kept


def _nondominated_sorted(V):
    """Non-dominated rows of ``V`` sorted lexicographically (no row is dominated by a later one):
    blocks of rows are checked against the kept rows and among themselves."""
    n = len(V)
    kept = np.zeros(n, dtype=bool)
    K = np.empty((0, V.shape[1]))
    for a in range(0, n, BLOCK):
        blk = V[a:a + BLOCK]
        ok = np.ones(len(blk), dtype=bool)
        if len(K):
            dom = np.zeros(len(blk), dtype=bool)
            for k0 in range(0, len(K), BLOCK):
                kk = K[k0:k0 + BLOCK]
                dom |= (kk[None, :, :] <= blk[:, None, :]).all(axis=2).any(axis=1)
            ok &= ~dom
        # within the block: earlier (lexicographically smaller or equal) rows dominate later ones
        le = (blk[None, :, :] <= blk[:, None, :]).all(axis=2)  # le[i, j]: row j weakly dominates row i
        le &= np.tri(len(blk), k=-1, dtype=bool)  # only j < i
        ok &= ~le.any(axis=1)
        kept[a:a + BLOCK] = ok
        K = np.concatenate([K, blk[ok]])
    return kept


class _Layer(NamedTuple):
    node: np.ndarray  # [n] int64: state id * carried combinations + carried code
    carry: np.ndarray  # [n] int64 carried code
    add: np.ndarray
    mx: np.ndarray
    parent: np.ndarray  # [n] int64 index into the previous layer
    choice: np.ndarray  # [n] int64 index into the stage's choices


def _criteria_matrix(add, mx, criteria, node):
    """(values to minimize [n, D], group ids [n]): a column compared in both directions (a quantity
    maximized and limited, e.g. MACs) only ever lets equal values dominate each other, so it joins
    the group (exactly: the node and the equal values) instead of being two columns."""
    col = lambda c: add[:, c.column] if c.kind == "add" else mx[:, c.column]  # noqa: E731
    both = {(c.kind, c.column) for c in criteria if c.sign < 0} & {(c.kind, c.column) for c in criteria if c.sign > 0}
    cols = [c.sign * col(c) for c in criteria if (c.kind, c.column) not in both]
    group = node
    if both:
        eq = np.column_stack([node.astype(np.float64)] + [add[:, k] if kind == "add" else mx[:, k] for kind, k in sorted(both)])
        _, group = np.unique(eq, axis=0, return_inverse=True)
        group = group.reshape(-1)
    V = np.column_stack(cols) if cols else np.zeros((len(node), 1))
    return V, group


def _prune(add, mx, lb_next, exit_state, limits):
    """Whether each point can still meet every limit (``add`` grown by its lower bounds)."""
    ok = np.ones(len(add), dtype=bool)
    if not limits:
        return ok
    opt = add + lb_next[exit_state]
    for lim in limits:
        with np.errstate(invalid="ignore"):
            ok &= np.asarray(lim.value(opt, mx)) <= lim.bound
    return ok


def _extend(layer, stage, carried_in, carried_out, sizes, lb_next, criteria, limits, stats):
    """Every point of ``layer`` followed by every consistent choice of ``stage``; pruned, then
    filtered per DP node."""
    dig = _digits(stage)
    cin_r = _radix([sizes[g] for g in carried_in])
    cin = {g: i for i, g in enumerate(carried_in)}
    fixed = [g for g in stage.genes if g in cin]  # genes of the stage already chosen upstream
    # key of a choice and of a point: entry state and the options of the fixed genes
    FR = int(np.prod([sizes[g] for g in fixed], dtype=np.float64)) if fixed else 1
    fr = _radix([sizes[g] for g in fixed])
    ckey = stage.entry * FR
    state = layer.node // max(1, int(np.prod([sizes[g] for g in carried_in], dtype=np.float64)))
    pkey = state * FR
    for i, g in enumerate(fixed):
        ckey = ckey + dig[g] * fr[i]
        pkey = pkey + ((layer.carry // cin_r[cin[g]]) % sizes[g]) * fr[i]
    corder = np.argsort(ckey, kind="stable")
    sk = ckey[corder]
    lo = np.searchsorted(sk, pkey, "left")
    cnt = np.searchsorted(sk, pkey, "right") - lo
    total = int(cnt.sum())
    stats.expanded += total
    pt = np.repeat(np.arange(len(pkey)), cnt)
    offs = np.cumsum(cnt) - cnt
    ch = corder[lo[pt] + (np.arange(total) - offs[pt])]
    add = layer.add[pt] + stage.add[ch]
    mx = np.maximum(layer.mx[pt], stage.mx[ch])
    ex = stage.exit[ch]
    ok = _prune(add, mx, lb_next, ex, limits)
    pt, ch, add, mx, ex = pt[ok], ch[ok], add[ok], mx[ok], ex[ok]
    # the carried code after the stage: each carried gene from upstream or from this choice
    cout_r = _radix([sizes[g] for g in carried_out])
    carry = np.zeros(len(pt), dtype=np.int64)
    for i, g in enumerate(carried_out):
        v = dig[g][ch] if g in dig else (layer.carry[pt] // cin_r[cin[g]]) % sizes[g]
        carry += v * cout_r[i]
    CR = int(np.prod([sizes[g] for g in carried_out], dtype=np.float64)) if carried_out else 1
    node = ex * CR + carry
    if not len(node):
        keep = np.zeros(0, dtype=bool)
    elif _one_to_one(layer.node[pt], node, cnt):
        keep = np.ones(len(node), dtype=bool)  # each node moved whole by one shared choice: dominance unchanged
    else:
        keep = nondominated(*_criteria_matrix(add, mx, criteria, node))
    return _Layer(node[keep], carry[keep], add[keep], mx[keep], pt[keep], ch[keep])


def _one_to_one(old, new, cnt) -> bool:
    """Whether every point took the one choice of its node and no two nodes merged: then the
    points of a node all moved by the same values and stay mutually non-dominated."""
    if not (cnt == 1).all():
        return False
    pairs = np.unique(np.stack([old, new], axis=1), axis=0)
    return len(pairs) == len(np.unique(old)) == len(np.unique(new))


def solve(stages, n_states_after, sizes, criteria, limits, initial_add=None, initial_mx=None) -> DPResult:
    """The non-dominated complete chains (by ``criteria``) that meet ``limits``.

    ``stages[0]`` starts from state 0 (the network input's own choices, e.g. its resolution);
    ``n_states_after[s]`` is the number of exit state ids of stage ``s``; ``sizes[g]`` the option
    count of gene ``g``. Returns each point's choices, totals and the sweep's statistics; the
    caller applies its final, exact feasibility test and front on the totals.
    """
    t0 = time.perf_counter()
    stats = DPStats()
    carried = _carried(stages)
    for s, c in enumerate(carried):
        n = (n_states_after[s - 1] if s else 1) * float(np.prod([sizes[g] for g in c], dtype=np.float64))
        if n > MAX_CARRY_STATES:
            raise ConstraintError(f"the exact front would carry {n:.3g} states between segments {s - 1} and {s} "
                                  f"(genes shared along the network); use a sampling search instead")
    A, M = stages[0].add.shape[1], stages[0].mx.shape[1]
    lb = lower_bounds(stages, n_states_after)
    layer = _Layer(np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64),
                   np.zeros((1, A)) if initial_add is None else np.asarray(initial_add, dtype=np.float64)[None, :],
                   np.zeros((1, M)) if initial_mx is None else np.asarray(initial_mx, dtype=np.float64)[None, :],
                   np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64))
    history = []
    for s, st in enumerate(stages):
        layer = _extend(layer, st, carried[s], carried[s + 1], sizes, lb[s + 1], criteria, limits, stats)
        history.append(layer)
        stats.states.append(int(len(np.unique(layer.node))))
        stats.points.append(int(len(layer.node)))
        stats.peak_points = max(stats.peak_points, len(layer.node))
    n = len(layer.node)
    choices = np.zeros((n, len(stages)), dtype=np.int64)
    idx = np.arange(n)
    for s in range(len(stages) - 1, -1, -1):
        choices[:, s] = history[s].choice[idx]
        idx = history[s].parent[idx]
    stats.seconds = time.perf_counter() - t0
    return DPResult(choices, layer.add, layer.mx, stats)


def encodings(stages, choices, n_genes) -> np.ndarray:
    """``[n, n_genes]`` encodings of chains given by their choice indices (genes no stage uses: 0)."""
    X = np.zeros((len(choices), n_genes), dtype=np.int64)
    for s, st in enumerate(stages):
        r = _radix(st.sizes)
        combo = st.combo[choices[:, s]]
        for i, g in enumerate(st.genes):
            X[:, g] = (combo // r[i]) % st.sizes[i]
    return X
