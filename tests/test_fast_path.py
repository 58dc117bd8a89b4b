"""The hot path (segment tabulation) must equal the full layer table exactly."""

import glob

import numpy as np
import pytest

import augur_nas as an
from augur_nas.analysis import totals
from augur_nas._segments import fast_totals
from augur_nas.costmodel._fusion import FusionRules
from augur_nas.oracle import _fast_costs, _table_costs
from augur_nas.profile import list_profiles, load_profile

from conftest import ROOT as _REPO  # paths from the repository root, wherever pytest runs from
SPACES = sorted(glob.glob(str(_REPO / "spaces" / "*.yaml"))) + [str(_REPO / "spaces" / "zoo" / n)
                                                               for n in ("googlenet.yaml", "resnet50.yaml")]
assert len(SPACES) > 2, "no spaces found"


@pytest.mark.parametrize("path", SPACES)
def test_fast_totals_equal_table_totals(path):
    space = an.load_space(path)
    X = space.sample(300, seed=11)
    ref = totals(an.lower(space, X))
    fast = fast_totals(space, X)
    for key, v in fast.items():
        np.testing.assert_array_equal(v, ref[key], err_msg=f"{path}: {key}")


PROFILES = [p if isinstance(p, str) else p["name"] for p in list_profiles()]
SHIPPED_SPACES = sorted(str(p) for p in _REPO.glob("spaces/*.yaml"))


def _segment_profiles():
    """Every shipped profile (the measured one carries fusion, layout and a residual), plus the
    measured profile with its fusion and layout rules taken out."""
    out = [(d, load_profile(d)) for d in PROFILES]
    p = load_profile("x86-2core-ort")
    assert p.residual is not None and p.latency.fuse and p.latency.layout  # what the list must cover
    p.latency.fuse = FusionRules(())
    p.latency.layout = None
    out.append(("x86-2core-ort-unfused+residual", p))
    # the rules of profiles built since: fused joins by their inputs' layout, global pools blocked
    # only on a blocked input, CSE through identity; the passes of fused activations
    q = load_profile("x86-xeon-avx512-ort")
    d = q.latency.to_dict()
    d["layout"] = dict(d["layout"], fused_joins="inputs", from_blocked=["globalpool"])
    d["cse"] = sorted(set(d.get("cse", [])) | {"relu", "identity", "dropout"})
    # rates by the producer's family, all different: a pass priced after the wrong producer (a
    # segment that starts with a fused activation, its producer in the segment before) shows
    d["fused_pass"] = {"relu6": {"conv_1x1": 0.03, "dwconv": 0.019, "conv": 0.026}, "hswish": 0.05,
                       "hsigmoid": {"conv_1x1": 0.04, "dwconv": 0.033, "conv": 0.021}, "sigmoid": 0.06}
    q.latency = type(q.latency).from_dict(d)
    out.append(("x86-xeon-avx512-ort+new-layout-rules+fused-pass", q))
    return out


@pytest.mark.parametrize("device", PROFILES)
def test_no_shipped_profile_falls_back_to_the_layer_table(device, monkeypatch):
    """``evaluate`` never lowers to the full layer table, for any shipped profile."""
    import augur_nas.oracle as oracle_mod

    def refuse(*a, **k):
        raise AssertionError(f"{device} fell back to the layer table")

    monkeypatch.setattr(oracle_mod, "lower", refuse)
    monkeypatch.setattr(oracle_mod, "_table_costs", refuse)
    for path in (_REPO / "spaces/mobile.yaml", _REPO / "spaces/nb201.yaml"):
        space = an.load_space(path)
        out = an.Oracle(space, device).evaluate(space.sample(30, seed=1))
        assert np.all(out["latency_ms"] > 0)


def _assert_same(fast, ref, label):
    for i, what in ((0, "latency"), (2, "memory"), (3, "macs"), (4, "params")):
        np.testing.assert_allclose(fast[i], ref[i], rtol=1e-9, err_msg=f"{label} {what}")
    assert set(fast[1]) == set(ref[1]), label
    for kind in ref[1]:
        np.testing.assert_allclose(fast[1][kind], ref[1][kind], rtol=1e-9, atol=1e-9, err_msg=f"{label} {kind}")


@pytest.mark.parametrize("path", SHIPPED_SPACES)
def test_oracle_fast_path_equals_table_path(path):
    """Every profile the segment path prices, on every shipped space: the segment path (not a
    fallback) equals the full layer table to 1e-9 relative, residual included."""
    space = an.load_space(path)
    X = space.sample(200, seed=5)
    for device, prof in _segment_profiles():
        _assert_same(_fast_costs(space, X, prof, 2), _table_costs(space, X, prof, 2), f"{device} {path}")


@pytest.mark.parametrize("path", SHIPPED_SPACES)
def test_oracle_evaluate_equals_reference_batched_and_one_at_a_time(path):
    """The public reference path (``evaluate(reference=True)``) against the hot path, for every
    shipped profile: the whole batch at once, then candidate by candidate through one Oracle
    (its grid cache fills on the way)."""
    space = an.load_space(path)
    X = space.sample(40, seed=9)
    for device, prof in _segment_profiles():
        o = an.Oracle(space, prof)
        ref = o.evaluate(X, reference=True)
        fast = o.evaluate(X)
        assert set(fast) == set(ref)
        for k in ref:
            np.testing.assert_allclose(fast[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=f"{device} {path} {k}")
        for i in range(0, len(X), 4):
            one = o.evaluate(X[i])
            for k in ("latency_ms", "memory_mb", "macs", "params"):
                np.testing.assert_allclose(one[k][0], ref[k][i], rtol=1e-9, err_msg=f"{device} {path} {k} [{i}]")


def test_shape_error_names_a_real_candidate():
    spec = {"input": {"channels": 3, "resolution": {"choice": [8, 64]}},
            "layers": [{"conv": {"out": 8, "kernel": 3, "stride": 2}},
                       {"conv": {"out": 8, "kernel": 5, "name": "deep"}}]}
    with pytest.raises(an.ShapeError) as e:
        an.load_space_dict(spec, source="t.yaml")
    assert "deep" in str(e.value) and "input.resolution=8" in str(e.value)


def test_a_bad_option_in_a_later_chunk_is_named_by_its_place_in_the_batch():
    """A large batch of a large space is checked while its gene rows are built, once for the
    whole batch before it is cut into chunks: the error names the candidate's index in the
    batch, as the plain check does, and the reference path (checked as before) agrees."""
    space = an.load_space(_REPO / "spaces/mobile.yaml")
    X = space.sample(3000, seed=6)
    X[2500, 11] = space._sizes[11]
    for reference in (False, True):
        with pytest.raises(an.SpecError, match=r"candidate 2500 must be in 0\.\."):
            an.Oracle(space, "tk1-gpu", chunk=700).evaluate(X, reference=reference)
    X[2500, 11] = 0
    X[1234, 40] = -1
    with pytest.raises(an.SpecError, match=r"candidate 1234 must be in 0\.\..*got -1"):
        an.Oracle(space, "x86-xeon-avx512-ort").evaluate(X)


def test_oracle_grid_cache_gives_the_same_answers_across_calls_and_chunks():
    """The segment grids an Oracle keeps between calls must not change any answer: a second
    call, other candidates, other chunk sizes, another batch size."""
    from augur_nas.oracle import Oracle

    space = an.load_space(_REPO / "spaces/mobile.yaml")
    X = space.sample(3000, seed=3)
    ref = Oracle(space, "tk1-gpu", chunk=100_000)
    first = ref.evaluate(X)
    again = ref.evaluate(X)
    assert ref._grid_caches  # the grids were kept
    chunked = Oracle(space, "tk1-gpu", chunk=700).evaluate(X)
    prof = load_profile("tk1-gpu")
    table = _table_costs(space, X, prof, 1)
    for k, v in first.items():
        np.testing.assert_array_equal(again[k], v, err_msg=k)
        # other chunks merge other segments, so the sums are added in another order
        np.testing.assert_allclose(chunked[k], v, rtol=1e-12, err_msg=k)
    np.testing.assert_allclose(first["latency_ms"], table[0], rtol=1e-9)
    np.testing.assert_allclose(first["memory_mb"], table[2], rtol=1e-9)
    Y = space.sample(500, seed=4)
    np.testing.assert_allclose(ref.evaluate(Y, batch=4)["latency_ms"], _table_costs(space, Y, prof, 4)[0], rtol=1e-9)
    np.testing.assert_allclose(ref.evaluate(Y)["latency_ms"], _table_costs(space, Y, prof, 1)[0], rtol=1e-9)


def test_shape_errors_are_raised_from_cached_grids_too(monkeypatch):
    """A grid priced once (and cached) still raises for the candidates that hit its bad rows.
    (Large spaces are checked at load on a sample of candidates; the check is switched off here
    to stand for a bad corner the sample missed.)"""
    import augur_nas.models
    from augur_nas.oracle import Oracle

    monkeypatch.setattr(augur_nas.models, "check_shapes", lambda space: None)
    spec = {"input": {"channels": 3, "resolution": {"choice": [16, 64]}},
            "layers": [{"conv": {"out": 8, "kernel": 3, "stride": 2}},
                       {"conv": {"out": 8, "kernel": {"choice": [1, 11]}, "name": "wide"}}]}
    space = an.load_space_dict(spec, source="t.yaml")
    ok = np.array([[1, 0]] * 80 + [[0, 0]] * 80 + [[1, 1]] * 80)
    oracle = Oracle(space, "tk1-cpu")
    oracle.evaluate(ok)
    bad = np.array([[1, 1]] * 80 + [[0, 1]] * 80)
    for _ in range(2):  # priced, then from the cache
        with pytest.raises(an.ShapeError) as e:
            oracle.evaluate(bad)
        assert "wide" in str(e.value) and "resolution=16" in str(e.value)


def test_grid_cache_is_bounded(monkeypatch):
    """Batches whose entry shapes keep changing would fill the cache: it starts over beyond its
    byte budget, and the answers do not change."""
    from augur_nas import _segments
    from augur_nas.oracle import Oracle

    monkeypatch.setattr(_segments, "GRID_CACHE_BYTES", 50_000)
    space = an.load_space(_REPO / "spaces/mobile.yaml")
    oracle = Oracle(space, "tk1-gpu")
    X = space.sample(2000, seed=8)
    a = oracle.evaluate(X)["latency_ms"]
    (cache,) = oracle._grid_caches.values()
    assert cache.bytes <= 50_000 or len(cache.grids) == 1  # one oversized entry at most
    np.testing.assert_array_equal(oracle.evaluate(X)["latency_ms"], a)


def test_wide_genes_take_wider_key_columns():
    """Genes with more than 127 options are read as int16 columns (the int8 copy would wrap):
    the segment path must still equal the table path."""
    spec = {"input": {"channels": 3, "resolution": {"choice": [32, 48, 64]}},
            "layers": [{"conv": {"out": {"choice": list(range(8, 308))}, "kernel": 3, "stride": 2}},
                       {"conv": {"out": {"choice": [16, 32]}, "kernel": {"choice": [1, 3]}}},
                       {"globalpool": {"mode": "avg"}},
                       {"fc": {"out": 10}}]}
    space = an.load_space_dict(spec, source="t.yaml")
    assert max(len(g.options) for g in space.genes) == 300
    X = space.sample(5000, seed=2)
    assert X[:, 1].max() > 127
    prof = load_profile("tk1-gpu")
    a = _table_costs(space, X, prof, 1)
    b = _fast_costs(space, X, prof, 1)
    for i in (0, 2, 3, 4):
        np.testing.assert_allclose(b[i], a[i], rtol=1e-9)


def test_single_candidates_gather_from_grids_after_the_first_calls(monkeypatch):
    """NAS code that asks an Oracle for one candidate per call: the first calls walk the network
    directly, the CALLS_BEFORE_GRID-th prices every segment grid (they cover every entry shape),
    and later calls, of any candidate, price none again. Every answer equals the layer table."""
    from augur_nas import _segments
    from augur_nas.oracle import Oracle

    space = an.load_space(_REPO / "spaces/mobile.yaml")
    X = space.sample(40, seed=12)
    oracle = Oracle(space, "tk1-gpu")
    built = []
    real = _segments._grid_values
    monkeypatch.setattr(_segments, "_grid_values", lambda *a, **k: built.append(1) or real(*a, **k))
    res, n_built = [], []
    for x in X:
        res.append(oracle.evaluate(x, breakdown=False))
        n_built.append(len(built))
    k = _segments.CALLS_BEFORE_GRID
    assert n_built[k - 1] == 0 and n_built[k] > 0  # walked, walked, then priced
    assert n_built[-1] == n_built[k]  # never again
    prof = load_profile("tk1-gpu")
    lat, _, mem, macs, params = _table_costs(space, X, prof, 1)
    got = {key: np.concatenate([r[key] for r in res]) for key in res[0]}
    np.testing.assert_allclose(got["latency_ms"], lat, rtol=1e-9)
    np.testing.assert_allclose(got["memory_mb"], mem, rtol=1e-9)
    np.testing.assert_array_equal(got["macs"], macs)
    np.testing.assert_array_equal(got["params"], params)


@pytest.mark.slow
def test_oracle_equals_table_path_on_every_space_with_shared_grids():
    """Through an Oracle (its cache: larger grids, grids shared between segments built alike,
    such as the cells of NAS-Bench-201) every space still prices exactly as the layer table, for
    a batch and for single candidates after it."""
    prof = load_profile("tk1-gpu")
    for path in SPACES:
        space = an.load_space(path)
        X = space.sample(300, seed=21)
        oracle = an.Oracle(space, "tk1-gpu", batch=2)
        ref = _table_costs(space, X, prof, 2)
        for rep in range(2):
            got = oracle.evaluate(X)
            np.testing.assert_allclose(got["latency_ms"], ref[0], rtol=1e-9, err_msg=f"{path} {rep}")
            np.testing.assert_allclose(got["memory_mb"], ref[2], rtol=1e-9, err_msg=f"{path} {rep}")
            for kind, v in ref[1].items():
                np.testing.assert_allclose(got[f"latency_ms.{kind}"], v, rtol=1e-9, atol=1e-12)
        for i in range(4):
            np.testing.assert_allclose(oracle.evaluate(X[i])["latency_ms"], ref[0][i:i + 1], rtol=1e-9, err_msg=path)


def test_nb201_cells_are_tabulated_and_share_grids(monkeypatch):
    """NAS-Bench-201's 15 cells use the same six genes: through an Oracle every cell is
    tabulated (grids of up to 2 x 15,625 rows, within the kept-grid bounds, merged neighbours
    included) and the cells of a stage share one grid, so no segment is walked candidate by
    candidate once the grids are priced."""
    from augur_nas import _segments, oracle as oracle_module
    from augur_nas.oracle import Oracle

    monkeypatch.setattr(oracle_module, "WHOLE_SPACE", 0)  # the segment path, not the whole-space table
    space = an.load_space(_REPO / "spaces/nb201.yaml")
    X = space.sample(_segments.CALLS_BEFORE_GRID + 3, seed=4)
    oracle = Oracle(space, "tk1-gpu")
    for x in X[:_segments.CALLS_BEFORE_GRID]:
        oracle.evaluate(x, breakdown=False)
    calls = {"direct": 0, "tabulate": 0, "build": 0}
    for name, key in (("_direct", "direct"), ("_tabulate", "tabulate"), ("_grid_values", "build")):
        real = getattr(_segments, name)

        def counted(*a, _real=real, _key=key, **k):
            calls[_key] += 1
            return _real(*a, **k)
        monkeypatch.setattr(_segments, name, counted)
    oracle.evaluate(X[_segments.CALLS_BEFORE_GRID], breakdown=False)
    assert calls["direct"] == 0
    assert calls["build"] < calls["tabulate"] - 5  # the cells of a stage share grids
    calls.update(direct=0, build=0)
    rest = X[_segments.CALLS_BEFORE_GRID + 1:]
    got = np.concatenate([oracle.evaluate(x, breakdown=False)["latency_ms"] for x in rest])
    assert calls["direct"] == 0 and calls["build"] == 0
    np.testing.assert_allclose(got, _table_costs(space, rest, load_profile("tk1-gpu"), 1)[0], rtol=1e-9)


@pytest.mark.parametrize("path", ["spaces/mobile.yaml", "spaces/nb201.yaml", "spaces/classic.yaml",
                                  "spaces/mobile_small.yaml"])
def test_one_oracle_asked_batches_of_every_size_in_turn(path):
    """The kept grids, the call counter and the per-call choice between grids and walks must not
    let one call's state change another's answer: a random sequence of batch sizes, image batch
    sizes and breakdown settings on one Oracle, each call equal to the layer table."""
    rng = np.random.default_rng(5)
    space = an.load_space(_REPO / path)
    prof = load_profile("tk1-gpu")
    oracle = an.Oracle(space, "tk1-gpu", chunk=700)
    for call in range(7):
        B = int(rng.choice([1, 2, 64, 900, 2500]))
        batch = int(rng.choice([1, 4]))
        X = space.sample(B, seed=int(rng.integers(1_000_000)))
        got = oracle.evaluate(X, batch=batch, breakdown=bool(call % 2))
        ref = _table_costs(space, X, prof, batch)
        for key, i in (("latency_ms", 0), ("memory_mb", 2), ("macs", 3), ("params", 4)):
            np.testing.assert_allclose(np.asarray(got[key], dtype=float), np.asarray(ref[i], dtype=float),
                                       rtol=1e-9, err_msg=f"{path} call {call} B={B} batch={batch} {key}")


def test_a_small_space_asked_again_is_read_from_its_whole_table(monkeypatch):
    """An Oracle asked a second time about a space of at most ``WHOLE_SPACE`` candidates prices
    the whole space once; later calls (one candidate at a time: what NAS code does) only read
    that table, and equal the reference path."""
    from augur_nas import oracle as oracle_module
    from augur_nas.oracle import Oracle

    space = an.load_space(_REPO / "spaces/nb201.yaml")
    X = space.sample(6, seed=11)
    o = Oracle(space, "tk1-gpu")
    ref = o.evaluate(X, reference=True)
    o.evaluate(X[0])
    o.evaluate(X[1])  # the second call prices the table
    priced = []
    real = oracle_module._segment_costs
    monkeypatch.setattr(oracle_module, "_segment_costs", lambda *a, **k: priced.append(1) or real(*a, **k))
    for i in range(len(X)):
        one = o.evaluate(X[i])
        for k, v in ref.items():
            np.testing.assert_allclose(one[k][0], v[i], rtol=1e-9, atol=1e-12, err_msg=k)
    assert not priced
    assert len(o._grid_caches) == 1 and next(iter(o._grid_caches.values())).whole.latency_ms.shape == (15625,)


def test_a_whole_space_that_cannot_be_priced_leaves_each_call_its_own(monkeypatch):
    """When pricing the whole small space fails on some candidate's shapes, the Oracle keeps
    pricing each call's own candidates (only a call holding a failing candidate is refused)."""
    from augur_nas import oracle as oracle_module
    from augur_nas.oracle import Oracle

    space = an.load_space(_REPO / "spaces/nb201.yaml")
    real = oracle_module._segment_costs

    def failing_whole(space_, X, *a, **k):
        if len(X) == 15625:
            raise an.ShapeError("a candidate of the space has shapes that do not work")
        return real(space_, X, *a, **k)
    monkeypatch.setattr(oracle_module, "_segment_costs", failing_whole)
    X = space.sample(4, seed=2)
    o = Oracle(space, "tk1-gpu")
    ref = o.evaluate(X, reference=True)
    got = [o.evaluate(x)["latency_ms"][0] for x in X]
    np.testing.assert_allclose(got, ref["latency_ms"], rtol=1e-9)
    assert next(iter(o._grid_caches.values())).whole is False
