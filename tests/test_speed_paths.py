"""The shortcuts of the oracle's hot path (issue 12's speed work) give the same figures as the
plain computations they replace: a small space's batch priced on its distinct encodings, the
packed distinct-state key of the segment path, and the NAS-Bench-201 space with repeats."""

from pathlib import Path

import numpy as np
import pytest

import augur_nas as an
from augur_nas._segments import _unique_rows
from augur_nas.oracle import _distinct_rows, _fast_costs, _segment_costs, _table_costs
from augur_nas.profile import load_profile

ROOT = Path(__file__).resolve().parents[1]


def _same(a, b, label):
    for i, what in ((0, "latency"), (2, "memory"), (3, "macs"), (4, "params")):
        np.testing.assert_allclose(a[i], b[i], rtol=1e-9, err_msg=f"{label} {what}")
    assert set(a[1]) == set(b[1])
    for k in b[1]:
        np.testing.assert_allclose(a[1][k], b[1][k], rtol=1e-9, atol=1e-12, err_msg=f"{label} {k}")


@pytest.mark.parametrize("device", ["x86-2core-ort", "tk1-gpu"])
def test_a_batch_with_repeats_equals_the_reference(device):
    """NAS-Bench-201 has 15,625 candidates: 6,000 samples repeat, are priced once each, and every
    row still gets the reference path's figures (residual, fusion and layout included)."""
    space = an.load_space(ROOT / "spaces" / "nb201.yaml")
    X = space.sample(6000, seed=3)
    got = _distinct_rows(space, X)
    assert got is not None
    rows, inv = got
    n_distinct = len(np.unique(X, axis=0))
    assert len(rows) == n_distinct < 6000 and np.array_equal(X[rows][inv], X)
    prof = load_profile(device)
    fast = _fast_costs(space, X, prof, 1)
    sub = np.random.default_rng(0).choice(6000, 150, replace=False)  # the reference is slow: a sample of rows
    ref = _table_costs(space, X[sub], prof, 1)
    _same(tuple(v[sub] if not isinstance(v, dict) else {k: a[sub] for k, a in v.items()} for v in fast), ref, device)
    # and without the shortcut, on the same rows
    _same(fast, _segment_costs(space, X, prof, 1), device + " all rows")


def test_large_spaces_are_not_made_distinct():
    space = an.load_space(ROOT / "spaces" / "mobile.yaml")
    assert _distinct_rows(space, space.sample(5000, seed=1)) is None
    nb = an.load_space(ROOT / "spaces" / "nb201.yaml")
    assert _distinct_rows(nb, nb.sample(100, seed=1)) is None  # 15,625 > 4 x 100: repeats unlikely


@pytest.mark.parametrize("spans", [(3, 1, 5, 2), (2**40, 7, 2**30), (1000, 1000, 1000), (2, 2**61, 4)])
def test_unique_rows_equals_numpy_unique(spans):
    """Packed keys (a marked table for small ranges, a sort otherwise, numpy's row unique beyond
    63 bits) give np.unique(axis=0)'s distinct rows, order and inverse."""
    rng = np.random.default_rng(len(spans))
    N = 5000
    cols = [rng.integers(-3, sz, N, dtype=np.int64) if sz < 2**62 else rng.integers(0, 2**62, N) for sz in spans]
    cols[0][:100] = cols[0][100:200]  # some repeats whatever the spans
    for c in cols[1:]:
        c[:100] = c[100:200]
    uniq, inv = _unique_rows(cols)
    want, want_inv = np.unique(np.stack(cols, axis=1), axis=0, return_inverse=True)
    assert np.array_equal(np.stack(uniq, axis=1), want)
    assert np.array_equal(inv, want_inv.reshape(-1))
