"""The LightGBM latency residual: stored in the profile as a text model (never a pickle), applied by
the oracle to whole chunks (one booster call each) identically on the fast and the reference
path, trained and validated by `augur-nas fit-residual` / `validate` on tiny spaces."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import numpy as np
import pytest

from augur_nas import ProfileError, load_space, lower
from augur_nas.costmodel import ResidualModel, latency_ms, residual_features, residual_sums
from augur_nas._totals import input_elems
from augur_nas.costmodel._residual import FEATURES, SUM_KEYS
from augur_nas.costmodel._fusion import FusionRules
from augur_nas.oracle import Oracle, _fast_costs, _table_costs
from augur_nas.profile import load_profile, parse_profile, save_profile

from conftest import ROOT, SPACES

pytest.importorskip("lightgbm")

X86 = ROOT / "device_profiles" / "x86-2core-ort.yaml"

TINY_SPACE = """\
name: tinyspace
input: {channels: 3, resolution: {choice: [16, 24]}}
layers:
  - conv_bn_act: {out: {choice: [8, 16]}, kernel: 3, stride: 2}
  - stage:
      depth: {choice: [1, 2]}
      block: {mbconv: {out: 16, kernel: {choice: [3, 5]}, expand: {choice: [1, 3]}}}
  - globalpool: {mode: avg}
  - fc: {out: 10}
"""


def _synthetic_residual(profile, space, n=300, seed=0):
    """A booster trained on made-up targets that depend on the features (for the plumbing tests)."""
    import lightgbm as lgb

    from augur_nas.measure._residual_fit import residual_inputs

    X = space.sample(n, seed=seed)
    base, F, _ = residual_inputs(space, X, profile)
    y = 0.1 * np.tanh(F[:, FEATURES.index("log_pred_ms")] - 1.0) + 0.05 * F[:, FEATURES.index("dw_share")]
    b = lgb.train({"objective": "l2", "num_leaves": 7, "verbose": -1, "num_threads": 1, "seed": 0},
                  lgb.Dataset(F, label=y), num_boost_round=40)
    return ResidualModel(b.model_to_string(), trained={"seed": 1000, "architectures": []})


@pytest.fixture(scope="module")
def base_profile():
    p = load_profile(X86)
    p.residual = None
    return p


@pytest.fixture(scope="module")
def with_residual(base_profile):
    import copy

    p = copy.copy(base_profile)
    p.residual = _synthetic_residual(base_profile, load_space(SPACES / "mobile.yaml"))
    return p


def test_residual_is_stored_as_text_and_round_trips(with_residual, tmp_path):
    out = tmp_path / "r.yaml"
    save_profile(with_residual, out)
    text = out.read_text()
    assert "residual:" in text and "kind: lightgbm" in text and "model: |" in text
    assert "!!python" not in text and "!!binary" not in text
    back = load_profile(out)
    assert back.residual == with_residual.residual
    space = load_space(SPACES / "mobile.yaml")
    X = space.sample(50, seed=3)
    a = Oracle(space, with_residual).latency(X)
    b = Oracle(space, back).latency(X)
    assert np.array_equal(a, b)


def test_corrupt_residual_is_a_profile_error(with_residual, tmp_path):
    d = with_residual.to_dict()
    d["residual"]["model"] = "tree\nnot a model"
    import yaml

    with pytest.raises(ProfileError, match="residual.model"):
        parse_profile(yaml.safe_dump(d), "bad.yaml")
    d["residual"]["model"] = "print('hi')"
    with pytest.raises(ProfileError, match="LightGBM text model"):
        parse_profile(yaml.safe_dump(d), "bad.yaml")
    d = with_residual.to_dict()
    d["residual"]["features"] = ["log_pred_ms", "what"]
    with pytest.raises(ProfileError, match="unknown features"):
        parse_profile(yaml.safe_dump(d), "bad.yaml")


@pytest.mark.parametrize("sp", ["mobile", "resnet", "nb201", "classic"])
def test_residual_fast_path_equals_reference_path(with_residual, base_profile, sp):
    space = load_space(SPACES / f"{sp}.yaml")
    X = space.sample(150, seed=7)
    fast = _fast_costs(space, X, with_residual, 1)[0]
    ref = _table_costs(space, X, with_residual, 1)[0]
    assert np.allclose(fast, ref, rtol=1e-9)
    # and without fusion and layout rules (other segment states), the residual still agrees
    unfused = copy.deepcopy(with_residual)
    unfused.latency.fuse = FusionRules(())
    unfused.latency.layout = None
    fast_u = _fast_costs(space, X, unfused, 1)[0]
    np.testing.assert_allclose(fast_u, _table_costs(space, X, unfused, 1)[0], rtol=1e-9)
    assert not np.allclose(fast_u, fast)  # fusion changes the figures, so both comparisons count
    base = _table_costs(space, X, base_profile, 1)[0]
    assert not np.allclose(fast, base)  # the residual does something
    r = np.log(fast / base)
    assert np.all(np.abs(r) <= with_residual.residual.max_abs_log + 1e-12)
    # the features of the fast path's gathered sums equal those of the full table
    table = lower(space, X)
    model = base_profile.latency
    fused = model.fused(table)
    st = model.slot_times(table, 1, fused=fused)
    sums = residual_sums(table, model, st, fused)
    F_ref = residual_features(sums, base, input_elems(table))
    assert F_ref.shape == (150, len(FEATURES)) and np.isfinite(F_ref).all()
    assert set(sums) == set(SUM_KEYS)


def test_oracle_calls_the_booster_once_per_chunk(with_residual, monkeypatch):
    space = load_space(SPACES / "mobile.yaml")
    X = space.sample(1000, seed=1)
    calls = []
    residual = with_residual.residual
    orig = residual.raw_score  # the booster's trees (as numpy arrays, _trees)

    def counting(XT, *a, **k):  # the features as rows, [features, B]
        calls.append(XT.shape[1])
        return orig(XT, *a, **k)

    monkeypatch.setattr(residual, "raw_score", counting)
    o = Oracle(space, with_residual, chunk=400)
    res = o.evaluate(X, breakdown=False)
    assert calls == [400, 400, 200]
    one = np.array([Oracle(space, with_residual).latency(X[i])[0] for i in (0, 17, 999)])
    assert np.allclose(one, res["latency_ms"][[0, 17, 999]])


def test_latency_ms_applies_the_residual(with_residual, base_profile):
    space = load_space(SPACES / "resnet.yaml")
    X = space.sample(20, seed=2)
    t = lower(space, X)
    a, _ = latency_ms(t, with_residual)
    b, _ = latency_ms(t, base_profile)
    assert np.allclose(a, Oracle(space, with_residual).latency(X))
    assert np.allclose(b, Oracle(space, base_profile).latency(X))


# --------------------------------------------------------------------------------------------- CLI


def _cli(*args, timeout=600):
    args = [str(a) for a in args]
    if args and args[0] in ("validate", "fit-residual"):
        args.append("--max-wait-s=0")  # tests never wait for a quiet machine
    return subprocess.run([sys.executable, "-m", "augur_nas.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


@pytest.mark.slow  # measures 16 + 31 networks: `pytest -m "not slow"` leaves it out
def test_fit_residual_and_validate_on_a_tiny_space(tmp_path):
    pytest.importorskip("onnxruntime")
    space = tmp_path / "tiny.yaml"
    space.write_text(TINY_SPACE)
    prof = tmp_path / "dev.yaml"
    p = load_profile(X86)
    p.residual = None
    save_profile(p, prof)
    before = load_profile(prof).to_dict()
    r = _cli("fit-residual", "--device", prof, "--space", space, "--samples", "16", "--seed", "5", "--rounds", "3",
             "--round-ms", "3", "--folds", "3", "--max-noise", "0.5", "--json", "--quiet")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    cv = out["cross_validation"]
    assert {"layer_sum", "layer_sum_with_residual", "macs_loglog"} <= set(cv["clean"])
    assert out["trained"]["seed"] == 5
    after = load_profile(prof)
    assert after.residual is not None and after.residual.trained["used"] >= 5
    assert len(after.residual.trained["architectures"]) >= 1
    assert after.latency == load_profile(X86).latency and before["memory"] == after.to_dict()["memory"]
    # validate on other samples (seed 0), with a plot; networks it was trained on are never scored
    png = tmp_path / "v.png"
    r = _cli("validate", "--device", prof, "--space", space, "--samples", "30", "--seed", "5", "--rounds", "3",
             "--round-ms", "3", "--no-memory", "--json", "--plot", png, "--quiet")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["summary"]["residual"] is True
    assert len(rep["summary"]["excluded_in_training"]) >= 1  # same seed: the same architectures come back
    assert all(n["in_training"] for n in rep["networks"] if n["label"] in rep["summary"]["excluded_in_training"])
    r = _cli("validate", "--device", prof, "--space", space, str(ROOT / "spaces" / "zoo" / "mobilenet_v2.yaml"),
             "--samples", "8", "--seed", "0", "--rounds", "3", "--round-ms", "3", "--plot", png, "--quiet")
    assert r.returncode == 0, r.stderr
    assert "within ±10%" in r.stdout and "noise floor" in r.stdout and "memory:" in r.stdout
    assert png.stat().st_size > 1000


@pytest.mark.slow
def test_validate_needs_networks_and_a_runnable_profile(tmp_path):
    r = _cli("validate", "--device", X86, "--quiet")
    assert r.returncode == 2 and "needs networks" in r.stderr
    r = _cli("validate", "--device", "tk1-cpu", str(ROOT / "spaces" / "zoo" / "nin.yaml"), "--quiet")
    assert r.returncode in (0, 2) and "Traceback" not in r.stderr


def test_residual_keeps_the_layer_sums_bias_and_takes_out_only_the_machines_speed():
    """A layer sum that is 20 % low on every network is what the residual must correct; the
    session's speed (from the profile's anchors) is what it must not learn."""
    from augur_nas.measure._residual_fit import cross_validate, session_speed

    rng = np.random.default_rng(0)
    n = 120
    F = rng.normal(size=(n, len(FEATURES)))
    base = np.exp(rng.uniform(0, 3, n))
    meas = base * 1.2 * np.exp(0.02 * F[:, 0])
    macs = base * 1e7
    noise = np.full(n, 0.01)
    cv = cross_validate(F, base, meas, macs, noise, folds=4, seed=0, offset=0.0)
    assert cv["clean"]["layer_sum"]["within_10pct"] < 0.05  # every network 20 % off
    assert cv["clean"]["layer_sum_with_residual"]["within_10pct"] > 0.95  # the bias is learned
    # the same networks measured on a machine running 10 % slow, which the anchors tell
    ref = {"anchor_a": 2.0, "anchor_b": 4.0, "anchor_c": 8.0}
    now = {f"anchor:{k}": {"median_ms": v * 1.1} for k, v in ref.items()}
    speed = session_speed(now, ref)
    assert speed["ratio_now_to_profile"] == pytest.approx(1.1)
    assert session_speed({}, ref) is None
    cv_slow = cross_validate(F, base, meas * 1.1, macs, noise, folds=4, seed=0, offset=float(np.log(1.1)))
    assert cv_slow["clean"]["layer_sum_with_residual"]["within_10pct"] > 0.95


# ------------------------------------------------------------------ the trees as numpy arrays


def _features_of(space_name, n, seed):
    from augur_nas.measure._residual_fit import residual_inputs

    space = load_space(SPACES / space_name)
    p = load_profile(X86)
    base, F, _ = residual_inputs(space, space.sample(n, seed=seed), p)
    return F


def test_numpy_trees_equal_lightgbm_on_the_shipped_model():
    """The shipped profile's 300 trees, evaluated as arrays (``_trees``), give LightGBM's own
    prediction to 1e-12 (only the order of the sum differs), on real candidates of two spaces and
    on values at and around every threshold."""
    from augur_nas.costmodel import _trees

    r = load_profile(X86).residual
    forest = _trees.parse(r.model)
    assert forest is not None and len(forest.offsets) == 150  # pairs of trees
    F = np.vstack([_features_of("mobile.yaml", 400, 3), _features_of("nb201.yaml", 200, 4)])[:, r._cols]
    # every threshold itself (x <= t goes left), and the doubles just above and below it
    edge = np.repeat(F[:1], sum(len(t) for t in forest.thresholds) * 3, axis=0)
    row = 0
    for f, th in zip(forest.features, forest.thresholds):
        for t in th:
            for v in (t, np.nextafter(t, np.inf), np.nextafter(t, -np.inf)):
                edge[row, f] = v
                row += 1
    edge[0, 0], edge[1, 1], edge[2, 2] = np.nan, 1e-40, -1e-36  # LightGBM reads these as 0
    for X in (F, edge):
        want = r.booster.predict(X, num_threads=1)
        got = forest.predict(X)
        assert np.abs(got - want).max() <= 1e-12 * max(1.0, np.abs(want).max())
    assert np.ptp(forest.predict(F)) > 0.05  # the candidates do reach different leaves


def test_numpy_trees_refuse_models_they_cannot_reproduce():
    """A model ``_trees`` cannot evaluate exactly (over 8 leaves, a categorical split, an output
    transform) is left to LightGBM, and the residual still predicts through it."""
    import lightgbm as lgb

    from augur_nas.costmodel import _trees

    rng = np.random.default_rng(0)
    X = rng.random((400, 4))
    X[:, 3] = rng.integers(0, 5, 400)
    y = X[:, 0] + np.sin(4 * X[:, 1]) + (X[:, 3] == 2)
    common = {"verbose": -1, "num_threads": 1, "seed": 0, "min_data_in_leaf": 5}
    small = lgb.train({**common, "objective": "huber", "num_leaves": 8}, lgb.Dataset(X, label=y), 20)
    f = _trees.parse(small.model_to_string())
    assert f is not None and np.abs(f.predict(X) - small.predict(X, num_threads=1)).max() < 1e-12
    wide = lgb.train({**common, "objective": "l2", "num_leaves": 31}, lgb.Dataset(X, label=y), 5)
    cat = lgb.train({**common, "objective": "l2", "num_leaves": 4}, lgb.Dataset(X, label=y, categorical_feature=[3]), 5)
    binary = lgb.train({**common, "objective": "binary", "num_leaves": 4}, lgb.Dataset(X, label=y > 1.5), 5)
    for b in (wide, cat, binary):
        assert _trees.parse(b.model_to_string()) is None
    r = ResidualModel(wide.model_to_string(), features=FEATURES[:4])
    F = np.zeros((3, len(FEATURES)))
    F[:, :4] = X[:3]
    assert np.allclose(r.log_ratio(F), np.clip(wide.predict(X[:3], num_threads=1), -1, 1), rtol=0, atol=1e-12)
