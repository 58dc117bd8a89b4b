"""Issue 14 points 1 and 3: `augur-nas fit`, batch sweeps, thread settings, and their bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import augur_nas
from augur_nas import ConstraintError, ProfileError, load_profile, save_profile
from augur_nas._batch import parse_batches, parse_throughput
from augur_nas.models import load_model
from augur_nas.oracle import Oracle

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ZOO = os.path.join(ROOT, "spaces", "zoo")
SMALL = ["tk1-cpu", "tk1-gpu", "tx1-cpu", "tx1-gpu"]  # the small shipped profiles (no LightGBM to load)


def cli(*args):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "augur_nas.cli", *args], capture_output=True, text=True, env=env,
                       timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def _machine_profile(tmp_path, base: str, threads: int, name: str) -> str:
    """A profile of a made-up machine that says it describes ``threads`` intra-op threads."""
    d = load_profile(base).to_dict()
    d.update(format_version=2, name=name, provenance={"method": "measured by augur-nas profile (a test's copy)"},
             runtime_settings={"backend": "onnxruntime", "threads": threads, "batch": 1},
             fingerprint={"origin": "measured", "cpu_model": "Test CPU 9000", "logical_cores": 8,
                          "backend": "onnxruntime", "threads": threads})
    path = tmp_path / f"{name}.yaml"
    from augur_nas.profile import Profile

    save_profile(Profile.from_dict(d, str(path)), path)
    return str(path)


# --------------------------------------------------------------------------------------------- parsing

def test_batch_and_throughput_parsing():
    assert parse_batches("32,1,4,4") == (1, 4, 32)
    assert parse_batches(8) == (8,)
    assert parse_throughput("100/s") == 100.0 and parse_throughput("2/ms") == 2000.0
    assert parse_throughput("30") == 30.0 and parse_throughput(12.5) == 12.5
    for bad in ("0", "1,x", "", "1,,2", "-2", "2.5"):
        with pytest.raises(ConstraintError):
            parse_batches(bad)
    for bad in ("fast", "-3/s", "0/s", "nan", "100/h"):
        with pytest.raises(ConstraintError):
            parse_throughput(bad)


# --------------------------------------------------------------------------------------------- fit, API

def test_fit_model_side_by_side():
    rep = augur_nas.fit(os.path.join(ZOO, "resnet18.yaml"), latency_ms="100ms", throughput_ips="15/s",
                        devices=",".join(SMALL))
    assert rep.kind == "model" and [r.device for r in rep.rows] == SMALL
    model = load_model(os.path.join(ZOO, "resnet18.yaml"))
    x = np.zeros((1, model.n_genes), dtype=np.int64)
    for r in rep.rows:
        o = Oracle(model, r.device)
        assert r.latency_ms == pytest.approx(float(o.latency(x)[0]))
        assert r.memory_mb == pytest.approx(float(o.memory(x)[0]))
        assert r.provenance == "reconstructed" and r.threads is None and r.ram_mb > 0
        for p in r.curve:  # throughput = batch / latency
            assert p.throughput_ips == pytest.approx(p.batch * 1000.0 / p.latency_ms)
        if r.best_batch is not None:  # the best batch respects the latency limit and has the best throughput
            assert r.best_latency_ms <= 100.0
            within = [p.throughput_ips for p in r.curve if p.latency_ms <= 100.0 and p.memory_mb <= r.ram_mb]
            assert r.best_throughput_ips == pytest.approx(max(within))
        lat_head = (100.0 - r.latency_ms) / 100.0
        tp_head = (r.best_throughput_ips - 15.0) / 15.0
        assert r.margin_pct == pytest.approx(100.0 * min(lat_head, tp_head, (r.ram_mb - r.memory_mb) / r.ram_mb))
        assert r.fits == (r.latency_ms <= 100.0 and r.best_throughput_ips >= 15.0)
    by = {r.device: r for r in rep.rows}
    assert not by["tk1-cpu"].fits and by["tk1-cpu"].limiting == "latency_ms" and by["tk1-cpu"].best_batch is None
    assert by["tx1-gpu"].fits  # 48 ms, 20.8 images/s


def test_fit_best_batch_grows_without_a_latency_limit():
    rep = augur_nas.fit(os.path.join(ZOO, "mobilenet_v2.yaml"), devices="tk1-gpu", batches="1,2,4,8")
    r = rep.rows[0]
    assert [p.batch for p in r.curve] == [1, 2, 4, 8]
    assert r.best_throughput_ips == pytest.approx(max(p.throughput_ips for p in r.curve))
    # a latency limit below the batch-2 latency keeps the best batch at 1
    tight = augur_nas.fit(os.path.join(ZOO, "mobilenet_v2.yaml"), devices="tk1-gpu", batches="1,2,4,8",
                          latency_ms=r.curve[0].latency_ms * 1.5).rows[0]
    assert tight.best_batch == 1 and tight.fits


def test_fit_flags_memory_above_ram():
    # vgg16 at batch 16 needs more than tk1-gpu's 2048 MB (test_newcomer_cli): such batches are never the best
    r = augur_nas.fit(os.path.join(ZOO, "vgg16.yaml"), devices="tk1-gpu", batches="1,16,32").rows[0]
    over = [p for p in r.curve if p.memory_mb > r.ram_mb]
    assert over and r.best_batch not in {p.batch for p in over}
    # a memory limit below one image's memory: does not fit, memory is the limit
    r = augur_nas.fit(os.path.join(ZOO, "vgg16.yaml"), devices="tk1-gpu", memory_mb="100MB").rows[0]
    assert not r.fits and r.limiting == "memory_mb" and r.margin_pct < 0 and r.best_batch is None


def test_fit_space_counts_candidates():
    space = os.path.join(ROOT, "spaces", "mobile_small.yaml")
    rep = augur_nas.fit(space, latency_ms=60, devices="tx1-cpu,tx1-gpu", samples=200, seed=3)
    assert rep.kind == "space"
    X = augur_nas.load_space(space).sample(200, seed=3)
    for r in rep.rows:
        lat = Oracle(space, r.device).latency(X)
        mem = Oracle(space, r.device).memory(X)
        assert r.samples == 200 and r.n_fit == int(((lat <= 60) & (mem <= r.ram_mb)).sum())
        assert r.fit_fraction == pytest.approx(r.n_fit / 200)
        assert r.latency_ms_min == pytest.approx(float(lat.min()))
    assert 0 < rep.rows[0].n_fit < 200  # tx1-cpu: some of the sample under 60 ms, not all


def test_fit_threads_choose_the_machines_profile(tmp_path):
    one = _machine_profile(tmp_path, "tx1-cpu", 1, "testcpu-1t")
    _machine_profile(tmp_path, "tx1-gpu", 2, "testcpu-2t")
    model = os.path.join(ZOO, "squeezenet1_1.yaml")
    rep = augur_nas.fit(model, devices=one)
    assert rep.rows[0].device == "testcpu-1t" and rep.rows[0].threads == 1 and rep.rows[0].provenance == "measured"
    rep = augur_nas.fit(model, devices=one, threads=2)
    assert [r.device for r in rep.rows] == ["testcpu-2t"] and rep.rows[0].threads == 2 and rep.threads == 2
    x = np.zeros((1, load_model(model).n_genes), dtype=np.int64)
    assert rep.rows[0].latency_ms == pytest.approx(float(Oracle(model, "tx1-gpu").latency(x)[0]))
    with pytest.raises(ConstraintError, match=r"--threads 4: no profile describes 4 .*1, 2 thread"):
        augur_nas.fit(model, devices=one, threads=4)
    with pytest.raises(ConstraintError, match="does not say which thread count"):
        augur_nas.fit(model, devices="tk1-gpu", threads=1)


def test_fit_bad_devices_and_limits():
    m = os.path.join(ZOO, "squeezenet1_1.yaml")
    with pytest.raises(ProfileError, match="--devices: unknown device `nope`"):
        augur_nas.fit(m, devices="tk1-gpu,nope")
    with pytest.raises(ConstraintError, match="--throughput"):
        augur_nas.fit(m, devices="tk1-gpu", throughput_ips="fast")
    with pytest.raises(ConstraintError, match="batch"):
        augur_nas.fit(m, devices="tk1-gpu", batches=[0, 1])


def test_oracle_reports_threads():
    assert Oracle(os.path.join(ZOO, "squeezenet1_1.yaml"), "tk1-gpu").threads is None


# --------------------------------------------------------------------------------------------- CLI

def test_cli_fit_table_and_json():
    r = cli("fit", os.path.join(ZOO, "resnet18.yaml"), "--latency", "100ms", "--throughput", "15/s",
            "--devices", "tk1-gpu,tx1-gpu", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "model" and d["limits"] == {"latency_ms": 100.0, "throughput_ips": 15.0}
    rows = {x["device"]: x for x in d["devices"]}
    assert rows["tx1-gpu"]["fits"] is True and rows["tx1-gpu"]["provenance"] == "reconstructed"
    assert rows["tk1-gpu"]["best_throughput_ips"] == pytest.approx(1000.0 / rows["tk1-gpu"]["latency_ms"], rel=0.05)
    r = cli("fit", os.path.join(ZOO, "resnet18.yaml"), "--latency", "100ms", "--devices", "tk1-cpu,tx1-gpu")
    assert r.returncode == 0, r.stderr
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.startswith(("tk1-cpu", "tx1-gpu"))}
    assert " NO " in lines["tk1-cpu"] and " yes " in lines["tx1-gpu"] and "reconstructed" in lines["tx1-gpu"]


def test_cli_fit_space():
    r = cli("fit", os.path.join(ROOT, "spaces", "mobile_small.yaml"), "--latency", "60ms", "--devices", "tx1-cpu",
            "--samples", "50", "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["kind"] == "space" and d["devices"][0]["samples"] == 50


@pytest.mark.parametrize("args, words", [
    (["--throughput", "fast"], "--throughput 'fast'"),
    (["--throughput", "-3/s"], "is not positive"),
    (["--devices", "tk1-gpu,nope"], "unknown device `nope`"),
    (["--batch", "1,x"], "whole number"),
    (["--batch", "0"], "between 1 and"),
    (["--devices", "tk1-gpu", "--threads", "2"], "--threads 2: no profile describes 2"),
    (["--latency", "fast"], "--latency"),
])
def test_cli_fit_bad_input(args, words):
    r = cli("fit", os.path.join(ZOO, "squeezenet1_1.yaml"), *args)
    assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.slow
def test_cli_predict_batch_sweep(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "curve.png"
    r = cli("predict", os.path.join(ZOO, "squeezenet1_1.yaml"), "--device", "tk1-gpu", "--batch", "1,2,8",
            "--json", "--plot", str(png))
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert [p["batch"] for p in d["batches"]] == [1, 2, 8] and png.stat().st_size > 1000
    one = json.loads(cli("predict", os.path.join(ZOO, "squeezenet1_1.yaml"), "--device", "tk1-gpu", "--batch", "8",
                         "--json").stdout)
    assert d["batches"][2]["latency_ms"] == pytest.approx(one["latency_ms"])
    for p in d["batches"]:
        assert p["throughput_ips"] == pytest.approx(p["batch"] * 1000.0 / p["latency_ms"])
    r = cli("predict", os.path.join(ZOO, "squeezenet1_1.yaml"), "--device", "tk1-gpu", "--batch", "1,4")
    assert r.returncode == 0 and "images/s" in r.stdout and "ms / image" in r.stdout


@pytest.mark.parametrize("cmd", ["predict", "export", "measure"])
@pytest.mark.parametrize("batch, words", [("0", "between 1 and"), ("1,x", "whole number")])
def test_cli_bad_batch(tmp_path, cmd, batch, words):
    extra = {"predict": ["--device", "tk1-gpu"], "export": ["-o", str(tmp_path / "m.onnx")], "measure": ["--quick"]}
    r = cli(cmd, os.path.join(ZOO, "squeezenet1_1.yaml"), "--batch", batch, *extra[cmd])
    assert r.returncode == 2 and words in r.stderr and r.stderr.count("\n") == 1, r.stderr


@pytest.mark.slow
def test_export_batch_runs_in_onnxruntime(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    one, four = tmp_path / "b1.onnx", tmp_path / "b4.onnx"
    for path, b in ((one, "1"), (four, "4")):
        r = cli("export", os.path.join(ZOO, "shufflenet_v2_x0_5.yaml"), "--batch", b, "-o", str(path))
        assert r.returncode == 0, r.stderr
    s1 = ort.InferenceSession(str(one), providers=["CPUExecutionProvider"])
    s4 = ort.InferenceSession(str(four), providers=["CPUExecutionProvider"])
    assert s4.get_inputs()[0].shape == [4, 3, 224, 224]
    x = np.random.default_rng(0).random((4, 3, 224, 224), dtype=np.float32)
    y4 = s4.run(None, {"input": x})[0]  # the channel shuffles' reshapes follow the batch
    y1 = np.concatenate([s1.run(None, {"input": x[i:i + 1]})[0] for i in range(4)])
    assert y4.shape[0] == 4 and np.allclose(y4, y1, rtol=1e-4, atol=1e-4)
    r = cli("measure", str(one), "--batch", "4", "--quick", "--quiet")
    assert r.returncode == 2 and "takes a batch of 1" in r.stderr


def test_residual_ratio_is_that_of_one_image_at_any_batch():
    """The LightGBM residual is trained on single images: at batch N it corrects by one image's
    ratio (fed the batch's own time sums it drifted by ~1% from batch 1 to 32)."""
    pytest.importorskip("lightgbm")
    import copy

    prof = load_profile("x86-2core-ort")
    plain = copy.copy(prof)
    plain.residual = None
    model = load_model(os.path.join(ZOO, "resnet18.yaml"))
    x = np.zeros((1, model.n_genes), dtype=np.int64)
    with_r, without = Oracle(model, prof), Oracle(model, plain)
    ratios = [float(with_r.latency(x, b)[0] / without.latency(x, b)[0]) for b in (1, 8, 32)]
    assert ratios[0] != pytest.approx(1.0, abs=1e-3)  # the residual does correct resnet18
    assert ratios[1] == pytest.approx(ratios[0], rel=1e-3) and ratios[2] == pytest.approx(ratios[0], rel=1e-3)
    for b in (1, 32):  # the reference path (full layer table) agrees
        ref = with_r.evaluate(x, batch=b, reference=True)["latency_ms"][0]
        assert ref == pytest.approx(with_r.latency(x, b)[0], rel=1e-9)
