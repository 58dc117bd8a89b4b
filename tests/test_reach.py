"""Grid rows no candidate can gather are not priced (``_reach``), and nothing changes."""

import numpy as np
from conftest import ROOT

import augur_nas as an
from augur_nas import _reach, _segments
from augur_nas.oracle import Oracle

MEASURED = "x86-xeon-avx512-ort"  # fusion and layout rules: boundary states in the grid keys


def _walked_rows(space, device, X, monkeypatch):
    """Rows walked by the grids of a fresh Oracle pricing ``X``, and the grids' full sizes."""
    walked, full = [], []
    real_walk, real_grid = _segments._walk_segment, _segments._grid_values

    def grid(space_, seg, st, *a, **k):
        full.append(st.n * seg.combos)
        return real_grid(space_, seg, st, *a, **k)

    def walk(space_, Xw, *a, **k):
        walked.append(len(Xw))
        return real_walk(space_, Xw, *a, **k)

    monkeypatch.setattr(_segments, "_grid_values", grid)
    monkeypatch.setattr(_segments, "_walk_segment", walk)
    res = Oracle(space, device).evaluate(X, breakdown=False)
    monkeypatch.undo()
    return res, sum(walked), sum(full)


def test_grids_price_only_rows_some_candidate_gathers(monkeypatch):
    """mobile's width multiplier is a gene of every block: an entry state with 24 channels never
    meets the multiplier that gives 32. Tracked, the grids walk a fraction of their rows (and
    their exit states stay the shapes'), with the same figures as without tracking and as the
    reference; the encodings are raw (genes of skipped blocks not zeroed)."""
    rng = np.random.default_rng(5)
    space = an.load_space(ROOT / "spaces/mobile.yaml")
    X = rng.integers(0, space._sizes, size=(6000, space.n_genes))
    tracked, walked, full = _walked_rows(space, MEASURED, X, monkeypatch)
    monkeypatch.setattr(_reach, "MAX_ASSIGNMENTS", 0)  # nothing tracked: every row priced
    untracked, walked_all, full_all = _walked_rows(an.load_space(ROOT / "spaces/mobile.yaml"), MEASURED, X,
                                                   monkeypatch)
    assert walked_all == full_all  # without tracking every row is walked
    assert walked < walked_all / 3 and full < full_all  # fewer rows, and fewer entry states
    ref = Oracle(space, MEASURED).evaluate(X, breakdown=False, reference=True)
    for k in ref:
        np.testing.assert_allclose(tracked[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_allclose(tracked[k], untracked[k], rtol=1e-12, atol=1e-12, err_msg=k)


def test_a_walk_serves_a_segment_whose_exit_tracks_other_genes(monkeypatch):
    """NAS-Bench-201's last cell before the head has the signature, genes, entry states and entry
    assignments of the cell before it, but its exit tracks no genes (nothing after it reads
    them): it takes that cell's walk with its own exit assignments instead of walking its rows
    again. Fewer rows walked, the same figures as walking it and as the reference."""
    space = an.load_space(ROOT / "spaces/nb201.yaml")
    # enough candidates that a grid over a cell's 3 entry states x 15,625 rows pays off
    X = space.sample(50_000, seed=4)
    shared, walked, _ = _walked_rows(space, MEASURED, X, monkeypatch)
    monkeypatch.setattr(_segments, "_retracked", lambda *a: None)  # every such segment walked again
    again, walked_again, _ = _walked_rows(space, MEASURED, X, monkeypatch)
    assert walked < walked_again
    ref = Oracle(space, MEASURED).evaluate(X[:500], breakdown=False, reference=True)
    for k in ref:
        np.testing.assert_allclose(shared[k][:500], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
        np.testing.assert_array_equal(shared[k], again[k], err_msg=k)


def test_one_at_a_time_after_a_batch_reads_priced_rows_only():
    """Candidates asked one by one after a batch gather from the batch's grids (pruned for the
    batch's entry states, not its candidates): each row they read was priced."""
    rng = np.random.default_rng(8)
    space = an.load_space(ROOT / "spaces/mobile.yaml")
    o = Oracle(space, MEASURED)
    o.evaluate(space.sample(5000, seed=1), breakdown=False)
    Y = rng.integers(0, space._sizes, size=(30, space.n_genes))
    ref = o.evaluate(Y, breakdown=False, reference=True)
    for i, y in enumerate(Y):
        one = o.evaluate(y, breakdown=False)
        for k in ("latency_ms", "memory_mb", "macs", "params"):
            np.testing.assert_allclose(one[k][0], ref[k][i], rtol=1e-9, err_msg=f"{k} [{i}]")


def test_grid_rows_and_exit_assignments_by_hand():
    """Two entry states over gene 0 (3 options): state 0 reached with option 0 or 1, state 1
    with option 2. A segment of genes (0, 1) (2 options for gene 1): 12 rows, 6 reachable; the
    exit tracks genes 0 and 1 (each row hands on its own pair)."""
    counts = [3, 2]
    reach = _reach.Reach((0,), (3,), np.array([[True, True, False], [False, False, True]]))
    R = 6
    grid = np.zeros((2 * R, 2), dtype=np.int64)
    idx = np.arange(2 * R) % R
    grid[:, 0], grid[:, 1] = idx // 2, idx % 2
    found = _reach.grid_rows(reach, 2, (0, 1), grid, (0, 1), counts)
    np.testing.assert_array_equal(found.rows, [0, 1, 2, 3, 10, 11])
    # every priced row lands in its own exit state: the masks are one-hot at (gene 0, gene 1)
    got = _reach.exit_reach(found, np.arange(6), 6)
    want = np.zeros((6, 6), dtype=bool)
    for j, r in enumerate([0, 1, 2, 3, 10, 11]):
        want[j, grid[r, 0] * 2 + grid[r, 1]] = True
    np.testing.assert_array_equal(got.mask, want)
    # a gene tracked at the exit but not read by the segment: carried over from the entry
    found = _reach.grid_rows(reach, 2, (1,), grid[:4] * [0, 1], (0,), counts)
    assert found.rows is None  # gene 0 not in the segment: every row is reachable
    got = _reach.exit_reach(found, np.array([0, 0, 1, 1]), 2)
    np.testing.assert_array_equal(got.mask, [[True, True, False], [False, False, True]])
