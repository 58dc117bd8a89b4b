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


def test_architecture_hashes_stored_in_the_shipped_profile_still_match():
    """validate recognises the residual's training networks by a hash of their decoded YAML; the
    shipped x86-2core-ort profile's 250 hashes were taken with the old block names."""
    trained = load_profile("x86-2core-ort").residual.trained
    stored = set(trained["architectures"])
    for path in trained["spaces"]:
        space = load_space(os.path.join(ROOT, path))
        X = space.sample(trained["samples_per_space"][path], seed=trained["seed"])
        assert all(arch_hash(space.decode(x)) in stored for x in X), path
