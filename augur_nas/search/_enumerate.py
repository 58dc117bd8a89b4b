"""Every canonical encoding of a space, produced in chunks (the space is never materialized).

A rank ``r`` in ``0 .. space.size - 1`` is decoded to its encoding by walking the space's
product/choice tree (the one ``SearchSpace.enumerate`` walks), in the same order.
"""

from __future__ import annotations

import numpy as np

from .._errors import SpecError
from ..space._compile import Choice, Prod
from ..space._space import ENUMERATE_LIMIT


def _count(t, memo) -> int:
    key = id(t)
    if key in memo:
        return memo[key]
    if t is None:
        n = 1
    elif isinstance(t, Prod):
        n = 1
        for c in t.children:
            n *= _count(c, memo)
    elif isinstance(t, Choice):
        n = sum(_count(b, memo) for b in t.branches)
    else:  # pragma: no cover - a tree node this module does not know
        raise TypeError(f"unknown space tree node {type(t).__name__}")
    memo[key] = n
    return n


def _unrank(t, idx: np.ndarray, rows: np.ndarray, X: np.ndarray, memo) -> None:
    if t is None or not len(idx):
        return
    if isinstance(t, Prod):
        # the first child varies slowest (as in SearchSpace.enumerate)
        for c in reversed(t.children):
            n = _count(c, memo)
            _unrank(c, idx % n, rows, X, memo)
            idx = idx // n
        return
    counts = np.array([_count(b, memo) for b in t.branches], dtype=np.int64)
    ends = np.cumsum(counts)
    b = np.searchsorted(ends, idx, side="right")
    X[rows, t.gene] = b
    starts = ends - counts
    for k, branch in enumerate(t.branches):
        sel = b == k
        if sel.any():
            _unrank(branch, idx[sel] - starts[k], rows[sel], X, memo)


def unrank(space, ranks) -> np.ndarray:
    """The encodings of the given ranks (``[N]`` ints in ``0 .. space.size - 1``), ``[N, G]``."""
    ranks = np.asarray(ranks, dtype=np.int64)
    X = np.zeros((len(ranks), space.n_genes), dtype=np.int64)
    _unrank(space.program.tree, ranks, np.arange(len(ranks)), X, {})
    return X


def iter_chunks(space, chunk: int = 20000, limit: int = ENUMERATE_LIMIT, start: int = 0, stop: int | None = None):
    """Yield ``(first rank, X[n, G])`` for every canonical encoding of ``space``, ``chunk`` at a time."""
    size = space.size
    if size > limit:
        raise SpecError(f"{space.name} has {size:.3g} architectures, more than the {limit:,} that exhaustive search "
                        f"enumerates; use a sampler (tpe, nsga2, random) instead ({space.source})")
    stop = size if stop is None else min(stop, size)
    for lo in range(start, stop, chunk):
        hi = min(stop, lo + chunk)
        yield lo, unrank(space, np.arange(lo, hi, dtype=np.int64))
