"""augur-nas search: limits, objectives, batching, fronts, outputs, storages, Ctrl-C, exit codes."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from augur_nas import ConstraintError, load_model, load_space
from augur_nas.analysis import analyze
from augur_nas.cli import main as cli_main
from augur_nas.oracle import Oracle
from augur_nas.search import (atomic_write, hypervolume, iter_chunks, pareto_mask, parse_limit, search, unrank,
                              violation)

from conftest import SPACES

NB201 = str(SPACES / "nb201.yaml")
MOBILE = str(SPACES / "mobile.yaml")
MOBILE_SMALL = str(SPACES / "mobile_small.yaml")
DEVICE = "tk1-gpu"


def brute_front(lat, obj):
    """Indices of the non-dominated points (minimize lat, maximize obj), one per distinct point, O(n^2)."""
    keep, seen = [], set()
    for i in range(len(lat)):
        dominated = np.any((lat <= lat[i]) & (obj >= obj[i]) & ((lat < lat[i]) | (obj > obj[i])))
        if not dominated and (lat[i], obj[i]) not in seen:
            seen.add((lat[i], obj[i]))
            keep.append(i)
    return np.array(keep, dtype=int)


# ------------------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("q,text,value", [
    ("latency_ms", "50ms", 50.0), ("latency_ms", "0.05s", 50.0), ("latency_ms", "50", 50.0),
    ("latency_ms", "500us", 0.5), ("latency_ms", " 1.5e1ms ", 15.0), ("latency_ms", 25, 25.0),
    ("memory_mb", "300MB", 300.0), ("memory_mb", "1GB", 1024.0), ("memory_mb", "512KB", 0.5),
    ("memory_mb", "2MiB", 2.0), ("params", "5M", 5e6), ("params", "500K", 5e5), ("params", "1200", 1200.0),
    ("macs", "600M", 6e8), ("macs", "1.2G", 1.2e9),
])
def test_limits_parse(q, text, value):
    assert parse_limit(q, text) == pytest.approx(value)


@pytest.mark.parametrize("q,text", [
    ("latency_ms", "fast"), ("latency_ms", "-5ms"), ("latency_ms", "0ms"), ("latency_ms", "50MB"),
    ("latency_ms", "nan"), ("latency_ms", "inf"), ("latency_ms", ""), ("latency_ms", "5 ms ms"),
    ("memory_mb", "-3MB"), ("memory_mb", "300ms"), ("memory_mb", "3TB"), ("params", "5m"), ("params", "5MB"),
    ("macs", "1e400"), ("macs", "0"), ("latency_ms", float("nan")), ("latency_ms", -1), ("latency_ms", True),
])
def test_limits_refused(q, text):
    with pytest.raises(ConstraintError):
        parse_limit(q, text)


@pytest.mark.parametrize("args,needle", [
    (["--latency", "fast"], "--latency"),
    (["--memory", "-3MB"], "--memory must be positive"),
    (["--memory=-3MB"], "--memory must be positive"),
    (["--params", "5 apples"], "--params"),
    (["--objective", "no_such_module_xyz:f"], "cannot import"),
    (["--objective", "math:no_such_fn"], "no attribute"),
    (["--objective", "math:pi"], "not a function"),
    (["--objective", "accuracy"], "module:function"),
    (["--storage", "mysql://x"], "not understood"),
    (["--workers", "2"], "persistent --storage"),
])
def test_cli_bad_values_exit_2(args, needle, capsys, tmp_path):
    rc = cli_main(["search", NB201, "--device", DEVICE, "--trials", "20", "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert needle in err
    assert err.startswith("augur-nas search: error:") and err.count("\n") == 1  # one paragraph
    assert "Traceback" not in err
    assert not (tmp_path / "o" / "pareto.csv").exists()


# ------------------------------------------------------------------------------------------- pareto utilities


def test_pareto_mask_and_hypervolume():
    lat = np.array([1.0, 2.0, 2.0, 3.0, 4.0, 1.0, np.nan])
    obj = np.array([1.0, 3.0, 2.0, 3.0, 5.0, 1.0, 9.0])
    m = pareto_mask(lat, obj)
    assert m.tolist() == [True, True, False, False, True, False, False]  # ties keep the first; NaN never
    # area of the staircase (1,1), (2,3), (4,5) under reference (5, 0): 4*1 + 3*2 + 1*2 = 12
    assert hypervolume(lat[:5], obj[:5], 5.0, 0.0) == pytest.approx(12.0)
    assert hypervolume(lat[:5], obj[:5], 0.5, 0.0) == 0.0
    assert violation(np.array([[-1.0, 0.5], [0.2, 0.3], [0.0, -2.0]])).tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(1)
    lat = rng.integers(0, 30, 400).astype(float)
    obj = rng.integers(0, 30, 400).astype(float)
    got = np.flatnonzero(pareto_mask(lat, obj))
    assert sorted(got.tolist()) == sorted(brute_front(lat, obj).tolist())


def test_unrank_matches_enumerate_in_chunks():
    space = load_space(SPACES / "resnet.yaml")
    E = space.enumerate()
    parts = [X for _, X in iter_chunks(space, 7777)]
    assert np.array_equal(np.concatenate(parts), E)
    ranks = np.array([0, 5, len(E) - 1, 12345])
    assert np.array_equal(unrank(space, ranks), E[ranks])


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "f.txt"
    atomic_write(str(p), "one")
    atomic_write(str(p), b"two")
    assert p.read_text() == "two"

    class Boom:
        def encode(self, *_):
            raise RuntimeError("boom")

    with pytest.raises(Exception):
        atomic_write(str(p), Boom())
    assert p.read_text() == "two"
    assert [q.name for q in tmp_path.iterdir()] == ["f.txt"]


# ------------------------------------------------------------------------------------------- the search


@pytest.fixture(scope="module")
def nb201_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nb201")
    res = search(NB201, DEVICE, latency_ms="150ms", memory_mb="110MB", trials=300, seed=1, out=str(out))
    return res, out


@pytest.mark.slow
def test_front_is_feasible_nondominated_and_complete(nb201_run):
    res, out = nb201_run
    space = load_space(NB201)
    t = res.trials
    assert res.n_trials == 300
    # every encoding is canonical
    assert np.array_equal(space.canonicalize(t["X"]), t["X"])
    # the front is the exact non-dominated set of the feasible trials (one per trade-off)
    feas = t["feasible"]
    assert (feas == ((t["latency_ms"] <= 150) & (t["memory_mb"] <= 110))).all()
    idx = np.flatnonzero(feas)
    bf = brute_front(t["latency_ms"][idx], t["objective"][idx])
    want = sorted(zip(t["latency_ms"][idx][bf].round(9), t["objective"][idx][bf]))
    got = sorted((round(r["latency_ms"], 9), r["objective"]) for r in res.front)
    assert got == want
    lats = [r["latency_ms"] for r in res.front]
    assert lats == sorted(lats)
    for r in res.front:
        assert r["latency_ms"] <= 150 and r["memory_mb"] <= 110
        assert r["objective"] == r["macs"]  # the default objective is the MAC proxy


@pytest.mark.slow
def test_outputs(nb201_run):
    res, out = nb201_run
    space = load_space(NB201)
    names = sorted(p.name for p in out.iterdir())
    n = len(res.front)
    assert names == sorted(["trials.csv", "pareto.csv", "pareto.json", "pareto.png", "pareto.html",
                            *[f"arch-{i:03d}.yaml" for i in range(n)]])
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no temporary files left
    rows = list(csv.DictReader(open(out / "trials.csv")))
    assert len(rows) == 300 and sum(int(r["on_front"]) for r in rows) == n
    prow = list(csv.DictReader(open(out / "pareto.csv")))
    doc = json.load(open(out / "pareto.json"))
    assert doc["objective"]["name"] == "macs" and "capacity proxy" in doc["objective"]["description"]
    assert doc["constraints"] == {"latency_ms": 150.0, "memory_mb": 110.0}
    assert len(prow) == len(doc["front"]) == n
    oracle = Oracle(space, DEVICE)
    for i, (r, j) in enumerate(zip(prow, doc["front"])):
        assert r["id"] == j["id"] == f"arch-{i:03d}"
        assert [int(v) for v in r["encoding"].split()] == j["encoding"]
        assert float(r["latency_ms"]) == pytest.approx(j["latency_ms"], rel=1e-5)
        for key in ("latency_ms", "memory_mb", "params", "macs", "objective", "choices", "trial"):
            assert key in j
        # decoded choices name the option values of the genes that matter
        x = np.array(j["encoding"])
        assert j["choices"] == {g.name: g.options[x[k]] for k, g in enumerate(space.genes)}  # all 6 edges matter
        # the YAML is a concrete model that analyze accepts and that prices the same
        m = load_model(out / j["file"])
        a = analyze(m)
        assert a["totals"]["macs"] == j["macs"] and a["totals"]["params"] == j["params"]
        c = Oracle(m, DEVICE).evaluate(np.zeros((1, m.n_genes), dtype=np.int64))
        assert c["latency_ms"][0] == pytest.approx(j["latency_ms"], rel=1e-9)
        assert c["latency_ms"][0] == pytest.approx(oracle.evaluate(x)["latency_ms"][0], rel=1e-12)
    png = (out / "pareto.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    html = (out / "pareto.html").read_text()
    assert "<svg" in html and "<script>" in html and '"arch-000"' in html
    for bad in ("<script src", "<link", "@import", "https://", "http://cdn", "fetch(", "XMLHttpRequest"):
        assert bad not in html
    assert set(__import__("re").findall(r"https?://[^\s\"'<>]+", html)) == {"http://www.w3.org/2000/svg"}  # a name only


@pytest.mark.slow
def test_mobile_front_latency_rechecked_with_predict(tmp_path, run_cli):
    """The acceptance check on spaces/mobile.yaml at 50 ms, on fewer trials: every front member's
    latency, recomputed by `augur-nas predict` from its arch-NNN.yaml, is within the limit."""
    from augur_nas.cli.predict import predict

    res = search(MOBILE, DEVICE, latency_ms="50ms", trials=1500, seed=3, out=str(tmp_path))
    assert res.front
    for r in res.front:
        p = predict(str(tmp_path / r["file"]), DEVICE)
        assert p["latency_ms"] <= 50.0
        assert p["latency_ms"] == pytest.approx(r["latency_ms"], rel=1e-9)
        assert p["memory_mb"] == pytest.approx(r["memory_mb"], rel=1e-9)
    # and through the command line for one of them
    cp = run_cli("predict", tmp_path / "arch-000.yaml", "--device", DEVICE, "--json")
    assert cp.returncode == 0, cp.stderr
    assert json.loads(cp.stdout)["latency_ms"] <= 50.0


@pytest.mark.slow
def test_batches_one_oracle_call_per_batch(monkeypatch):
    calls = []
    orig = Oracle.evaluate

    def counting(self, X, batch=None):
        calls.append(len(np.atleast_2d(X)))
        return orig(self, X, batch)

    monkeypatch.setattr(Oracle, "evaluate", counting)
    res = search(NB201, DEVICE, trials=120, seed=0, sampler="nsga2")
    assert res.n_trials == 120
    # 30 + 30 + 30 + 30 (NSGA-II's population) during the search, then once for the table of all trials
    assert calls == [30, 30, 30, 30, 120]
    calls.clear()
    search(NB201, DEVICE, trials=300, seed=0, sampler="random")
    assert calls == [256, 44, 300]


@pytest.mark.slow
def test_samplers_and_seed_reproducible():
    a = search(NB201, DEVICE, trials=60, seed=7, sampler="tpe")
    b = search(NB201, DEVICE, trials=60, seed=7, sampler="tpe")
    assert np.array_equal(a.trials["X"], b.trials["X"])
    r = search(NB201, DEVICE, trials=60, seed=7, sampler="random")
    assert r.n_trials == 60 and r.meta["sampler"] == "random"


@pytest.mark.slow
def test_exhaustive_is_the_exact_front(tmp_path):
    space = load_space(NB201)
    res = search(NB201, DEVICE, sampler="exhaustive", latency_ms=200, out=str(tmp_path))
    assert res.n_trials == space.size == 15625
    c = Oracle(space, DEVICE).evaluate(space.enumerate())
    feas = c["latency_ms"] <= 200
    assert res.n_feasible == int(feas.sum())
    idx = np.flatnonzero(feas)
    bf = idx[brute_front(c["latency_ms"][idx], c["macs"][idx])]
    assert sorted((round(r["latency_ms"], 9), r["macs"]) for r in res.front) == \
        sorted(zip(c["latency_ms"][bf].round(9), c["macs"][bf]))
    rows = list(csv.DictReader(open(tmp_path / "trials.csv")))
    assert len(rows) == 15625  # a space this small is written whole
    # a sampled search never beats the exact front
    s = search(NB201, DEVICE, trials=200, seed=0, latency_ms=200)
    for r in s.front:
        assert not any(f["latency_ms"] <= r["latency_ms"] and f["macs"] >= r["macs"] and
                       (f["latency_ms"] < r["latency_ms"] or f["macs"] > r["macs"]) for f in s.front)
        assert any(f["latency_ms"] <= r["latency_ms"] + 1e-9 and f["macs"] >= r["macs"] for f in res.front)


def test_exhaustive_refuses_big_spaces():
    with pytest.raises(Exception, match="more than the 10,000,000"):
        search(MOBILE, DEVICE, sampler="exhaustive")


# ------------------------------------------------------------------------------------------- user objectives


def _objective_module(tmp_path, body):
    mod = tmp_path / "my_objective_mod.py"
    mod.write_text(textwrap.dedent(body))
    return mod


@pytest.mark.slow
def test_user_objective_called_only_for_feasible(tmp_path, monkeypatch):
    log = tmp_path / "calls.jsonl"
    _objective_module(tmp_path, f"""
        import json
        def score(arch):
            with open({str(log)!r}, "a") as f:
                f.write(json.dumps(arch) + "\\n")
            return float(len(json.dumps(arch)))  # any deterministic number
        """)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("my_objective_mod", None)
    res = search(NB201, DEVICE, latency_ms="100ms", trials=150, seed=2, objective="my_objective_mod:score",
                 out=str(tmp_path / "o"))
    t = res.trials
    assert 0 < res.n_feasible < 150  # both kinds were seen
    calls = [json.loads(line) for line in open(log)]
    n_feasible_distinct = len(np.unique(t["X"][t["feasible"]], axis=0))
    assert len(calls) == n_feasible_distinct  # once per feasible architecture, never for an infeasible one
    from augur_nas import load_space_dict

    for arch in calls:
        m = load_space_dict(arch)
        lat = Oracle(m, DEVICE).evaluate(np.zeros((1, m.n_genes), dtype=np.int64))["latency_ms"][0]
        assert lat <= 100
    assert np.isnan(t["objective"][~t["feasible"]]).all()
    assert np.isfinite(t["objective"][t["feasible"]]).all()
    for r in res.front:
        assert r["objective"] != r["macs"]
    doc = json.load(open(tmp_path / "o" / "pareto.json"))
    assert doc["objective"]["name"] == "my_objective_mod:score" and not doc["objective"]["builtin"]


@pytest.mark.slow
def test_user_objective_errors_exit_2(tmp_path, run_cli):
    _objective_module(tmp_path, """
        def boom(arch):
            raise ValueError("no accuracy for you")
        def text(arch):
            return "high"
        def inf(arch):
            return float("inf")
        """)
    for fn, needle in (("boom", "raised ValueError: no accuracy for you"), ("text", "must return a number"),
                       ("inf", "finite number")):
        cp = run_cli("search", NB201, "--device", DEVICE, "--trials", "30", "--objective", f"my_objective_mod:{fn}",
                     "--out", tmp_path / "o", cwd=tmp_path)
        assert cp.returncode == 2, cp.stderr
        assert needle in cp.stderr and "Traceback" not in cp.stderr
    # a file path works too
    cp = run_cli("search", NB201, "--device", DEVICE, "--trials", "30", "--objective",
                 f"{tmp_path / 'my_objective_mod.py'}:boom", "--out", tmp_path / "o")
    assert cp.returncode == 2 and "no accuracy for you" in cp.stderr


@pytest.mark.slow
def test_callable_objective_api():
    seen = []

    def depth(arch):
        seen.append(arch)
        return float(len(arch["layers"]))

    res = search(NB201, DEVICE, trials=50, seed=0, objective=depth)
    assert seen and res.front and all(r["objective"] == float(len(seen[0]["layers"])) for r in res.front)


# ------------------------------------------------------------------------------------------- nothing feasible


@pytest.mark.slow
def test_impossible_constraints_name_the_closest(tmp_path, run_cli):
    out = tmp_path / "o"
    out.mkdir()
    (out / "pareto.csv").write_text("stale")
    (out / "arch-000.yaml").write_text("stale")
    cp = run_cli("search", NB201, "--device", DEVICE, "--latency", "5ms", "--params", "10K", "--trials", "100",
                 "--seed", "0", "--out", out)
    assert cp.returncode == 2
    err = cp.stderr
    assert "nothing feasible" in err and "closest" in err and "latency" in err and "params" in err
    assert err.count("[") == 3  # three closest encodings
    assert not (out / "pareto.csv").exists() and not (out / "arch-000.yaml").exists()  # no stale front
    assert (out / "trials.csv").exists()
    with pytest.raises(ConstraintError, match="all enumerated"):
        search(NB201, DEVICE, sampler="exhaustive", latency_ms="5ms")


# ------------------------------------------------------------------------------------------- storages


@pytest.mark.slow
def test_journal_resume_and_mismatch(tmp_path):
    j = str(tmp_path / "study.log")
    a = search(NB201, DEVICE, trials=60, seed=0, storage=j, study_name="s")
    assert a.n_trials == 60
    b = search(NB201, DEVICE, trials=40, seed=1, storage=f"journal:{j}", study_name="s")
    assert b.n_trials == 100 and b.meta["trials_this_run"] == 40
    nums = sorted(b.trials["number"].tolist())
    assert nums == list(range(100))
    with pytest.raises(ConstraintError, match="different constraints"):
        search(NB201, DEVICE, trials=10, storage=j, study_name="s", latency_ms=100)
    with pytest.raises(ConstraintError, match="different space"):
        search(SPACES / "resnet.yaml", DEVICE, trials=10, storage=j, study_name="s")


@pytest.mark.slow  # worker processes on shared storages: `pytest -m "not slow"` leaves it out
def test_sqlite_and_journal_workers(tmp_path):
    db = f"sqlite:///{tmp_path / 's.db'}"
    r = search(NB201, DEVICE, trials=30, seed=0, storage=db)
    assert r.n_trials == 30 and r.meta["storage"] == db
    r = search(NB201, DEVICE, trials=80, seed=0, storage=f"journal:{tmp_path / 'w.log'}", workers=2)
    nums = r.trials["number"].tolist()
    assert r.meta["trials_this_run"] >= 80 and len(nums) == len(set(nums))
    assert set(r.trials["state"].tolist()) == {"COMPLETE"}


# ------------------------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_keeps_what_was_found(tmp_path):
    out = tmp_path / "o"
    p = subprocess.Popen([sys.executable, "-m", "augur_nas.cli", "search", MOBILE_SMALL, "--device", DEVICE,
                          "--trials", "1000000", "--progress", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # wait until the progress bar shows finished trials, then press Ctrl-C
    buf, t0 = b"", time.time()
    os.set_blocking(p.stderr.fileno(), False)
    import re

    while time.time() - t0 < 60:
        try:
            chunk = p.stderr.read()
        except (BlockingIOError, TypeError):
            chunk = None
        if chunk:
            buf += chunk
        m = re.findall(rb"\s(\d+)/1000000", buf)
        if m and int(m[-1]) >= 100:
            break
        assert p.poll() is None, buf.decode(errors="replace")
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    os.set_blocking(p.stderr.fileno(), True)
    stdout, stderr = p.communicate(timeout=60)
    assert p.returncode == 130, (stdout.decode(), stderr.decode())
    assert b"interrupted" in stderr
    doc = json.load(open(out / "pareto.json"))
    assert doc["interrupted"] is True and 100 <= doc["n_trials"] < 1000000
    assert len(list(csv.DictReader(open(out / "trials.csv")))) >= doc["n_trials"]
    assert (out / "pareto.png").exists() and (out / "arch-000.yaml").exists()
    assert b"arch-000" in stdout  # the summary table was printed


@pytest.mark.slow
def test_cli_summary_and_default_out(tmp_path, run_cli):
    cp = run_cli("search", NB201, "--device", DEVICE, "--trials", "100", "--seed", "0", "--latency", "0.2s",
                 cwd=tmp_path)
    assert cp.returncode == 0, cp.stderr
    out = tmp_path / "augur-out" / "nb201-tk1-gpu"
    assert (out / "pareto.csv").exists()
    assert "latency ms" in cp.stdout and "arch-000" in cp.stdout and "capacity proxy" in cp.stdout
    n_front = len(list(csv.DictReader(open(out / "pareto.csv"))))
    assert f"front: {n_front} architectures" in cp.stdout
    assert math.isfinite(json.load(open(out / "pareto.json"))["elapsed_s"])


def test_an_untagged_running_trial_left_by_a_killed_worker_is_failed(monkeypatch):
    """A worker killed between asking for a trial and tagging it leaves a RUNNING trial with no
    tag: after the grace period the run marks it failed; a tagged live one is not touched."""
    import optuna
    from optuna.trial import TrialState

    from augur_nas.search import _study

    monkeypatch.setattr(_study, "UNTAGGED_GRACE_S", 0.2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    orphan = study.ask()
    live = study.ask()
    live.set_user_attr(_study.WORKER_ATTR, "elsewhere:1")
    assert _study.fail_untagged(study) == 1
    states = {t.number: t.state for t in study.get_trials(deepcopy=False)}
    assert states[orphan.number] == TrialState.FAIL and states[live.number] == TrialState.RUNNING
