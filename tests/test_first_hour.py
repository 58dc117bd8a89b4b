"""Issue 17's leftovers: `export -o` checked first, decoded blocks named by stage and index,
option labels in optuna-dashboard, the storage-speed script."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from augur_nas import Oracle, load_space
from augur_nas.measure._residual_fit import arch_hash
from augur_nas.profile import load_profile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S = os.path.join(ROOT, "spaces")


def cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "augur_nas.cli", *args], capture_output=True, text=True, cwd=cwd,
                       env=env, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


# ------------------------------------------------------------------------------ 1. export -o first

@pytest.fixture
def slow_factory(tmp_path):
    """A model factory file that leaves a marker when it is imported: export must refuse a bad -o
    before it loads the model at all."""
    marker = tmp_path / "loaded"
    f = tmp_path / "slowmodel.py"
    f.write_text(f"open({str(marker)!r}, 'w').close()\nimport time\ntime.sleep(5)\n\ndef build():\n    raise SystemExit(3)\n")
    return f"{f}:build", marker


@pytest.mark.parametrize("kind", ["proc", "folder", "under_a_file"])
def test_export_output_checked_before_any_work(tmp_path, slow_factory, kind):
    model, marker = slow_factory
    afile = tmp_path / "afile"
    afile.write_text("x")
    bad = {"proc": "/proc/nope", "folder": str(tmp_path), "under_a_file": str(afile / "m.onnx")}[kind]
    t0 = time.monotonic()
    r = cli("export", model, "-o", bad)
    took = time.monotonic() - t0
    assert r.returncode == 2, r.stderr
    assert bad in r.stderr and r.stderr.count("\n") == 1  # one paragraph naming the path
    assert not marker.exists()  # the model was never loaded
    assert took < 4.5  # under the factory's sleep; about 0.5 s on a quiet machine
    assert not os.path.exists("/proc/nope")


def test_export_calibration_set_folder_checked(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("x")
    for bad, words in (("/proc/nope", "cannot write results into --calibration-set /proc/nope"),
                       (str(afile), "is an existing file, not a folder")):
        r = cli("export", "--calibration-set", bad)
        assert r.returncode == 2 and words in r.stderr


def test_export_good_output_still_written(tmp_path):
    out = tmp_path / "new" / "nin.onnx"  # a missing folder is created, as for search --out
    r = cli("export", f"{S}/zoo/nin.yaml", "-o", str(out))
    assert r.returncode == 0 and out.stat().st_size > 1000 and f"wrote {out}" in r.stdout


# ------------------------------------------------------------------------------ 2. decoded block names

def _stage_blocks(spec):
    return {e["stage"]["name"]: [next(iter(b.values()))["name"] for b in e["stage"]["blocks"]]
            for e in spec["layers"] if "stage" in e}


@pytest.mark.parametrize("space_name", ["mobile", "fbnet", "ofa_mbv3"])
def test_decoded_blocks_are_named_by_index(space_name):
    space = load_space(f"{S}/{space_name}.yaml")
    for x in space.sample(3, seed=5):
        blocks = _stage_blocks(space.decode_spec(x))
        assert blocks and all(names == [f"b{i}" for i in range(len(names))] for names in blocks.values())


def test_decoded_file_has_stage_block_layer_names_and_the_same_figures(tmp_path):
    space = load_space(f"{S}/mobile.yaml")
    X = space.sample(4, seed=3)
    for device in ("tk1-gpu", "x86-2core-ort"):
        want = Oracle(space, device).evaluate(X, breakdown=False)
        for i, x in enumerate(X):
            path = tmp_path / f"c{i}.yaml"
            path.write_text(space.decode_yaml(x))
            model = load_space(str(path))
            got = Oracle(model, device).evaluate(np.zeros((1, 0), dtype=np.int64), breakdown=False)
            for k in ("latency_ms", "memory_mb", "macs", "params"):
                assert got[k][0] == pytest.approx(want[k][i], rel=1e-12), (device, i, k)
    from augur_nas import analyze

    names = [layer["name"] for layer in analyze(load_space(str(tmp_path / "c0.yaml")))["layers"]]
    assert len(names) == len(set(names))
    assert "s2.b0.dw" in names and "s3.b1.dw" in names and not any("mbconv0" in n for n in names)


@pytest.mark.slow
def test_decoded_file_at_the_cli(tmp_path):
    out = tmp_path / "d.yaml"
    assert cli("space", f"{S}/mobile.yaml", "--decode", "1", "-o", str(out)).returncode == 0
    assert "mbconv0" not in out.read_text() and "name: b1" in out.read_text()
    r = cli("predict", str(out), "--device", "tk1-gpu")
    assert r.returncode == 0 and "s3.b1.dw " in r.stdout
    r = cli("analyze", str(out))
    assert r.returncode == 0 and "s3.b1.project " in r.stdout


def test_files_decoded_before_still_load(tmp_path):
    """A file written by an older decode (every block `mbconv0`) loads with its old layer names and figures."""
    space = load_space(f"{S}/mobile.yaml")
    x = space.sample(2, seed=9)[1]
    old = space.decode_yaml(x, legacy_names=True)
    assert "name: b1" not in old and old.count("name: mbconv0") > 5
    path = tmp_path / "old.yaml"
    path.write_text(old)
    from augur_nas import analyze

    model = load_space(str(path))
    names = [layer["name"] for layer in analyze(model)["layers"]]
    assert "s3.1.mbconv0.dw" in names
    a = Oracle(space, "tk1-gpu").evaluate(x[None], breakdown=False)["latency_ms"][0]
    b = Oracle(model, "tk1-gpu").evaluate(np.zeros((1, 0), dtype=np.int64), breakdown=False)["latency_ms"][0]
    assert a == pytest.approx(b, rel=1e-12)


def test_blocks_named_by_the_yaml_keep_their_names_and_repeated_names_their_index(write):
    spec = {"name": "t", "input": {"channels": 3, "resolution": 32}, "layers": [
        {"stage": {"name": "s", "blocks": [{"conv": {"out": 8, "kernel": 3, "name": "first"}},
                                           {"conv": {"out": 8, "kernel": 3, "name": "second"}}]}},
        {"stage": {"name": "r", "blocks": [{"conv": {"out": 8, "kernel": 3, "name": "c"}},
                                           {"conv": {"out": 8, "kernel": 3, "name": "c"}}]}}]}
    from augur_nas import analyze

    model = load_space(str(write("t.yaml", yaml.safe_dump(spec))))
    names = [layer["name"] for layer in analyze(model)["layers"]]
    assert names == ["s.first", "s.second", "r.0.c", "r.1.c"]
    assert _stage_blocks(model.decode_spec(np.zeros(0, dtype=np.int64))) == {"s": ["first", "second"], "r": ["c", "c"]}


@pytest.mark.slow
def test_architecture_hashes_stored_in_the_shipped_profile_still_match():
    """validate recognises the residual's training networks by a hash of their decoded YAML; the
    shipped x86-2core-ort profile's 250 hashes were taken with the old block names."""
    trained = load_profile("x86-2core-ort").residual.trained
    stored = set(trained["architectures"])
    for path in trained["spaces"]:
        space = load_space(os.path.join(ROOT, path))
        X = space.sample(trained["samples_per_space"][path], seed=trained["seed"])
        assert all(arch_hash(space.decode(x)) in stored for x in X), path


# ------------------------------------------------------------------------------ 3. dashboard labels

MOBILE_SMALL = os.path.join(S, "mobile_small.yaml")


def test_option_labels_are_the_options_where_optuna_can_tell_them_apart():
    from augur_nas.search._params import option_labels
    from augur_nas.space import GeneInfo

    assert option_labels(GeneInfo("k", (3, 5, 7))) == [3, 5, 7]
    assert option_labels(GeneInfo("se", (0, 0.25))) == [0, 0.25]
    assert option_labels(GeneInfo("a", ("relu", "swish"))) == ["relu", "swish"]
    assert option_labels(GeneInfo("x", (1, True, 2.5))) == ["1", "True", "2.5"]  # 1 == True for Optuna
    assert option_labels(GeneInfo("y", (1, "1"))) == [1, "1"]
    assert option_labels(GeneInfo("z", (1, 1.0, "1"))) == ["0: 1", "1: 1.0", "2: 1"]


@pytest.mark.slow
def test_a_new_study_stores_option_labels(tmp_path):
    import optuna

    from augur_nas.search import search

    url = f"sqlite:///{tmp_path}/s.db"
    res = search(MOBILE_SMALL, "tk1-gpu", latency_ms=200, trials=40, seed=0, storage=url, study_name="s",
                 sampler="nsga2")
    space = load_space(MOBILE_SMALL)
    study = optuna.load_study(study_name="s", storage=url)
    assert study.user_attrs["augur_nas"]["params"] == "option labels"
    names = space.gene_names
    by_number = dict(zip(res.trials["number"].tolist(), res.trials["X"].tolist()))
    for t in study.trials:
        for g, n in enumerate(names):
            assert t.distributions[n].choices == tuple(space.genes[g].options)
            assert t.params[n] in space.genes[g].options
        x = [space.genes[g].options.index(t.params[n]) for g, n in enumerate(names)]
        assert space.canonicalize(np.array([x]))[0].tolist() == by_number[t.number]
    kernels = {t.params["layers[1].stage[0].mbconv.kernel"] for t in study.trials}
    assert kernels <= {3, 5, 7} and len(kernels) > 1  # the dashboard shows 3/5/7, not 0/1/2


def _old_study(url, space, n: int):
    """A study as augur-nas wrote it before the labels: option indices, a signature without "params"."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    study = optuna.create_study(storage=url, study_name="old", directions=["minimize", "maximize"])
    study.set_user_attr("augur_nas", {"space": space.name, "genes": [[g.name, g.size] for g in space.genes],
                                      "device": "tk1-gpu", "objective": "macs",
                                      "constraints": {"latency_ms": 200.0}, "batch": 1})
    dists = {g.name: CategoricalDistribution(list(range(g.size))) for g in space.genes}
    oracle = Oracle(space, "tk1-gpu")
    for _ in range(n):
        t = study.ask(dists)
        x = [t.params[g.name] for g in space.genes]
        c = oracle.evaluate(space.canonicalize(np.array([x])), breakdown=False)
        t.set_constraint("latency_ms", float(c["latency_ms"][0] / 200.0 - 1))
        study.tell(t, [float(c["latency_ms"][0]), float(c["macs"][0])])
    return study


@pytest.mark.slow
def test_a_study_from_before_the_labels_resumes_with_its_indices(tmp_path):
    import optuna

    from augur_nas.search import search

    url = f"sqlite:///{tmp_path}/old.db"
    space = load_space(MOBILE_SMALL)
    _old_study(url, space, 12)
    said = []
    res = search(MOBILE_SMALL, "tk1-gpu", latency_ms=200, trials=30, seed=1, storage=url, study_name="old",
                 sampler="nsga2", log=said.append)
    assert res.n_trials == 42 and any("resuming study 'old'" in m for m in said)
    study = optuna.load_study(study_name="old", storage=url)
    assert "params" not in study.user_attrs["augur_nas"]  # untouched: older augur-nas can still resume it
    for t in study.trials:
        for g in space.genes:
            assert t.distributions[g.name].choices == tuple(range(g.size))
    # the trials' encodings are the stored indices
    by_number = dict(zip(res.trials["number"].tolist(), res.trials["X"].tolist()))
    t = study.trials[-1]
    assert space.canonicalize(np.array([[t.params[g.name] for g in space.genes]]))[0].tolist() == by_number[t.number]
    # changing its limits keeps the indices, now said in its signature
    search(MOBILE_SMALL, "tk1-gpu", latency_ms=150, trials=10, seed=2, storage=url, study_name="old",
           sampler="random", change_limits=True)
    study = optuna.load_study(study_name="old", storage=url)
    assert study.user_attrs["augur_nas"]["params"] == "option indices" and len(study.trials) == 52
    assert study.trials[-1].distributions[space.gene_names[0]].choices == tuple(range(space.genes[0].size))


def test_labels_do_not_change_what_the_samplers_propose():
    """The samplers work on the choices' indices: a study with labels proposes the same candidates
    as one with indices (same seed), so fronts of seeded searches are unchanged."""
    import optuna

    from augur_nas.search._params import INDICES, LABELS, GeneParams

    space = load_space(MOBILE_SMALL)
    got = {}
    for mode in (LABELS, INDICES):
        gp = GeneParams(space, mode)
        study = optuna.create_study(directions=["minimize", "maximize"],
                                    sampler=optuna.samplers.NSGAIISampler(population_size=8, seed=3))
        rows = []
        for i in range(40):
            t = study.ask(gp.dists)
            x = gp.encodings([t.params])[0]
            rows.append(x.tolist())
            study.tell(t, [float(x.sum()), float((x * np.arange(len(x))).sum())])
        got[mode] = rows
    assert got[LABELS] == got[INDICES]


# ------------------------------------------------------------------------------ 4. sqlite speed

@pytest.mark.slow
def test_sqlite_studies_use_the_write_ahead_log(tmp_path):
    """Optuna commits each parameter of a trial on its own; with SQLite's default rollback journal
    every commit syncs the disk (sqlite ran ~30x slower than in memory). The storage opens SQLite
    in WAL mode with synchronous=NORMAL, and the study is still read back whole by a new process."""
    import sqlite3

    from augur_nas.search import search
    from augur_nas.search._storage import make_storage

    db = tmp_path / "s.db"
    st = make_storage(f"sqlite:///{db}")
    with st.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    st.engine.dispose()
    search(MOBILE_SMALL, "tk1-gpu", latency_ms=200, trials=20, seed=0, storage=f"sqlite:///{db}", study_name="w",
           sampler="random")
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    r = cli("search", MOBILE_SMALL, "--device", "tk1-gpu", "--latency", "200ms", "--trials", "10", "--seed", "1",
            "--sampler", "random", "--storage", f"sqlite:///{db}", "--study-name", "w", "--out", str(tmp_path / "o"))
    assert r.returncode == 0 and "with 20 complete trials" in r.stdout + r.stderr
