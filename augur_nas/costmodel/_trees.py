"""LightGBM's trees evaluated as numpy arrays: the residual's prediction of a whole chunk at once.

``lightgbm.Booster.predict`` walks the trees one row at a time (about 28 ns per tree per row on
one core: 300 trees cost 8 us a candidate, eight times the oracle's budget of the rest). The
same trees are evaluated here column-wise, after QuickScorer (Lucchese et al., SIGIR 2015):

- the leaves of each tree are numbered left to right, and a row's state in a tree is a bit mask
  of the leaves it can still reach (one byte per tree: trees of up to 8 leaves);
- a node's test ``x[f] <= threshold`` fails exactly for the rows whose ``x[f]`` exceeds it, and
  a failed test removes the leaves of the node's left subtree. Sorting every threshold of a
  feature, the failed tests of a row are a prefix of that order, found by one ``searchsorted``,
  and the AND of their masks over all trees is precomputed per prefix (``[thresholds + 1,
  trees]`` bytes per feature);
- features are grouped (a few with few thresholds together, a table of at most ``GROUP_ROWS``
  rows): a group's table holds the AND of its features' prefix masks for every combination of
  their prefixes, so one row read per group (``[rows, trees]`` bytes, one take and one AND per
  group instead of per feature) gives the same bits; 22 features make 7 groups;
- a row's leaf in a tree is then the lowest bit left in its byte, and the prediction the sum of
  those leaves' values: two trees at a time, their two bytes read as one 16-bit number whose
  two lowest bits one shared table gives (``_PAIR_EXITS``), then the pair's summed leaf values
  from a table of 64 per pair.

The result equals LightGBM's to the last few bits (the sum of the trees' values is added in
another order; ``tests/test_residual.py`` checks 1e-12). A model this does not reproduce exactly
(categorical splits, missing-value rules other than "none", more than 8 leaves, an output
transform) is refused by ``parse`` and left to LightGBM.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

MAX_LEAVES = 8  # one byte of leaf bits per tree
ZERO = 1e-35  # LightGBM reads |x| <= kZeroThreshold as a missing (zero) feature of a dense row
# Sizes measured on the 2 MB-L2 Xeon (experiments/bench_trees.py, 300 trees, 100,000 rows, one core):
# steps of 16384 rows beat 4096 by ~15% (numpy's per-call cost over 9 groups x 3 features outweighs
# the [rows, trees] bits spilling from L2 to L3), 8192-row group tables make 7 groups instead of 9 (a
# take and an AND fewer per group; parse ~5 ms longer, 12 MB of tables for 300 trees) and leaf sums of
# 256 rows keep their [rows, pairs] intp/float64 arrays (300 KB) in L2. Larger tables (65536 rows)
# were quicker still but cost 240 ms to build and 75 MB.
ROWS_PER_STEP = 16384  # rows whose leaf bits are found together
EXIT_ROWS = 256  # rows whose leaf values are summed together: their [rows, pairs] index and value arrays
GROUP_ROWS = 8192  # the most rows of a feature group's table (of ``trees`` bytes each)
# objectives whose prediction is the raw sum of the trees (no link function applied by predict)
_IDENTITY = ("regression", "regression_l2", "l2", "mean_squared_error", "mse", "rmse", "huber", "fair",
             "regression_l1", "l1", "mae", "quantile", "mape")


class _Tree(NamedTuple):
    feature: list  # per internal node
    threshold: list
    left: list  # child ids: >= 0 an internal node, < 0 the leaf ~id
    right: list
    leaf_value: list


class Group(NamedTuple):
    """Features whose prefix masks are read together: one table row per combination of prefixes."""

    members: tuple  # positions in ``Forest.features``
    radix: tuple  # per member: the multiplier of its prefix in the table's row index
    masks: np.ndarray  # [prod(thresholds + 1), trees] uint8: AND of the members' prefix masks


class Forest(NamedTuple):
    """The arrays of a parsed model (see the module docstring)."""

    features: tuple  # the feature columns split on
    thresholds: tuple  # per feature: its sorted distinct thresholds
    groups: tuple  # ``Group``s covering every feature once
    pair_values: np.ndarray  # [pairs * 64] float64: two trees' leaf values summed, by their two exits
    offsets: np.ndarray  # [pairs] intp: pair * 64
    base: float  # the sum of the single-leaf trees

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The raw score of each row of ``X`` ``[B, features]`` (float64)."""
        return self.predict_columns(np.ascontiguousarray(np.asarray(X, dtype=np.float64).T))

    def predict_columns(self, XT: np.ndarray) -> np.ndarray:
        """The same for the features as rows, ``XT`` ``[features, B]`` (each row contiguous)."""
        out = np.empty(XT.shape[1], dtype=np.float64)
        for lo in range(0, XT.shape[1], ROWS_PER_STEP):
            out[lo:lo + ROWS_PER_STEP] = self._step(XT[:, lo:lo + ROWS_PER_STEP])
        return out

    def _step(self, XT):
        if len(self.offsets) == 0:
            return np.full(XT.shape[1], self.base)
        bits = None
        for g in self.groups:
            row = None
            for m, r in zip(g.members, g.radix):
                p = _failed(_dense(XT[self.features[m]]), self.thresholds[m]).astype(np.intp)
                if r != 1:
                    p *= r
                row = p if row is None else np.add(row, p, out=row)
            got = np.take(g.masks, row, axis=0, mode="clip")  # rows < len(masks) by construction: no bounds checks
            if bits is None:
                bits = got
            else:
                np.bitwise_and(bits, got, out=bits)
        out = np.empty(XT.shape[1], dtype=np.float64)
        # the leaves' values a few hundred rows at a time: the [rows, pairs] intp and float64
        # arrays of a whole step would not stay in the caches
        for lo in range(0, len(bits), EXIT_ROWS):
            # exit leaf of each tree, 8 * a + b (clip: every index is in range, so no bounds checks)
            exits = np.take(_PAIR_EXITS, bits[lo:lo + EXIT_ROWS].view("<u2"), mode="clip")
            idx = np.add(exits, self.offsets)  # intp: the row of each pair's exits in pair_values
            out[lo:lo + EXIT_ROWS] = np.take(self.pair_values, idx, mode="clip").sum(axis=1)
        return out + self.base


def _dense(x) -> np.ndarray:
    """``x`` as LightGBM reads a dense row: a missing value or |x| <= 1e-35 is 0 ("none" missing
    type). Done per split feature and step, while the row is in the caches: over the whole
    ``[features, B]`` block at once its temporaries streamed through memory (36 of 139 ms of the
    trees for 100,000 mobile candidates)."""
    return np.where(np.abs(x) > ZERO, x, 0.0)  # NaN > ZERO is False: NaN reads as 0 too


def _failed(x, th) -> np.ndarray:
    """Per row: how many of the sorted thresholds ``th`` lie below ``x`` (the tests ``x <= t``
    that fail). For a few dozen thresholds one broadcast comparison summed in bytes is about
    1.5x quicker than ``searchsorted``'s binary search per row."""
    if len(th) > 255:
        return np.searchsorted(th, x, side="left")
    return np.add.reduce((x[None, :] > th[:, None]).view(np.uint8), axis=0, dtype=np.uint8)


def parse(model: str) -> Forest | None:
    """The ``Forest`` of a LightGBM text model, or None when it is not one this module evaluates
    exactly (then the caller keeps LightGBM's own predict)."""
    header, *blocks = model.split("\nTree=")
    head = _fields(header)
    objective = head.get("objective", "").split()
    if head.get("num_class", "1") != "1" or head.get("num_tree_per_iteration", "1") != "1" or \
            "average_output" in header.split("\n") or not objective or objective[0] not in _IDENTITY or \
            "sqrt" in objective:  # "regression sqrt" squares its prediction
        return None
    trees = []
    for b in blocks:
        body = b.split("\nend of trees")[0]
        t = _tree(_fields(body))
        if t is None:
            return None
        trees.append(t)
    return _build(trees)


def _fields(text: str) -> dict:
    out = {}
    for line in text.split("\n"):
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


def _tree(d: dict) -> _Tree | None:
    n_leaves = int(d.get("num_leaves", "0"))
    values = [float(v) for v in d.get("leaf_value", "").split()]
    if n_leaves < 1 or n_leaves > MAX_LEAVES or len(values) != n_leaves or int(d.get("num_cat", "0")) != 0:
        return None
    if n_leaves == 1:
        return _Tree([], [], [], [], values)
    dec = [int(v) for v in d["decision_type"].split()]
    if any(x & 1 or (x >> 2) & 3 for x in dec):  # categorical, or a "zero"/"nan" missing-value rule
        return None
    ints = lambda k: [int(v) for v in d[k].split()]  # noqa: E731
    return _Tree(ints("split_feature"), [float(v) for v in d["threshold"].split()], ints("left_child"),
                 ints("right_child"), values)


def _leaves_in_order(t: _Tree) -> tuple:
    """``(leaf ids left to right, per internal node: the bit mask of its left subtree's leaves)``."""
    order, under = [], {}

    def visit(node):
        if node < 0:
            order.append(~node)
            return [~node]
        got = visit(t.left[node])
        under[node] = list(got)
        return got + visit(t.right[node])

    visit(0)
    pos = {leaf: p for p, leaf in enumerate(order)}
    left_bits = [sum(1 << pos[leaf] for leaf in under[n]) for n in range(len(t.feature))]
    return order, left_bits


def _pair_exits() -> np.ndarray:
    """For each 16-bit number (two trees' leaf bytes, the first tree's the low byte): 8 * the
    lowest set bit of the low byte + that of the high byte (0 for a byte without bits)."""
    low = np.array([max((b & -b).bit_length() - 1, 0) for b in range(256)], dtype=np.uint8)
    v = np.arange(65536)
    return (low[v & 255] * 8 + low[v >> 8]).astype(np.uint8)


_PAIR_EXITS = _pair_exits()


def _build(trees: list) -> Forest:
    base = sum(t.leaf_value[0] for t in trees if not t.feature)
    trees = [t for t in trees if t.feature]
    T = len(trees) + len(trees) % 2  # an odd count gets a tree that never leaves its first leaf (value 0)
    tests: dict = {}  # feature -> [(threshold, tree, bits of the leaves a failed test removes)]
    values = np.zeros((T, MAX_LEAVES), dtype=np.float64)  # by leaf position, left to right
    for ti, t in enumerate(trees):
        order, left_bits = _leaves_in_order(t)
        for n, f in enumerate(t.feature):
            tests.setdefault(f, []).append((t.threshold[n], ti, left_bits[n]))
        values[ti, :len(order)] = [t.leaf_value[leaf] for leaf in order]
    pairs = (values[0::2, :, None] + values[1::2, None, :]).reshape(-1)
    feats, ths, masks = [], [], []  # per feature: [thresholds + 1, T] AND of its failed tests' masks
    for f in sorted(tests):
        th = np.array(sorted({x for x, _, _ in tests[f]}), dtype=np.float64)
        m = np.full((len(th) + 1, T), 0xFF, dtype=np.uint8)
        for x, ti, bits in tests[f]:
            j = int(np.searchsorted(th, x))
            # the test fails for every row with more than j thresholds below it
            m[j + 1:, ti] &= np.uint8(~bits & 0xFF)
        feats.append(f)
        ths.append(th)
        masks.append(m)
    return Forest(tuple(feats), tuple(ths), _groups(masks), pairs, np.arange(T // 2, dtype=np.intp) * 64, float(base))


def _groups(masks: list) -> tuple:
    """The features' prefix masks packed into ``Group``s: each feature, largest first, joins the
    group whose table it leaves largest within ``GROUP_ROWS`` rows (or starts one)."""
    members: list = []
    for i in sorted(range(len(masks)), key=lambda i: -len(masks[i])):
        fits = [g for g in members if _rows(masks, g) * len(masks[i]) <= GROUP_ROWS]
        if fits:
            max(fits, key=lambda g: _rows(masks, g)).append(i)
        else:
            members.append([i])
    groups = []
    for g in members:
        table = masks[g[0]]
        for i in g[1:]:  # rows in mixed radix, the last member fastest
            table = (table[:, None, :] & masks[i][None, :, :]).reshape(-1, table.shape[1])
        radix = [_rows(masks, g[k + 1:]) for k in range(len(g))]
        groups.append(Group(tuple(g), tuple(radix), np.ascontiguousarray(table)))
    return tuple(groups)


def _rows(masks: list, members) -> int:
    n = 1
    for i in members:
        n *= len(masks[i])
    return n
