"""Which rows of a segment grid some candidate can gather: gene consistency across segments.

A segment grid (``_segments``) is the product of the segment's entry states and its genes'
combinations. A gene used by several segments (the width multiplier of every block, a stage's
depth read by each of its optional blocks) makes most of that product impossible: an entry
state with 24 channels arises only with the width multipliers that give 24 channels, so its
rows with the third multiplier are never gathered, and neither are their exit states, which
then enlarge every later grid (with fusion and layout state, by 3x).

So each entry state carries a ``Reach``: the assignments of the genes that are *live* at its
boundary (used both before and after it) with which some candidate arrives in that state. A
grid row is priced only when its genes agree with one of its state's assignments, and each exit
state gets the assignments of the rows that lead to it. The masks are complete by induction (a
candidate's own assignment is in the mask of the state it is in: at the network input by
construction, and a row a candidate gathers is reachable and hands its exit state the
candidate's assignment), so every row a candidate gathers is priced: the same figures, exactly.
A row no candidate can gather is never priced (its values stay zero, and it is never read).

Tracking is capped (``MAX_ASSIGNMENTS`` per boundary, ``MAX_PAIRS`` per grid): beyond it genes
are dropped from the tracked set, which only makes masks larger (a superset is still complete).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_ASSIGNMENTS = 2**16  # tracked gene assignments per boundary (the masks are [states, assignments])
MAX_PAIRS = 2**22  # (grid row, assignment) pairs a grid's tracking may handle


class Reach(NamedTuple):
    """The assignments of the tracked genes with which candidates arrive in each state."""

    genes: tuple  # the tracked genes (sorted)
    sizes: tuple  # their option counts
    mask: np.ndarray  # [states, prod(sizes)] bool, the last gene varying fastest


def live_genes(seg_genes, seg_stops, input_genes, option_counts) -> dict:
    """Boundary node -> the genes tracked there: used before it (by the network input or a segment
    ending at or before it) and after it (by a later segment), at most ``MAX_ASSIGNMENTS``
    assignments (the genes with most options are dropped first). ``-1`` is the network input."""
    after = [set() for _ in range(len(seg_genes) + 1)]
    for i in range(len(seg_genes) - 1, -1, -1):
        after[i] = after[i + 1] | set(seg_genes[i])
    out = {}
    before = set(input_genes)
    out[-1] = _capped(before & after[0], option_counts)
    for i, (genes, stop) in enumerate(zip(seg_genes, seg_stops)):
        before |= set(genes)
        out[stop - 1] = _capped(before & after[i + 1], option_counts)
    return out


def _capped(genes, option_counts) -> tuple:
    genes = sorted(genes)
    while genes and int(np.prod([option_counts[g] for g in genes], dtype=np.float64)) > MAX_ASSIGNMENTS:
        genes.remove(max(genes, key=lambda g: (option_counts[g], g)))
    return tuple(genes)


def _radix(sizes) -> np.ndarray:
    radix = np.ones(len(sizes), dtype=np.int64)
    for i in range(len(sizes) - 2, -1, -1):
        radix[i] = radix[i + 1] * sizes[i + 1]
    return radix


def _offsets(sizes, radix) -> np.ndarray:
    """The flat offsets (by ``radix``) of every combination of options of ``sizes``."""
    off = np.zeros(1, dtype=np.int64)
    for sz, r in zip(sizes, radix):
        off = (off[:, None] + np.arange(sz, dtype=np.int64)[None, :] * r).reshape(-1)
    return off


def input_reach(genes, sizes, combo_codes, n_states, tracked, option_counts) -> Reach | None:
    """The network input's ``Reach``: ``combo_codes[i]`` is the state of combination ``i`` of the
    input's ``genes`` (option counts ``sizes``, the last varying fastest); ``tracked`` ⊆ genes."""
    if not tracked:
        return None
    tsizes = tuple(option_counts[g] for g in tracked)
    radix_in = _radix(sizes)
    idx = np.arange(len(combo_codes), dtype=np.int64)
    flat = np.zeros(len(combo_codes), dtype=np.int64)
    for g, r in zip(tracked, _radix(tsizes)):
        i = genes.index(g)
        flat += (idx // radix_in[i]) % sizes[i] * r
    mask = np.zeros((n_states, int(np.prod(tsizes))), dtype=bool)
    mask[np.asarray(combo_codes, dtype=np.int64), flat] = True
    return None if mask.all() else Reach(tuple(tracked), tsizes, mask)


class RowReach(NamedTuple):
    """What ``grid_rows`` finds: the rows to price (None: every row) and the assignments of the
    exit's tracked genes each priced row hands on (``exit_rows[j]`` (an index into the priced
    rows) hands on assignment ``exit_assign[j]``; None: nothing tracked at the exit)."""

    rows: np.ndarray | None
    exit_rows: np.ndarray | None
    exit_assign: np.ndarray | None
    exit_genes: tuple = ()
    exit_sizes: tuple = ()


UNTRACKED = RowReach(None, None, None)


def grid_rows(reach: Reach | None, n_states, seg_genes, grid, out_genes, option_counts) -> RowReach:
    """The rows of a grid (``grid[N, G]``: row ``i`` is entry state ``i // (N / n_states)`` with
    the segment genes' combination in its columns) that some candidate can gather, and the
    assignments they hand on to the exit's tracked genes ``out_genes``. Beyond MAX_PAIRS
    (row, assignment) pairs nothing is pruned or handed on (a superset: still complete)."""
    N = grid.shape[0]
    R = N // max(1, n_states)
    gin = reach.genes if reach is not None else ()
    G = set(seg_genes)
    shared = [g for g in gin if g in G]
    free = [g for g in out_genes if g not in G and g in gin]
    absent = [g for g in out_genes if g not in G and g not in gin]
    dropped = [g for g in gin if g not in G and g not in free]

    def size(gs):
        return int(np.prod([option_counts[g] for g in gs], dtype=np.float64))

    if (not shared and not out_genes) or N * size(free) * size(absent) > MAX_PAIRS:
        return UNTRACKED
    if reach is not None:
        M = reach.mask.reshape((n_states,) + tuple(reach.sizes))
        M = M.transpose([0] + [1 + gin.index(g) for g in shared + free + dropped])
        M = M.reshape(n_states, size(shared), size(free), size(dropped)).any(axis=3)
    else:
        M = np.ones((n_states, 1, 1), dtype=bool)
    sh = np.zeros(N, dtype=np.int64)
    for g, r in zip(shared, _radix([option_counts[g] for g in shared])):
        sh += grid[:, g] * r
    sub = M[np.arange(N, dtype=np.int64) // R, sh]  # [N, free assignments]
    ok = sub.any(axis=1) if sub.shape[1] > 1 else sub[:, 0]
    rows = None if ok.all() else np.flatnonzero(ok)
    if not out_genes:
        return RowReach(rows, None, None)
    if rows is not None:
        sub = sub[rows]
    out_sizes = tuple(option_counts[g] for g in out_genes)
    radix_out = dict(zip(out_genes, _radix(out_sizes)))
    fixed = np.zeros(sub.shape[0], dtype=np.int64)
    for g in out_genes:
        if g in G:
            fixed += (grid[:, g] if rows is None else grid[rows, g]) * radix_out[g]
    free_off = _offsets([option_counts[g] for g in free], [radix_out[g] for g in free])
    absent_off = _offsets([option_counts[g] for g in absent], [radix_out[g] for g in absent])
    r, f = np.nonzero(sub)  # each priced row with each free assignment it arrives with ...
    assign = (fixed[r] + free_off[f])[:, None] + absent_off[None, :]  # ... and any absent gene's option
    return RowReach(rows, np.repeat(r, len(absent_off)), assign.reshape(-1), tuple(out_genes), out_sizes)


def exit_reach(found: RowReach, codes, n: int) -> Reach | None:
    """The exit states' ``Reach`` from ``grid_rows``' assignments and each priced row's exit
    state ``codes`` (None: nothing tracked, or every state reached with every assignment)."""
    if found.exit_rows is None:
        return None
    mask = np.zeros((n, int(np.prod(found.exit_sizes, dtype=np.int64))), dtype=bool)
    mask[np.asarray(codes, dtype=np.int64)[found.exit_rows], found.exit_assign] = True
    return None if mask.all() else Reach(found.exit_genes, found.exit_sizes, mask)


def merged(mask: np.ndarray, codes, n: int) -> np.ndarray:
    """``[n, A]``: for each of ``n`` states, the OR of the rows of ``mask`` whose code is it
    (every state has a row)."""
    codes = np.asarray(codes, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
    out = np.logical_or.reduceat(mask[order], starts, axis=0)
    if len(out) != n:  # defensive: a state without rows would mean a broken invariant
        raise AssertionError(f"reach masks for {len(out)} of {n} states")
    return out
