"""The torch-CUDA profile's parts that run without a GPU: one-kernel grouped layers, the
asynchronous kernel timing, the overheads' fit, the GPU fingerprint, and the shipped H200 profile."""

from __future__ import annotations

import numpy as np
import pytest

from augur_nas import load_model, lower
from augur_nas.costmodel import LatencyModel, OpModel, PiecewiseGemm, latency_ms
from augur_nas import ProfileError
from augur_nas.fingerprint import check_fingerprint, compare, for_profile, machine_fingerprint, summary
from augur_nas.measure import _profile_other as po
from augur_nas.profile import load_profile, parse_profile

from conftest import ROOT, ZOO


def _model(one_kernel: bool) -> LatencyModel:
    # one GEMM costs a 0.01 ms floor plus 1e-9 ms per multiply-accumulate
    g = PiecewiseGemm.linear(c1=0.01, nmk=1e-9)
    kinds = {"conv": {"gemm": "conv"}, "dwconv": {"gemm": "conv"}}
    if one_kernel:
        kinds = {k: dict(v, one_kernel=True) for k, v in kinds.items()}
    return LatencyModel({"conv": g}, OpModel((0.0, 0.0)), kinds, 0.0)


def test_one_kernel_prices_a_grouped_layer_as_one_gemm():
    m = load_model(ZOO / "resnext50_32x4d.yaml")
    t = lower(m, np.zeros((1, 0), dtype=np.int64))
    per_group = _model(False).slot_times(t)[:, 0]
    one = _model(True).slot_times(t)[:, 0]
    ops, groups = np.array(t.ops), t.rows["groups"][:, 0]
    grouped = (ops == "conv") & (groups == 32)
    assert grouped.any()
    # 32 floors against one: the per-group pricing is many times the one-kernel one
    assert (per_group[grouped] > 8 * one[grouped]).all()
    # and one kernel of n * groups outputs costs what the dense model says of it
    s = np.flatnonzero(grouped)[0]
    r = t.rows
    dense = _model(False).gemm["conv"].predict(np.array([r["n"][s, 0] * 32.0]), np.array([r["m"][s, 0] * 1.0]),
                                               np.array([r["k"][s, 0] * 1.0]))
    assert one[s] == pytest.approx(float(dense[0]), rel=1e-9)
    # layers of one group are priced alike either way
    plain = (ops == "conv") & (groups == 1)
    assert np.allclose(per_group[plain], one[plain])
    # the fast path (segments) prices it the same way as the reference
    from augur_nas.models import load_space
    from augur_nas.oracle import Oracle
    from augur_nas.profile import Profile

    base = load_profile("x86-2core-ort")
    prof = Profile(name="g", description="", hardware=base.hardware, runtime="t", provenance={},
                   latency=_model(True), memory=base.memory)
    space = load_space(ROOT / "spaces" / "resnet.yaml")
    X = space.sample(16, seed=3)
    fast = Oracle(space, prof).evaluate(X, breakdown=False)["latency_ms"]
    ref = latency_ms(lower(space, X), prof)[0]
    assert np.allclose(fast, ref, rtol=1e-9)


def test_one_kernel_must_be_a_boolean():
    text = (ROOT / "augur_nas" / "device_profiles" / "tx1-cpu.yaml").read_text()
    assert "    dwconv: {gemm: dwconv}\n" in text
    good = parse_profile(text.replace("    dwconv: {gemm: dwconv}\n", "    dwconv: {gemm: dwconv, one_kernel: true}\n"), "p.yaml")
    assert good.latency.one_kernel("dwconv") and not good.latency.one_kernel("conv")
    bad = text.replace("    dwconv: {gemm: dwconv}\n", "    dwconv: {gemm: dwconv, one_kernel: 3}\n")
    with pytest.raises(ProfileError, match="one_kernel"):
        parse_profile(bad, "p.yaml")


def test_async_timing_synchronises_once_per_batch_of_calls():
    calls, syncs = [], []
    per_call = po.amortized(lambda: calls.append(1), target_s=0.005, sync=lambda: syncs.append(len(calls)))
    assert per_call > 0 and len(calls) > 20
    # two warm-up calls, then one batch: three synchronisations, never one per call
    assert len(syncs) == 3 and syncs[-1] == len(calls)
    calls.clear()
    po.amortized(lambda: calls.append(1), target_s=0.005)
    assert calls


def test_kernels_are_fitted_whole_for_one_kernel_and_per_group_otherwise():
    rng = np.random.default_rng(0)
    kt = {}
    for c in (16, 32, 96, 192, 384, 960):
        for kk in (9, 25, 49):
            for m in (49, 196, 784, 3136):
                kt[("dwconv", 1, m, kk, c, c)] = 0.012 + 2e-9 * c * m * kk * (1 + 0.01 * rng.standard_normal())
    for n in (16, 64, 256):
        for m in (49, 784):
            for k in (27, 576):
                kt[("conv", n, m, k, 1, k)] = 0.015 + 1e-9 * n * m * k
    whole, _ = po._fit_torch_kernels(kt, 1, one_kernel=True)
    per_group, _ = po._fit_torch_kernels(kt, 1, one_kernel=False)
    c, m, kk = 384.0, 784.0, 9.0
    truth = 0.012 + 2e-9 * c * m * kk
    assert float(whole["dwconv"].predict(np.array([c]), np.array([m]), np.array([kk]))[0]) == pytest.approx(truth, rel=0.1)
    # per group, the launch floor is spread over the channels
    assert float(per_group["dwconv"].predict(np.array([1.0]), np.array([m]), np.array([kk]))[0]) * c != \
        pytest.approx(truth, rel=0.1)
    kinds = po._kernel_kinds(whole, one_kernel=True)
    assert kinds["conv"]["one_kernel"] and kinds["dwconv"]["one_kernel"] and "one_kernel" not in kinds.get("fc", {})
    assert "one_kernel" not in po._kernel_kinds(per_group)["dwconv"]


def test_overheads_never_count_the_kernels_twice():
    L = np.array([20.0, 60, 120, 200, 90])
    K = np.array([0.3, 0.5, 0.4, 0.9, 0.6])
    # the layer count explains all: NNLS drops the kernels; the fallback keeps them as timed
    Y = 0.1 + 0.02 * L + K
    cal = po._Calibration(K, L, Y, [], [], [], {}, [], [])
    per_call, scale, per_layer, how = po._overheads(cal)
    pred = per_call + scale * K + per_layer * L
    assert np.allclose(pred, Y, rtol=0.02), how
    cal = po._Calibration(K, L, 0.05 + 1.3 * K + 0.001 * L, [], [], [], {}, [], [])
    per_call, scale, per_layer, how = po._overheads(cal)
    assert scale == pytest.approx(1.3, rel=0.05) and how.startswith("nnls of 1, K, L")


def test_gpu_fingerprint_is_compared_and_checked():
    prof = {"cpu_model": "Intel Xeon", "backend": "torch", "torch_device": "cuda", "threads": 1,
            "gpu_model": "NVIDIA H200", "gpu_memory_mb": 143155, "gpu_capability": "9.0", "cuda_runtime": "13.0",
            "cudnn": "91900"}
    assert check_fingerprint(prof, "p.yaml") == prof
    with pytest.raises(ProfileError, match="gpu_memory_mb"):
        check_fingerprint(dict(prof, gpu_memory_mb="lots"), "p.yaml")
    here = dict(prof, gpu_model="none")
    for k in ("gpu_memory_mb", "gpu_capability", "cuda_runtime", "cudnn"):
        here.pop(k)
    d = {x["key"]: x for x in compare(prof, here)}
    assert d["gpu_model"]["severity"] == "major" and d["gpu_model"]["machine"] == "none"
    d = {x["key"]: x for x in compare(prof, dict(prof, gpu_memory_mb=81559, cuda_runtime="12.4"))}
    assert d["gpu_memory_mb"]["severity"] == "minor" and d["cuda_runtime"]["severity"] == "major"
    assert summary(prof).startswith("NVIDIA H200 (host Intel Xeon)")
    # a CPU profile is not compared on GPU keys
    cpu = {"cpu_model": "x", "backend": "onnxruntime", "threads": 1}
    assert "gpu_model" not in for_profile(dict(machine_fingerprint(), gpu_model="none"), cpu)


def test_the_shipped_h200_profile_describes_a_gpu(run_cli):
    p = load_profile("h200-torch-cuda")
    fp = p.fingerprint
    assert fp["gpu_model"] == "NVIDIA H200" and fp["torch_device"] == "cuda" and fp["gpu_memory_mb"] > 100_000
    assert p.hardware["ram_mb"] == fp["gpu_memory_mb"] and p.hardware["unified_memory"] is False
    assert p.latency.one_kernel("conv") and p.latency.one_kernel("dwconv")
    assert p.fit["anchors"]["latency_ms"] and p.calibration["families"]
    # eager PyTorch at batch 1 on a GPU: tens of microseconds a layer, not the CPU's milliseconds
    t = lower(load_model(ZOO / "resnet50.yaml"), np.zeros((1, 0), dtype=np.int64))
    assert 1.0 < float(latency_ms(t, p)[0][0]) < 20.0
    # on a machine without that GPU, check says so and names the command that builds a CUDA profile
    r = run_cli("check", "--device", "h200-torch-cuda", "--time-s", "1", "--json")
    assert r.returncode == 0, r.stderr
    import json
    out = json.loads(r.stdout)
    if out["machine_fingerprint"].get("gpu_model") != "NVIDIA H200":
        assert not out["matches"] and any(d["key"] == "gpu_model" and d["severity"] == "major"
                                          for d in out["differences"])
    if out["machine_fingerprint"].get("gpu_model") == "none":  # the anchors cannot run: said, not an error
        assert "speed anchors not timed" in out["note"] and out["speed_factor"] is None
        r = run_cli("check", "--device", "h200-torch-cuda", "--no-timing")
        assert "--backend torch --torch-device cuda" in r.stdout


def test_batches_a_profile_was_not_measured_at_are_said_to_be_extrapolated(run_cli):
    import json

    net = str(ZOO / "resnet18.yaml")
    r = run_cli("predict", net, "--device", "h200-torch-cuda", "--batch", "1,8", "--json")
    assert r.returncode == 0, r.stderr
    assert "measured at batch 1" in json.loads(r.stdout)["batch_note"]
    r = run_cli("predict", net, "--device", "h200-torch-cuda", "--batch", "1,8")
    assert "note: `h200-torch-cuda` was measured at batch 1" in r.stdout
    # a profile with a batch model, and a reconstructed one, say nothing
    for device in ("x86-xeon-avx512-ort", "tk1-gpu"):
        r = run_cli("predict", net, "--device", device, "--batch", "1,8", "--json")
        assert "batch_note" not in json.loads(r.stdout), device


def test_every_memory_bound_kind_the_torch_sweep_timed_before_is_still_timed():
    # the kinds of the one-call sweep before the one-layer networks (softmax had been left out)
    before = {"batchnorm", "relu", "relu6", "sigmoid", "hswish", "hsigmoid", "swish", "tanh", "maxpool", "avgpool",
              "globalpool", "add", "mul", "concat", "softmax", "lrn"}
    timed = set(po.ONE_LAYER) | set(po._torch_op_functions(None))
    assert before <= timed
