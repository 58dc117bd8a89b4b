"""The exact front (augur_nas.exact, dynamic programming over segments) against exhaustive
enumeration: on spaces/nb201.yaml and spaces/mobile_small.yaml, for every Jetson profile and the
measured profile without its residual (fusion and layout rules: boundary states), and on
spaces/resnet.yaml and a reduced spaces/classic.yaml (choices between whole subnetworks:
conditioned), the DP's front is the front of every candidate priced by Oracle.evaluate, point for
point, and every member re-priced by Oracle.evaluate has the DP's values (relative 1e-9)."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from augur_nas import ConstraintError, Oracle, load_space
from augur_nas.profile import load_profile
from augur_nas import _dp
from augur_nas.exact import OBJECTIVES, exact_front, thin
from augur_nas.search._pareto import pareto_mask

from conftest import SPACES

JETSON = ("tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu")
MEASURED = "x86-2core-ort without residual"  # the measured profile's layer sum: fusion and layout rules
REL = 1e-9


@functools.lru_cache(maxsize=None)
def _profile(device):
    """A device name for the Oracle: a shipped profile, or the measured one with its residual removed."""
    if device != MEASURED:
        return device
    p = copy.copy(load_profile("x86-2core-ort"))
    p.residual = None
    return p


@functools.lru_cache(maxsize=None)
def _space(name):
    return load_space(_classic_small_file() if name == "classic_small" else SPACES / f"{name}.yaml")


@functools.lru_cache(maxsize=None)
def _enumerated(name):
    return _space(name).enumerate()


@functools.lru_cache(maxsize=None)  # one Oracle per (space, profile): it keeps the DP's stages between fronts
def _oracle(name, device):
    return Oracle(_space(name), _profile(device))


@functools.lru_cache(maxsize=None)  # every candidate priced once per (space, profile) for the whole module
def _priced(name, device):
    X = _enumerated(name)
    return X, Oracle(_space(name), _profile(device)).evaluate(X, breakdown=False)


def _brute_front(R, objectives, limits):
    """The front of every enumerated candidate: indices, one per trade-off."""
    ok = np.ones(len(R["latency_ms"]), dtype=bool)
    for k, b in limits.items():
        ok &= R[k] <= b
    idx = np.flatnonzero(ok)
    if len(objectives) == 2 and objectives[0] == "latency_ms" and OBJECTIVES[objectives[1]] < 0:
        return idx[pareto_mask(R["latency_ms"][idx], R[objectives[1]][idx])]  # the exhaustive sampler's own front
    V = np.column_stack([OBJECTIVES[o] * R[o][idx] for o in objectives])
    return idx[_dp.nondominated(V, np.zeros(len(idx), dtype=np.int64))]


def _covers(A, B):
    """Whether every row of ``B`` is weakly dominated (all columns minimized) by some row of ``A``,
    up to the relative tolerance: two candidates whose latencies are equal in exact arithmetic
    differ in the last bits, in an order that depends on how the sums were taken, so two fronts
    are equal when each covers the other, not bit for bit."""
    tol = REL * np.maximum(np.abs(A)[:, None, :], np.abs(B)[None, :, :])
    return bool(((A[:, None, :] <= B[None, :, :] + tol).all(axis=2)).any(axis=0).all())


def _check(name, device, objectives, limits):
    sp = _space(name)
    X, R = _priced(name, device)
    f = exact_front(_oracle(name, device), None, limits, objectives)
    ref = _brute_front(R, objectives, limits)
    want = np.column_stack([OBJECTIVES[o] * R[o][ref] for o in objectives])
    got = np.column_stack([OBJECTIVES[o] * f.values[o] for o in objectives])
    assert len(ref) > 0 and len(f) > 0, (name, device, objectives, limits)
    # the same front: each covers the other, and they have as many trade-offs but for exact-arithmetic ties
    assert _covers(got, want) and _covers(want, got), (name, device, objectives, limits, len(f), len(ref))
    assert abs(len(f) - len(ref)) <= max(1, len(ref) // 50), (len(f), len(ref))
    # every member re-priced by the oracle: the DP's sums are the oracle's
    again = Oracle(sp, _profile(device)).evaluate(f.X, breakdown=False)  # a fresh Oracle: nothing shared
    for k in ("latency_ms", "memory_mb", "macs", "params"):
        np.testing.assert_allclose(f.values[k], again[k], rtol=REL, atol=0, err_msg=k)
    for k, b in limits.items():
        assert (again[k] <= b).all()
    return f, R


def _cases():
    """(space, device): every Jetson profile and the measured profile without its residual on both
    spaces (the measured profile's grids and enumeration take a minute or two: slow)."""
    return [(n, d) for n in ("nb201", "mobile_small") for d in JETSON] + [
        pytest.param("nb201", MEASURED, id="nb201-measured", marks=pytest.mark.slow),
        pytest.param("mobile_small", MEASURED, id="mobile_small-measured", marks=[pytest.mark.slow, pytest.mark.long])]


@pytest.mark.parametrize("name,device", _cases())
def test_latency_macs_front_is_exhaustive_front(name, device):
    f, R = _check(name, device, ("latency_ms", "macs"), {})
    # the unconstrained front starts at the fastest candidate of the space and ends at the largest
    assert f.values["latency_ms"][0] == pytest.approx(R["latency_ms"].min(), rel=REL)
    assert f.values["macs"][-1] == pytest.approx(R["macs"].max(), rel=REL)
    # under a latency limit at the median: the fastest feasible to the limit
    lim = float(np.median(R["latency_ms"]))
    g, _ = _check(name, device, ("latency_ms", "macs"), {"latency_ms": lim})
    assert g.values["latency_ms"].max() <= lim < f.values["latency_ms"].max()


@pytest.mark.parametrize("name,device", [c if not hasattr(c, "values") or MEASURED not in c.values else
                                         pytest.param(*c.values, id=c.id, marks=[pytest.mark.slow, pytest.mark.long])
                                         for c in _cases()])
def test_limits_on_memory_params_macs(name, device):
    _, R = _priced(name, device)
    q = lambda k, p: float(np.quantile(R[k], p))  # noqa: E731
    _check(name, device, ("latency_ms", "params"), {"memory_mb": q("memory_mb", 0.6), "macs": q("macs", 0.7)})
    _check(name, device, ("latency_ms", "macs"), {"latency_ms": q("latency_ms", 0.8), "memory_mb": q("memory_mb", 0.5),
                                                  "params": q("params", 0.6), "macs": q("macs", 0.6)})


@pytest.mark.parametrize("device", JETSON + (pytest.param(MEASURED, marks=[pytest.mark.slow, pytest.mark.long]),))
def test_three_objectives_nb201(device):
    _check("nb201", device, ("latency_ms", "memory_mb", "macs"), {})


def test_mobile_sliver_is_found_exactly():
    """spaces/mobile.yaml (2.5e19 candidates), tk1-gpu, 50 ms: the feasible sliver that sampling
    misses; every member meets the limit when re-priced, and no random candidate dominates one."""
    sp = load_space(SPACES / "mobile.yaml")
    f = exact_front(sp, "tk1-gpu", {"latency_ms": 50.0})
    assert len(f) >= 5
    o = Oracle(sp, "tk1-gpu")
    again = o.evaluate(f.X, breakdown=False)
    np.testing.assert_allclose(f.values["latency_ms"], again["latency_ms"], rtol=REL)
    np.testing.assert_allclose(f.values["macs"], again["macs"], rtol=REL)
    assert (again["latency_ms"] <= 50.0).all()
    # the fastest member is the fastest network of the space (no limit changes the low end)
    free = exact_front(sp, "tk1-gpu", {}, ("latency_ms", "macs"))
    assert free.values["latency_ms"][0] == pytest.approx(f.values["latency_ms"][0], rel=REL)
    R = o.evaluate(sp.sample(20000, seed=1), breakdown=False)
    assert R["latency_ms"].min() > f.values["latency_ms"][0]
    for lat, macs in zip(f.values["latency_ms"], f.values["macs"]):
        assert not ((R["latency_ms"] <= lat) & (R["macs"] >= macs) & ((R["latency_ms"] < lat) | (R["macs"] > macs))).any()


def test_nothing_feasible_is_an_empty_front():
    f = exact_front(_space("mobile_small"), "tk1-gpu", {"latency_ms": 1.0})
    assert len(f) == 0 and f.X.shape == (0, _space("mobile_small").n_genes)


def test_refuses_what_does_not_compose():
    sp = _space("nb201")
    with pytest.raises(ConstraintError, match="residual model over whole-network features"):
        exact_front(sp, "x86-2core-ort", {})
    with pytest.raises(ConstraintError, match="user objective"):
        exact_front(sp, "tk1-gpu", {}, ("latency_ms", "accuracy"))
    with pytest.raises(ConstraintError, match="limit must be a positive"):
        exact_front(sp, "tk1-gpu", {"latency_ms": -1})


def test_thin_keeps_both_ends_and_spreads():
    f = exact_front(_space("mobile_small"), "tk1-gpu", {})
    assert len(f) > 20
    idx = thin(f, 8)
    assert len(idx) == 8 and idx[0] == 0 and idx[-1] == len(f) - 1
    lat = f.values["latency_ms"][idx]
    gaps = np.diff(lat)
    assert (gaps > 0).all() and gaps.max() < 3 * (lat[-1] - lat[0]) / 7


def test_nondominated_filters_per_group():
    V = np.array([[1, 5], [2, 4], [2, 6], [3, 3], [1, 5], [0, 9], [5, 0], [5, 1]], dtype=float)
    g = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    assert _dp.nondominated(V, g).tolist() == [True, True, False, True, False, True, True, False]
    W = np.column_stack([V, np.zeros(len(V))])
    assert _dp.nondominated(W, g).tolist() == [True, True, False, True, False, True, True, False]


# ---------------------------------------------------------------------------------- search --sampler exact


def _cli(args, capsys):
    from augur_nas.cli import main as cli_main

    rc = cli_main(["search", *args])
    return rc, capsys.readouterr()


def test_cli_exact_is_the_default_and_thins(tmp_path, capsys):
    import json

    out = tmp_path / "o"
    rc, cap = _cli([str(SPACES / "mobile_small.yaml"), "--device", "tk1-gpu", "--latency", "90ms", "--front-size", "8",
                    "--out", str(out)], capsys)
    assert rc == 0, cap.err
    m = json.loads((out / "pareto.json").read_text())
    f = exact_front(_space("mobile_small"), "tk1-gpu", {"latency_ms": 90.0})
    assert m["sampler"] == "exact"
    assert m["exact"]["pareto_optimal_points"] == len(f) > 8
    assert m["quantities"] == {"exact": ["latency_ms", "macs"], "searched": []}
    lat = [r["latency_ms"] for r in m["front"]]
    assert len(lat) == 8 and lat[0] == pytest.approx(f.values["latency_ms"][0]) and lat[-1] <= 90.0
    assert lat[-1] == pytest.approx(f.values["latency_ms"][-1])  # the largest feasible network is shown
    assert len(list(out.glob("arch-*.yaml"))) == 8 and (out / "pareto.png").exists() and (out / "pareto.html").exists()
    assert f"{len(f)} Pareto-optimal architectures in all" in cap.out


@pytest.mark.slow
def test_cli_trials_still_ask_for_a_sampling_search(tmp_path, capsys):
    import json

    rc, cap = _cli([str(SPACES / "nb201.yaml"), "--device", "tk1-gpu", "--trials", "30", "--seed", "0",
                    "--out", str(tmp_path / "o")], capsys)
    assert rc == 0, cap.err
    assert json.loads((tmp_path / "o" / "pareto.json").read_text())["sampler"] == "nsga2"


@pytest.mark.parametrize("args,needle", [
    (["--sampler", "exact", "--objective", "math:floor"], "user function"),
    (["--sampler", "exact", "--storage", "journal:x.log"], "without a study"),
    (["--latency", "0.5ms"], "nothing feasible: none of the 1.56e+04 architectures of nb201 (exact dynamic program"),
])
def test_cli_exact_bad_input_exit_2(args, needle, tmp_path, capsys):
    rc, cap = _cli([str(SPACES / "nb201.yaml"), "--device", "tk1-gpu", "--out", str(tmp_path / "o"), *args], capsys)
    assert rc == 2
    assert needle in cap.err and cap.err.count("\n") == 1 and "Traceback" not in cap.err
    assert not (tmp_path / "o" / "pareto.csv").exists()
    if "nothing feasible" in needle:  # the closest candidates: the fastest networks of the space
        fastest = exact_front(_space("nb201"), "tk1-gpu", {}).values["latency_ms"][0]
        assert f"latency {fastest:.2f} ms" in cap.err


def test_cli_exact_refuses_residual_profile(tmp_path, capsys):
    rc, cap = _cli([str(SPACES / "nb201.yaml"), "--device", "x86-2core-ort", "--sampler", "exact",
                    "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "residual model" in cap.err and cap.err.count("\n") == 1


def test_user_objective_search_is_seeded_with_the_exact_front(tmp_path):
    from augur_nas.search import search

    depth = lambda spec: float(len(spec["layers"]))  # noqa: E731
    res = search(str(SPACES / "mobile.yaml"), "tk1-gpu", latency_ms=50, objective=depth, trials=60, seed=0)
    f = exact_front(_space("mobile"), "tk1-gpu", {"latency_ms": 50.0})
    assert "seeded with" in res.meta["seeding"]
    assert res.meta["quantities"]["searched"] == ["latency_ms", res.meta["objective"]["name"]]
    # the first trials are the exact front's members: feasible at once in a space where random
    # candidates never are
    X = res.trials["X"][np.argsort(res.trials["number"])][:len(f)]
    assert {tuple(x) for x in X} == {tuple(x) for x in f.X}
    assert res.n_feasible >= len(f)


def test_residual_profile_search_is_seeded_with_the_layer_sum_front():
    """x86-2core-ort as shipped (a residual on top of fusion and layout rules): the default search
    runs NSGA-II whose first trials are the exact front of the layer sum, and says that the front it
    returns was searched."""
    from augur_nas.search import search

    res = search(str(SPACES / "mobile_small.yaml"), "x86-2core-ort", objective="macs", trials=40, seed=0)
    o = Oracle(_space("mobile_small"), "x86-2core-ort")
    f = exact_front(o, None, {}, ("latency_ms", "macs"), layer_sum=True)
    assert f.layer_sum and f.exact[0].startswith("latency_ms (layer sum")
    assert res.meta["sampler"] == "nsga2"
    assert res.meta["seeding"].startswith(f"seeded with {min(len(f), 30)} of the {len(f)} members of the exact front "
                                          f"of (layer-sum latency, MACs)")
    assert res.meta["quantities"] == {"exact": [], "searched": ["latency_ms", "macs"]}
    X = res.trials["X"][np.argsort(res.trials["number"])][:min(len(f), 30)]
    assert {tuple(x) for x in X} == {tuple(x) for x in f.X[thin(f, 30)]}
    # the seeds' layer sums are the DP's: the measured profile's layer sum without its residual
    again = Oracle(_space("mobile_small"), _profile(MEASURED)).evaluate(f.X, breakdown=False)
    np.testing.assert_allclose(f.values["latency_ms"], again["latency_ms"], rtol=REL)


@pytest.mark.slow
@pytest.mark.parametrize("device", ["tk1-gpu", "tx1-cpu"])
def test_batch_of_images(device):
    """A batch of 8 images per forward pass (latency and activations scale, weights do not): the
    exact front through an Oracle of that batch is the exhaustive one."""
    sp = _space("nb201")
    o = Oracle(sp, device, batch=8)
    R = o.evaluate(_enumerated("nb201"), breakdown=False)
    lim = float(np.median(R["memory_mb"]))
    f = exact_front(o, None, {"memory_mb": lim})
    ref = _brute_front(R, ("latency_ms", "macs"), {"memory_mb": lim})
    want = np.column_stack([R["latency_ms"][ref], -R["macs"][ref]])
    got = np.column_stack([f.values["latency_ms"], -f.values["macs"]])
    assert len(f) > 1 and _covers(got, want) and _covers(want, got)
    again = o.evaluate(f.X, breakdown=False)
    np.testing.assert_allclose(f.values["memory_mb"], again["memory_mb"], rtol=REL)
    np.testing.assert_allclose(f.values["latency_ms"], again["latency_ms"], rtol=REL)


# a reduced spaces/classic.yaml: the same structure (stage depths are choices between lists of
# convs, each conv with its own genes), fewer options, so that every candidate can be priced
CLASSIC_SMALL = """
name: classic_small
input: {channels: 3, resolution: 224}
layers:
  - conv: {name: stem, out: {choice: [32, 64]}, kernel: 3, stride: {choice: [2, 4]}, pad: same}
  - relu: {name: stem_relu}
  - choice:
      - []
      - [{conv: {out: 32, kernel: 3, pad: same}}, relu]
  - choice: [{maxpool: {kernel: 2, stride: 2}}, {maxpool: {kernel: 3, stride: 2, ceil: true}}]
  - choice:
      - - &s2 {conv: {out: {choice: [64, 128]}, kernel: 3, pad: same}}
        - relu
      - [*s2, relu, *s2, relu]
  - maxpool: {kernel: 2, stride: 2}
  - choice:
      - - &s3 {conv: {out: {choice: [128, 256]}, kernel: {choice: [1, 3, 5]}, pad: same}}
        - relu
      - [*s3, relu, *s3, relu]
      - [*s3, relu, *s3, relu, *s3, relu]
  - maxpool: {kernel: 2, stride: 2}
  - choice:
      - - &fc {fc: {out: {choice: [1024, 4096]}}}
        - relu
        - dropout: {ratio: 0.5}
      - [*fc, relu, {dropout: {ratio: 0.5}}, *fc, relu, {dropout: {ratio: 0.5}}]
  - fc: {name: classifier, out: 1000}
  - softmax: {name: prob}
"""


@functools.lru_cache(maxsize=None)
def _classic_small_file():
    import tempfile
    from pathlib import Path

    d = Path(tempfile.mkdtemp(prefix="augur-exact-"))
    (d / "classic_small.yaml").write_text(CLASSIC_SMALL)
    return d / "classic_small.yaml"


# resnet (175k candidates) runs in the suite on tx1-cpu only: on tk1-gpu it took 26 s of the
# suite's 15 minutes for the same conditioning that classic_small checks on tk1-gpu
@pytest.mark.parametrize("name,device", [("classic_small", d) for d in ("tk1-gpu", "tx1-cpu", MEASURED)] + [
    pytest.param("resnet", d, marks=[pytest.mark.slow] + ([] if d == "tx1-cpu" else [pytest.mark.long]))
    for d in ("tk1-gpu", "tx1-cpu", MEASURED)])
def test_choice_between_subnetworks_is_conditioned(name, device):
    """spaces/resnet.yaml (basic or bottleneck networks) and a reduced spaces/classic.yaml (a choice
    among 1, 2 or 3 convs per stage): one segment of every gene inside the choice, so the space is cut
    into one part per option of the choice gene; the front is the exhaustive one."""
    f, R = _check(name, device, ("latency_ms", "macs"), {})
    assert f.stats["parts"] > 1 and f.stats["conditioned_on"], f.stats
    assert f.values["latency_ms"][0] == pytest.approx(R["latency_ms"].min(), rel=REL)
    _check(name, device, ("latency_ms", "params"), {"latency_ms": float(np.quantile(R["latency_ms"], 0.3)),
                                                    "memory_mb": float(np.quantile(R["memory_mb"], 0.5))})


@pytest.mark.slow
@pytest.mark.long
def test_classic_gets_an_exact_front():
    """spaces/classic.yaml (2e25 candidates): its stage depths conditioned on (54 parts, a few
    seconds each under 12 ms on tk1-gpu), an exact front that no random candidate dominates."""
    sp = _space("classic")
    f = exact_front(sp, "tk1-gpu", {"latency_ms": 12.0})
    assert len(f) > 5 and f.stats["parts"] == 54
    o = Oracle(sp, "tk1-gpu")
    again = o.evaluate(f.X, breakdown=False)
    np.testing.assert_allclose(f.values["latency_ms"], again["latency_ms"], rtol=REL)
    np.testing.assert_allclose(f.values["macs"], again["macs"], rtol=REL)
    assert (again["latency_ms"] <= 12.0).all()
    R = o.evaluate(sp.sample(20000, seed=3), breakdown=False)
    ok = R["latency_ms"] <= 12.0
    for lat, macs in zip(f.values["latency_ms"], f.values["macs"]):
        assert not ((R["latency_ms"][ok] <= lat) & (R["macs"][ok] >= macs)
                    & ((R["latency_ms"][ok] < lat) | (R["macs"][ok] > macs))).any()


def test_many_parts_are_not_the_default():
    """A space of more parts than the default computes unasked (classic: 54) is searched by NSGA-II
    unless --sampler exact asks (resnet's 2 parts: exact by default)."""
    from augur_nas.search._config import make_config
    from augur_nas.search._exact_run import DEFAULT_MAX_PARTS, exact_applies, seed_encodings
    from augur_nas.search._run import resolve_sampler

    o = Oracle(_space("classic"), "tk1-gpu")
    cfg = make_config(_space("classic"), "tk1-gpu", latency_ms=20)
    assert exact_applies(o, cfg.objective) is None
    assert "in 54 ways" in exact_applies(o, cfg.objective, default=True) and DEFAULT_MAX_PARTS < 54
    assert resolve_sampler(cfg, o) == ("nsga2", True)
    X, note = seed_encodings(o, cfg.limits, 30)
    assert len(X) == 0 and note.startswith("not seeded: classic chooses between whole subnetworks in 54 ways")
    r = Oracle(_space("resnet"), "tk1-gpu")
    assert resolve_sampler(make_config(_space("resnet"), "tk1-gpu", latency_ms=100), r) == ("exact", False)


def test_too_many_parts_fall_back(tmp_path, capsys, monkeypatch):
    """More parts than the exact front solves (here: at most one): refused in one paragraph, and
    the default search falls back to NSGA-II (not seeded)."""
    from augur_nas import exact

    monkeypatch.setattr(exact, "MAX_PARTS", 1)
    sp = load_space(SPACES / "resnet.yaml")  # a fresh program: the parts are kept per program
    with pytest.raises(ConstraintError, match="choices between whole subnetworks would take more than 1 dynamic"):
        exact_front(sp, "tk1-gpu", {})
    rc, cap = _cli([str(SPACES / "resnet.yaml"), "--device", "tk1-gpu", "--sampler", "exact", "--out", str(tmp_path / "a")],
                   capsys)
    assert rc == 2 and "whole subnetworks" in cap.err and cap.err.count("\n") == 1
    from augur_nas.search import search

    res = search(str(SPACES / "resnet.yaml"), "tk1-gpu", latency_ms=300, objective=lambda spec: 1.0, trials=30, seed=0)
    assert res.meta["sampler"] == "nsga2" and res.meta["seeding"].startswith("not seeded")


def test_dp_core_on_a_synthetic_chain():
    """The DP core alone (the interface an adapter fills: per stage, entry state -> gene
    combination, exit state, added and maxed values), with a gene shared by the first and the last
    stage and a limit, against brute force over every gene assignment."""
    import itertools

    rng = np.random.default_rng(7)
    sizes = [3, 2, 4, 2]  # gene 0 is used by stages 0 and 2 (carried), genes 1-3 by one stage each
    plan = [((0,), 1, 2), ((1,), 2, 3), ((0, 2), 3, 2), ((3,), 2, 1)]  # (genes, entry states, exit states)
    stages = []
    for genes, n_in, n_out in plan:
        R = int(np.prod([sizes[g] for g in genes]))
        entry = np.repeat(np.arange(n_in), R)
        combo = np.tile(np.arange(R), n_in)
        exit_ = rng.integers(0, n_out, len(entry))
        add = np.column_stack([rng.random(len(entry)), rng.integers(1, 9, len(entry)).astype(float)])
        mx = rng.random((len(entry), 1))
        stages.append(_dp.Stage(genes, tuple(sizes[g] for g in genes), entry, combo, exit_, add, mx))
    crit = [_dp.Criterion("add", 0, 1.0), _dp.Criterion("add", 1, -1.0), _dp.Criterion("max", 0, 1.0)]
    lim = _dp.Limit("first", lambda a, m: a[:, 0], 2.0)
    res = _dp.solve(stages, [p[2] for p in plan], sizes, crit, [lim])
    got = np.column_stack([res.add[:, 0], -res.add[:, 1], res.mx[:, 0]])
    got = got[got[:, 0] <= 2.0]
    def totals(x):
        state, a, m = 0, np.zeros(2), 0.0
        for st in stages:
            r = _dp._radix(st.sizes)
            combo = sum(x[g] * r[i] for i, g in enumerate(st.genes))
            i = int(np.flatnonzero((st.entry == state) & (st.combo == combo))[0])
            a, m, state = a + st.add[i], max(m, st.mx[i, 0]), st.exit[i]
        return a[0], -a[1], m

    allp = np.array([totals(x) for x in itertools.product(*[range(s) for s in sizes])])
    allp = allp[allp[:, 0] <= 2.0]
    want = allp[_dp.nondominated(allp, np.zeros(len(allp), dtype=np.int64))]
    assert len(want) > 3
    assert _covers(got, want) and _covers(want, got)
    # the encodings the core reconstructs give the totals it reports
    X = _dp.encodings(stages, res.choices, len(sizes))
    again = np.array([totals(x) for x in X])
    np.testing.assert_allclose(again, np.column_stack([res.add[:, 0], -res.add[:, 1], res.mx[:, 0]]), rtol=1e-12)
