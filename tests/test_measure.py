"""The measurement protocol, the runners (ONNX Runtime, the torch interpreter), peak memory and
`augur-nas measure`, on tiny models (the real measurements are benchmarks in experiments/)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from augur_nas.measure import RuntimeSettings, half_noise, time_runners
from augur_nas.measure._protocol import Timing

from conftest import ROOT


pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TINY = """\
name: tiny
input: {channels: 3, resolution: 16}
layers:
  - conv_bn_act: {out: 8, kernel: 3, stride: 2}
  - mbconv: {out: 8, kernel: 3, expand: 2, se: 0.25}
  - globalpool: {mode: avg}
  - fc: {out: 10}
"""


@pytest.fixture()
def tiny(tmp_path):
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def _cli(*args, timeout=300):
    args = [str(a) for a in args]
    if args and args[0] == "measure":
        args.append("--max-wait-s=0")  # tests never wait for a quiet machine
    return subprocess.run([sys.executable, "-m", "augur_nas.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


# --------------------------------------------------------------------------------------------- protocol


def test_half_noise():
    assert half_noise([1, 1, 1, 1]) == 0
    assert half_noise([1, 1, 2, 2]) == pytest.approx(1 / 1.5)
    assert half_noise([10, 11, 10, 11, 10]) == pytest.approx(0.0)
    assert np.isnan(half_noise([3.0]))


class _Fake:
    """A runner whose run() costs a fixed amount of busy time; records the order it was called in."""

    def __init__(self, name, seconds, log):
        self.name, self.seconds, self.log = name, seconds, log

    def run(self):
        import time

        self.log.append(self.name)
        t = time.perf_counter() + self.seconds
        while time.perf_counter() < t:
            pass


@pytest.mark.slow
def test_protocol_interleaves_rounds_and_reports_median_and_noise():
    log = []
    runners = {"a": _Fake("a", 0.0005, log), "b": _Fake("b", 0.002, log), "c": _Fake("c", 0.001, log)}
    res = time_runners(runners, rounds=6, round_s=0.006, warmup_s=0.005, min_warmup=2, seed=3, warm_below_s=0,
                       quiet=None)
    assert set(res) == {"a", "b", "c"}
    for lab, t in res.items():
        assert isinstance(t, Timing) and len(t.rounds) == 6
        assert 0 <= t.contended <= 3  # rounds set aside while other processes were busy
        if t.contended == 0:
            assert t.median_ms == pytest.approx(float(np.median(t.rounds)))
            assert t.noise == pytest.approx(half_noise(t.rounds))
        assert t.runs == 6 * t.iters
        assert t.spread["min"] <= t.median_ms <= t.spread["max"]
    # more iterations for the faster network, each round's work about round_s
    assert res["a"].iters > res["b"].iters >= 1
    assert res["b"].median_ms == pytest.approx(2.0, rel=0.5)
    # interleaved: after the warm-up, the order of the networks changes between rounds
    timed = log[-sum(t.runs for t in res.values()):]
    blocks = [timed[0]] + [x for i, x in enumerate(timed[1:], 1) if x != timed[i - 1]]
    orders = {tuple(blocks[i:i + 3]) for i in range(0, len(blocks), 3)}
    assert len(orders) > 1


@pytest.mark.slow
def test_protocol_spreads_rounds_over_time_and_respects_a_budget():
    import time

    log = []
    t0 = time.perf_counter()
    res = time_runners({"a": _Fake("a", 0.0002, log)}, rounds=4, round_s=0.001, warmup_s=0.001, spread_s=0.6,
                       quiet=None)
    assert time.perf_counter() - t0 >= 0.55
    assert len(res["a"].rounds) == 4
    res = time_runners({"a": _Fake("a", 0.01, log)}, rounds=50, round_s=0.01, warmup_s=0.001, budget_s=0.05,
                       quiet=None)
    assert 2 <= len(res["a"].rounds) < 50


def test_settings_round_trip_and_validation():
    from augur_nas import MeasurementError

    s = RuntimeSettings()
    d = s.to_dict()
    assert d["threads"] == 1 and d["graph_optimization"] == "ORT_ENABLE_ALL" and d["provider"] == "CPUExecutionProvider"
    assert "version" in d
    assert RuntimeSettings.from_dict(d) == s
    assert RuntimeSettings.from_dict(d, threads=2).threads == 2
    with pytest.raises(MeasurementError, match="backend"):
        RuntimeSettings(backend="tvm")
    with pytest.raises(MeasurementError, match="graph optimization"):
        RuntimeSettings(graph_optimization="O3")


# --------------------------------------------------------------------------------------------- runners


@pytest.mark.slow  # real measurements: `pytest -m "not slow"` leaves it out
def test_measure_networks_latency_and_memory(tiny, tmp_path):
    from augur_nas.measure import measure_paths

    res = measure_paths([tiny], RuntimeSettings(), rounds=3, round_s=0.005, warmup_s=0.01, max_wait_s=0)
    (r,) = res
    assert r["label"] == "tiny"
    lat = r["latency"]
    assert lat["median_ms"] > 0 and lat["rounds"] == 3 and len(lat["round_medians_ms"]) == 3
    mem = r["memory"]
    assert mem["peak_rss_mb"] >= mem["base_rss_mb"] > 10
    assert mem["model_peak_mb"] == pytest.approx(mem["peak_rss_mb"] - mem["base_rss_mb"])


@pytest.mark.slow  # real measurements: `pytest -m "not slow"` leaves it out
def test_torch_interpreter_matches_onnxruntime(tiny, tmp_path):
    torch = pytest.importorskip("torch")
    from augur_nas.measure._runners import OrtRunner, TorchRunner, prepare

    zoo = ROOT / "spaces" / "zoo"
    nets = prepare([tiny, zoo / "nin.yaml"], str(tmp_path))
    for net in nets:
        ref = OrtRunner(net.onnx_path, RuntimeSettings(graph_optimization="ORT_DISABLE_ALL"))
        y0 = ref.run()[0]
        tr = TorchRunner(net.onnx_path, RuntimeSettings(backend="torch"))
        tr.x = torch.from_numpy(next(iter(ref.feed.values())))
        y1 = tr.run().numpy()
        assert y1.shape == y0.shape
        assert np.max(np.abs(y1 - y0)) <= 1e-4 * max(1.0, float(np.max(np.abs(y0))))


@pytest.mark.slow  # real measurements: `pytest -m "not slow"` leaves it out
def test_cli_measure_json(tiny):
    p = _cli("measure", tiny, "--rounds", "3", "--round-ms", "5", "--warmup-s", "0.01", "--spread-s", "0.2", "--json",
             "--quiet")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["settings"]["threads"] == 1 and out["settings"]["graph_optimization"] == "ORT_ENABLE_ALL"
    assert out["protocol"]["statistic"].startswith("median")
    (net,) = out["networks"]
    assert net["latency"]["median_ms"] > 0 and "noise" in net["latency"] and net["memory"]["peak_rss_mb"] > 0


@pytest.mark.slow  # real measurements: `pytest -m "not slow"` leaves it out
def test_cli_measure_text_and_torch_backend(tiny):
    p = _cli("measure", tiny, "--rounds", "2", "--round-ms", "2", "--warmup-s", "0.01", "--spread-s", "0",
             "--no-memory", "--quiet")
    assert p.returncode == 0, p.stderr
    assert "tiny" in p.stdout and "noise" in p.stdout and "median" in p.stdout
    try:
        import torch  # noqa: F401
    except ImportError:
        p = _cli("measure", tiny, "--backend", "torch", "--quiet")
        assert p.returncode == 2 and "torch" in p.stderr and "Traceback" not in p.stderr
        return
    p = _cli("measure", tiny, "--backend", "torch", "--rounds", "2", "--round-ms", "2", "--warmup-s", "0.01",
             "--spread-s", "0", "--no-memory", "--json", "--quiet")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["settings"]["backend"] == "torch" and out["networks"][0]["latency"]["median_ms"] > 0


def test_torch_backend_missing_is_one_clear_paragraph(tiny, monkeypatch, capsys):
    from augur_nas import cli

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` raises ImportError
    rc = cli.main(["measure", str(tiny), "--backend", "torch", "--quiet", "--max-wait-s", "0"])
    err = capsys.readouterr().err
    assert rc == 2
    # one paragraph: one line, naming the missing package, how to install it and the way around it
    assert err.startswith("augur-nas measure: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "`torch`" in err and "pip install" in err and "--backend onnxruntime" in err


def test_cli_measure_errors(tmp_path):
    p = _cli("measure", tmp_path / "missing.onnx", "--quiet")
    assert p.returncode == 2 and "Traceback" not in p.stderr and "missing.onnx" in p.stderr
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    p = _cli("measure", bad, "--quiet", "--no-memory")
    assert p.returncode == 2 and "Traceback" not in p.stderr


def test_round_effects_take_out_the_machines_common_drift():
    """log t[net, round] = net level + round factor + noise: the median polish recovers the round
    factors (centred), so dividing them out leaves each network's level and little noise."""
    from augur_nas.measure._protocol import round_effects

    rng = np.random.default_rng(1)
    levels = np.exp(rng.uniform(0, 4, 12))
    drift = np.exp(np.r_[np.zeros(8), np.full(8, np.log(1.4))])  # the machine 40 % slower halfway
    values = {f"n{i}": list(lv * drift * np.exp(rng.normal(0, 0.01, 16))) for i, lv in enumerate(levels)}
    keep = {k: np.ones(16, dtype=bool) for k in values}
    col = round_effects(values, keep)
    assert np.median(col) == pytest.approx(0.0, abs=1e-12)
    assert np.ptp(col[:8]) < 0.03 and np.ptp(col[8:]) < 0.03
    assert col[8:].mean() - col[:8].mean() == pytest.approx(np.log(1.4), abs=0.02)
    for i, lv in enumerate(levels):
        v = np.asarray(values[f"n{i}"])
        assert half_noise(v) > 0.3  # split halves disagree as they are ...
        assert half_noise(v / np.exp(col)) < 0.03  # ... and agree once the common drift is out


class _Machine:
    """A shared speed factor for fake runners (the whole machine slowing down)."""

    factor = 1.0


class _Slowed(_Fake):
    def close(self):
        pass

    def run(self):
        import time

        self.log.append(self.name)
        t = time.perf_counter() + self.seconds * _Machine.factor
        while time.perf_counter() < t:
            pass


@pytest.mark.slow
def test_protocol_corrects_common_drift_and_reports_the_raw_figures():
    log = []
    costs = {f"n{i}": 0.0004 * (1 + i % 4) for i in range(8)}
    runners = {k: _Slowed(k, c, log) for k, c in costs.items()}
    done = []

    def progress(r, tot, _):
        done.append(r)
        _Machine.factor = 2.0 if r >= tot // 2 else 1.0  # twice as slow for the second half
    try:
        res = time_runners(runners, rounds=8, round_s=0.003, warmup_s=0.002, min_warmup=2, seed=0, quiet=None,
                           contended=None, progress=progress)
    finally:
        _Machine.factor = 1.0
    for k, t in res.items():
        assert t.raw_noise is not None and t.raw_median_ms is not None
        assert t.raw_noise > 0.25  # the raw halves differ by about 2x (0.67 on a quiet machine)
        assert t.noise < t.raw_noise / 2
    # without enough networks to tell a common drift, nothing is corrected
    small = time_runners({k: runners[k] for k in list(runners)[:3]}, rounds=4, round_s=0.002, warmup_s=0.002,
                         quiet=None)
    assert all(t.raw_median_ms is None for t in small.values())


@pytest.mark.slow
def test_measure_networks_normalizes_by_references_timed_in_every_batch(monkeypatch):
    """On a machine running 1.5x slow, the references (timed with the networks) tell so, and the
    normalized latencies are the latencies at the references' speed."""
    from augur_nas.measure import _measure
    from augur_nas.measure._runners import Network

    log = []
    costs = {f"net{i}": 0.0005 * (1 + i % 3) for i in range(8)}
    refs = {"anchor_a": 0.0005, "anchor_b": 0.001}
    all_costs = {**costs, **refs}
    monkeypatch.setattr(_measure, "make_runner", lambda n, s: _Slowed(n.label, all_costs[n.label], log))
    monkeypatch.setattr(_measure, "require", lambda backend: None)
    nets = [Network(k, "/nonexistent.onnx") for k in all_costs]
    _Machine.factor = 1.5
    try:
        res = _measure.measure_networks(nets, RuntimeSettings(), rounds=4, round_s=0.004, warmup_s=0.002,
                                        memory=False, max_wait_s=0, references={k: 1e3 * v for k, v in refs.items()})
    finally:
        _Machine.factor = 1.0
    by = {r["label"]: r["latency"] for r in res}
    for k, c in costs.items():
        lat = by[k]
        assert lat["speed"] == pytest.approx(1.5, rel=0.3)
        assert lat["median_ms"] == pytest.approx(1.5e3 * c, rel=0.3)
        assert lat["normalized_ms"] == pytest.approx(1e3 * c, rel=0.25)


def test_multithreaded_sessions_get_time_to_park_before_their_block(monkeypatch):
    """A runner with ``settle_s`` (an ONNX Runtime session of several intra-op threads, whose
    workers spin after each run) is timed only after the protocol waited that long and ran it once
    untimed, so the spinning workers of the session timed before it do not take its cores."""
    from augur_nas.measure import _protocol
    from augur_nas.measure._runners import SPIN_SETTLE_S

    slept = []
    real_sleep = _protocol.time.sleep
    monkeypatch.setattr(_protocol.time, "sleep", lambda s: slept.append(s) or real_sleep(min(s, 0.001)))
    log = []
    slow = _Fake("a", 0.2, log)  # above warm_below_s: without settle_s it gets no untimed run
    slow.settle_s = 0.05
    other = _Fake("b", 0.2, log)
    time_runners({"a": slow, "b": other}, rounds=2, round_s=0.001, warmup_s=0.0, min_warmup=1, quiet=None,
                 contended=None, warm_below_s=0.05)
    assert slept.count(0.05) == 2  # once before each of a's two blocks, never before b's
    assert log.count("a") == 1 + 2 * 2 and log.count("b") == 1 + 2  # a: warm-up, then untimed + timed per round
    assert SPIN_SETTLE_S >= 0.02  # 20 ms let the workers park on this Xeon; the margin is deliberate
