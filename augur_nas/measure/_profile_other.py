"""``augur-nas profile --backend numpy`` and ``--backend torch``.

numpy is the paper's method (Lu et al. 2017): a network is a sum of BLAS GEMM times. The sweep
times ``numpy.matmul`` (float32, this machine's BLAS) on the grid of n, m, k, a depthwise conv as
a batch of tiny GEMMs (one per channel, as Caffe runs a grouped convolution), a fully connected
layer as a matrix-vector product, and element-wise numpy for the memory-bound layers. There is
no fusion and no runtime overhead: the profile prices exactly what the paper priced, which is
what ``validate`` compares a modern runtime against.

torch times its eager kernels (``torch.nn.functional``: conv2d dense, 1x1, on 3 channels and
depthwise, linear, batch norm, activations, pools, add, mul, cat, softmax, LRN) on the same grid,
then calibrates a per-call and a per-layer overhead on calibration networks run end to end
through the ONNX interpreter (``_torch.OnnxTorch``), which runs every layer as its own op
(eager PyTorch fuses nothing).
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError
from .._imports import optional
from ..analysis import totals
from ..costmodel import LatencyModel, MemoryModel, OpModel, latency_ms, nnls
from ..fingerprint import gpu_facts, gpu_processor, machine_fingerprint
from ..lowering import lower
from ..models import load_space_dict
from ..profile import Profile
from ._fitting import error_stats, fit_bytes, fit_gemm, fit_memory
from ._memory import measure_memories, on_cuda
from ._probes import calibration_networks
from ._protocol import time_runners
from ._runners import TorchRunner, prepare
from ._profiling import ANCHOR_SEED, Budget, _plain, _say, anchor_networks, hardware_facts
from ._settings import RuntimeSettings, require, runtime_version

GEMM_N = (16, 32, 64, 128, 256, 512, 1024)
GEMM_M = (49, 196, 784, 3136, 12544)
GEMM_K = (27, 64, 144, 288, 576, 1152, 2304, 4608)


def amortized(fn, target_s: float = 0.02, min_iters: int = 3, max_iters: int = 10000, sync=None) -> float:
    """Seconds per call of ``fn``: as many calls as fit in ``target_s`` (after one warm-up), timed together.

    With ``sync`` (an asynchronous device: CUDA), the calls are queued back to back and the device
    is waited for once at the end, as a network's layers are: the figure is the steady-state cost
    of one call in a stream, the larger of its launch (CPU) and its kernel (GPU) time, not a
    launch + kernel + synchronisation round trip that no layer of a network pays."""
    def calls(k):
        for _ in range(k):
            fn()
        if sync is not None:
            sync()
    calls(1)
    t0 = time.perf_counter()
    calls(1)
    one = max(time.perf_counter() - t0, 1e-7)
    iters = int(np.clip(target_s / one, min_iters, max_iters))
    t0 = time.perf_counter()
    calls(iters)
    return (time.perf_counter() - t0) / iters


def _two_visits(jobs, deadline, progress, label, min_jobs: int = 8):
    """Time every job twice (second pass in another order) while the deadline allows (at least
    ``min_jobs`` once, whatever the deadline); the smaller of the two visits counts."""
    first = {}
    for i, (key, fn) in enumerate(jobs):
        if time.monotonic() > deadline and i >= min_jobs:
            break
        first[key] = fn()
        if progress is not None and (i + 1) % 50 == 0:
            _say(progress, f"{label}: {i + 1}/{len(jobs)}")
    keys = list(first)
    np.random.default_rng(1).shuffle(keys)
    jobd = dict(jobs)
    for key in keys:
        if time.monotonic() > deadline:
            break
        first[key] = min(first[key], jobd[key]())
    return first


def _profile(name, runtime, description, hardware, latency, memory, fit, settings):
    return Profile(name=name, description=description, hardware=hardware, runtime=runtime,
                   provenance={"method": "measured by augur-nas profile on this machine",
                               "source": f"augur-nas profile --backend {settings.backend}",
                               "date": datetime.date.today().isoformat()},
                   latency=latency, memory=memory, fit=_plain(fit), runtime_settings=settings.to_dict(),
                   fingerprint=machine_fingerprint(settings))


def _hardware():
    hw = hardware_facts()
    d = {"processor": hw["processor"], "cores": int(hw["cores"]), "clock_ghz": 0.0, "peak_gflops": 0.0,
         "memory_bandwidth_gbs": 0.0, "ram_mb": int(hw["ram_mb"]), "unified_memory": True}
    if hw.get("notes"):
        d["notes"] = hw["notes"] + "; clock, peak and bandwidth not measured (0)"
    return d, hw


# --------------------------------------------------------------------------------------------- numpy


def profile_numpy(name: str, settings: RuntimeSettings, budget_s: float = 120.0, seed: int = 0, progress=None):
    """The paper's GEMM-sum profile from numpy/BLAS timings. Returns ``(Profile, report)``."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(settings.threads))
    budget = Budget(budget_s)
    rng = np.random.default_rng(seed)
    grid = [(n, m, k) for n in GEMM_N for m in GEMM_M for k in GEMM_K if n * m * k <= 2.5e9]
    rng.shuffle(grid)

    def gemm_job(n, m, k):
        A = rng.random((n, k), dtype=np.float32)
        B = rng.random((k, m), dtype=np.float32)
        C = np.empty((n, m), dtype=np.float32)
        return lambda: amortized(lambda: np.matmul(A, B, out=C)) * 1e3

    _say(progress, f"GEMM sweep: up to {len(grid)} (n, m, k) points of the paper's grid, numpy {np.__version__}")
    grid.sort(key=lambda g: g[0] * g[1] * g[2] > 4e8)  # the cheap points first, the costliest last
    jobs = [((n, m, k), gemm_job(n, m, k)) for n, m, k in grid]
    gemm_t = _two_visits(jobs, budget.until(0.55), progress, "GEMM")
    # fc: matrix-vector products
    fc_jobs = []
    for n in (10, 100, 1000, 2048, 4096):
        for k in (256, 1024, 2048, 4096, 9216):
            A = rng.random((n, k), dtype=np.float32)
            x = rng.random((k, 1), dtype=np.float32)
            fc_jobs.append(((n, 1, k), (lambda A=A, x=x: amortized(lambda: A @ x) * 1e3)))
    fc_t = _two_visits(fc_jobs, budget.until(0.65), progress, "fc")
    # depthwise: one tiny GEMM per channel, batched
    dw_jobs = []
    for c in (16, 32, 96, 192, 384, 960):
        for kk in (9, 25, 49):
            for m in (49, 196, 784, 3136, 12544):
                if c * kk * m > 6e7:
                    continue
                W = rng.random((c, 1, kk), dtype=np.float32)
                X = rng.random((c, kk, m), dtype=np.float32)
                dw_jobs.append(((1, m, kk, c), (lambda W=W, X=X: amortized(lambda: np.matmul(W, X)) * 1e3)))
    dw_t = _two_visits(dw_jobs, budget.until(0.8), progress, "depthwise")
    # memory-bound layers: element-wise passes
    ew = []
    for mb in (0.05, 0.2, 1, 4, 16, 64):
        x = rng.random(int(mb * 1e6 / 4), dtype=np.float32)
        y = rng.random(len(x), dtype=np.float32)
        t = min(amortized(lambda: np.maximum(x, 0, out=x)), amortized(lambda: np.add(x, y, out=x))) * 1e3
        ew.append((2 * mb, t))
    n, m, k = (np.array([key[i] for key in gemm_t], dtype=np.float64) for i in range(3))
    t = np.array(list(gemm_t.values()))
    conv, st_conv = fit_gemm(n, m, k, t)
    fn_, fm, fk = (np.array([key[i] for key in fc_t], dtype=np.float64) for i in range(3))
    fc, st_fc = fit_gemm(fn_, fm, fk, np.array(list(fc_t.values())))
    dn, dm, dk, dg = (np.array([key[i] for key in dw_t], dtype=np.float64) for i in range(4))
    dw, st_dw = fit_gemm(dn, dm, dk, np.array(list(dw_t.values())) / dg)
    a, c = fit_bytes([v[0] for v in ew], [v[1] for v in ew])
    latency = LatencyModel({"conv": conv, "dwconv": dw, "fc": fc}, OpModel((a, c)), {}, 0.0)
    base_mb = _python_rss_mb()
    memory = MemoryModel(framework_overhead_mb=base_mb, weight_copies=1, activations="caffe", workspace="sum")
    hardware, hw = _hardware()
    fit = {"method": "numpy.matmul (BLAS) timings on the grid of Lu et al., amortised, two visits (minimum); "
                     "NNLS with cross-validated breakpoints",
           "budget_s": float(budget_s), "elapsed_s": round(budget.elapsed(), 1),
           "gemm": {"conv": st_conv, "fc": st_fc, "dwconv": st_dw},
           "ops": {"default": error_stats(a * np.array([v[0] for v in ew]) + c, [v[1] for v in ew])},
           "memory": {"note": "not measured: Caffe-style model (every blob, one im2col buffer per conv) with the "
                              "interpreter's RSS as the framework overhead"}}
    prof = _profile(name, f"numpy-blas-{np.__version__}",
                    f"{hw['processor']}: the paper's GEMM-sum model from numpy/BLAS timings (float32, "
                    f"{settings.threads} thread(s)); no fusion, no runtime overhead.",
                    hardware, latency, memory, fit, settings)
    return prof, {"elapsed_s": budget.elapsed()}


def _python_rss_mb() -> float:
    """Resident memory of a fresh interpreter that imported numpy (the framework overhead)."""
    code = ("import numpy\nfor l in open('/proc/self/status'):\n    "
            "print(int(l.split()[1]) / 1024 if l.startswith('VmRSS') else '', end='')")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
        return round(float(out.strip()), 1)
    except (OSError, ValueError, subprocess.SubprocessError):
        return 30.0


# --------------------------------------------------------------------------------------------- torch


class _Calibration(NamedTuple):
    """The calibration networks, end to end: the kernel model's sum ``K``, the priced layers
    ``L`` and the measured median ``Y`` (ms) of each, and where the peak RSS was measured, the
    weights ``W``, activations ``A`` (MiB) and peak RSS ``P`` (MB)."""
    K: np.ndarray
    L: np.ndarray
    Y: np.ndarray
    W: list
    A: list
    P: list
    anchors_ms: dict
    labels: list
    specs: list


def profile_torch(name: str, settings: RuntimeSettings, budget_s: float = 300.0, seed: int = 0, progress=None):
    """Eager PyTorch kernels on the grid, calibrated end to end. Returns ``(Profile, report)``."""
    require("torch")
    torch = optional("torch", "the torch backend", MeasurementError)
    torch.set_num_threads(settings.threads)
    dev = torch.device(settings.torch_device)
    if settings.torch_device == "cuda" and not torch.cuda.is_available():
        raise MeasurementError("--torch-device cuda: torch sees no CUDA device on this machine")
    budget = Budget(budget_s)
    rng = np.random.default_rng(seed)
    kt, ot, ops = _torch_sweeps(torch, settings, dev, rng, budget, progress)
    one = dev.type == "cuda"  # a GPU launches a grouped or depthwise conv as one kernel
    gemm_d, gstats = _fit_torch_kernels(kt, settings.batch, one_kernel=one)
    op_kinds, ostats, default = _fit_torch_ops(ops, ot)
    kinds = _kernel_kinds(gemm_d, one_kernel=one)
    kernels = LatencyModel(gemm_d, OpModel(default, op_kinds), kinds, 0.0)
    cal = _calibrate_torch(kernels, settings, rng, budget, budget_s, progress)
    per_call, scale, per_layer, how = _overheads(cal)
    latency = LatencyModel({k: v.scaled(scale) for k, v in gemm_d.items()},
                           OpModel((default[0] * scale, default[1] * scale),
                                   {k: (a * scale, c * scale) for k, (a, c) in op_kinds.items()}),
                           kinds, per_layer, None, per_call)
    W, A, P = cal.W, cal.A, cal.P
    Fm, cw, ca = fit_memory(W, A, P) if len(P) >= 3 else (P[0] if P else 200.0, 1.0, 1.0)
    memory = MemoryModel(framework_overhead_mb=Fm, weights_coef=cw, activations="peak", activation_coef=ca,
                         workspace="none")
    pred = [float(per_call + scale * k + per_layer * l) for k, l in zip(cal.K, cal.L)]
    hardware, _ = _hardware()
    where = settings.torch_device
    if dev.type == "cuda":
        hardware, where = _gpu_hardware(hardware, torch)
    fit = {"method": "eager torch kernels on the grid (amortised, two visits, minimum; on CUDA queued back to back, "
                     "one synchronisation per timing); NNLS with cross-validated "
                     "breakpoints; per-call and per-layer overheads and a kernel scale from calibration networks",
           "budget_s": float(budget_s), "elapsed_s": round(budget.elapsed(), 1), "gemm": gstats, "ops": ostats,
           "end_to_end_calibration": {"per_layer_ms": float(per_layer), "per_call_ms": float(per_call),
                                      "kernel_scale": float(scale), "fit": how},
           "calibration_networks": {"latency": error_stats(pred, cal.Y), "note": "in sample for the overheads"},
           "anchors": {"seed": ANCHOR_SEED, "latency_ms": cal.anchors_ms},
           "memory": {"networks": len(P), **error_stats([Fm + cw * a_ + ca * b_ for a_, b_ in zip(W, A)], P),
                      "what": "GPU memory: the CUDA context plus the caching allocator's peak reservation"
                              if dev.type == "cuda" else "the process's peak resident set"}}
    prof = _profile(name, f"torch-{runtime_version('torch')}-{settings.torch_device}",
                    f"{where} running eager PyTorch {runtime_version('torch')} on {settings.torch_device} "
                    f"({settings.threads} CPU thread(s)), float32 (cuDNN's default TF32 convolutions on CUDA), "
                    f"batch {settings.batch}, each ONNX node its own call.",
                    hardware, latency, memory, fit, settings)
    raw = {"kernels": [[*k, v] for k, v in kt.items()], "ops": [[k[0], k[1], v] for k, v in ot.items()],
           "calibration": cal._asdict(), "settings": settings.to_dict()}
    return prof, {"elapsed_s": budget.elapsed(), "raw": raw}


def _torch_sweeps(torch, settings, dev, rng, budget, progress):
    """``(kernel timings, op timings, op kinds)``: the GEMM kernels until 45 % of the budget, then
    the memory-bound kinds until 55 %; the sweeps' tensors are freed before the calibration
    networks need the memory (on a GPU, the caching allocator's too)."""
    sync = torch.cuda.synchronize if dev.type == "cuda" else None  # CPU calls are synchronous

    def timed(fn):
        return _timed_job(torch, sync, fn)

    jobs = _torch_kernel_jobs(settings, dev, rng, timed)
    _say(progress, f"kernel sweep: up to {len(jobs)} eager torch kernels on {settings.torch_device}")
    # 24 kernels whatever the deadline: about 17 dense convs, the four a fit needs with room to spare
    # (8 left a tiny budget on a loaded machine with fewer than four now and then)
    kt = _two_visits(jobs, budget.until(0.45), progress, "kernels", min_jobs=24)
    ops = _torch_op_functions(dev)
    with tempfile.TemporaryDirectory(prefix="augur-profile-ops-") as d:
        jobs = _torch_op_jobs(ops, settings, dev, timed) + _one_layer_jobs(settings, timed, d)
    ot = _two_visits(jobs, budget.until(0.55), progress, "memory-bound ops")
    del jobs
    if dev.type == "cuda":
        torch.cuda.empty_cache()
    return kt, ot, {**ops, **{k: None for k in ONE_LAYER}}


def _overheads(cal):
    """``(per_call, kernel scale, per_layer, how)`` from the calibration networks: NNLS of the
    measured time on ``1, K, L`` weighted by 1/time. Where the kernels explain nothing (scale 0:
    the layer count alone fits better), the kernel times are kept as timed (scale 1) and the two
    overheads are fitted to what they leave: setting the scale to 1 after a fit without it would
    count the kernels twice (an H200 profile predicted the zoo 2x too slow that way)."""
    w = 1 / cal.Y
    per_call, scale, per_layer = nnls(np.stack([np.ones_like(cal.K), cal.K, cal.L], 1) * w[:, None], cal.Y * w)
    if scale > 0:
        return float(per_call), float(scale), float(per_layer), "nnls of 1, K, L"
    per_call, per_layer = nnls(np.stack([np.ones_like(cal.K), cal.L], 1) * w[:, None], (cal.Y - cal.K) * w)
    return float(per_call), 1.0, float(per_layer), "kernels as timed (scale 0 fitted); nnls of 1, L on Y - K"


def _gpu_hardware(hardware: dict, torch):
    """The ``hardware`` of a CUDA profile: the GPU (``fingerprint.gpu_facts``), its memory (what a
    network must fit in) and the host CPU that launches its kernels (eager PyTorch at batch 1 is
    often bound by it)."""
    g = gpu_facts()
    where = gpu_processor(g["gpu_model"], hardware["processor"])
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    hw = dict(hardware, processor=where, ram_mb=g["gpu_memory_mb"], unified_memory=False,
              notes=f"{sms} SMs, compute capability {g['gpu_capability']}, CUDA {g['cuda_runtime']}; ram_mb is the "
                    f"GPU's memory; host: {hardware.get('notes', '')}")
    return hw, where


def _timed_job(torch, sync, fn):
    """A job timing ``fn`` (ms a call, amortised) in inference mode; with ``sync`` (CUDA) the calls
    are queued and synchronised once (``amortized``'s ``sync``)."""
    def run():
        with torch.inference_mode():
            return amortized(fn, sync=sync) * 1e3
    return run


def _torch_kernel_jobs(settings, dev, rng, timed) -> list:
    """Jobs of the GEMM kernels (dense convs, depthwise convs, linear), keyed
    ``(family, n, m, k, groups, cin)``, shuffled."""
    torch, F = optional("torch", "the torch backend", MeasurementError), optional("torch.nn.functional", "the torch backend", MeasurementError)
    jobs = []
    # dense convs: (cin, h, n, kernel, stride)
    for _ in range(400):
        kernel = int(rng.choice([1, 1, 3, 3, 5, 7]))
        stride = int(rng.choice([1, 1, 2]))
        side = int(rng.choice([7, 14, 28, 56, 112]))
        cin = int(rng.choice([3, 16, 32, 64, 128, 256, 512]))
        n = int(rng.choice([16, 32, 64, 128, 256, 512]))
        h = side * stride
        if cin * kernel * kernel * n * side * side > 1.2e9:
            continue
        x = torch.rand(settings.batch, cin, h, h, device=dev)
        w = torch.rand(n, cin, kernel, kernel, device=dev)
        fam = "conv_narrow" if cin < 8 else ("conv_1x1" if kernel == 1 else "conv")
        key = (fam, n, side * side, cin * kernel * kernel, 1, cin)
        jobs.append((key, timed(lambda x=x, w=w, s=stride, p=(kernel - 1) // 2: F.conv2d(x, w, None, s, p))))
    for _ in range(30):  # stems on RGB with the large kernels and strides of AlexNet and NiN (11x11, stride 4)
        kernel = int(rng.choice([3, 5, 7, 11]))
        stride = int(rng.choice([2, 4]))
        side = int(rng.choice([28, 56, 112]))
        n = int(rng.choice([16, 32, 64, 96]))
        h = side * stride
        x = torch.rand(settings.batch, 3, h, h, device=dev)
        w = torch.rand(n, 3, kernel, kernel, device=dev)
        jobs.append((("conv_narrow", n, side * side, 3 * kernel * kernel, 1, 3),
                     timed(lambda x=x, w=w, s=stride, p=(kernel - 1) // 2: F.conv2d(x, w, None, s, p))))
    for _ in range(120):
        kernel = int(rng.choice([3, 5, 7]))
        stride = int(rng.choice([1, 1, 2]))
        side = int(rng.choice([7, 14, 28, 56, 112]))
        c = int(rng.choice([16, 32, 96, 144, 192, 384, 576, 960]))
        x = torch.rand(settings.batch, c, side * stride, side * stride, device=dev)
        w = torch.rand(c, 1, kernel, kernel, device=dev)
        jobs.append((("dwconv", 1, side * side, kernel * kernel, c, c),
                     timed(lambda x=x, w=w, s=stride, p=(kernel - 1) // 2, c=c: F.conv2d(x, w, None, s, p, 1, c))))
    for n in (10, 100, 1000, 2048, 4096):
        for k in (256, 1024, 2048, 4096, 9216):
            x = torch.rand(settings.batch, k, device=dev)
            w = torch.rand(n, k, device=dev)
            jobs.append((("fc", n, 1, k, 1, k), timed(lambda x=x, w=w: F.linear(x, w))))
    rng.shuffle(jobs)
    return jobs


def _torch_op_functions(dev) -> dict:
    """The memory-bound kinds of two inputs, each as the eager torch function timed for it (the
    interpreter runs each as one node, with the same function: ``_torch._OPS``)."""
    torch = optional("torch", "the torch backend", MeasurementError)
    return {"add": lambda x: x + x, "mul": lambda x: x * x[:, :, :1, :1], "concat": lambda x: torch.cat([x, x], 1)}


# The memory-bound kinds of one input, each timed as the torch backend runs a network: a one-layer
# network exported to ONNX and run by the interpreter (``_torch.OnnxTorch``), so that a kind the
# exporter writes as several nodes pays each of them (GELU: five; LayerNorm: a transpose on either
# side; a channel shuffle: reshape, transpose, reshape; hsigmoid: the interpreter's three ops) and
# the interpreter's own per-node time. On a GPU at batch 1 these launches are the whole cost: an
# H200 ran the zoo at 18 us per layer whatever the layer (experiments/gpu_profile.md).
ONE_LAYER = {
    "relu": {"relu": {}}, "relu6": {"relu6": {}}, "sigmoid": {"sigmoid": {}}, "tanh": {"tanh": {}},
    "hswish": {"hswish": {}}, "hsigmoid": {"hsigmoid": {}}, "swish": {"swish": {}}, "gelu": {"gelu": {}},
    "batchnorm": {"batchnorm": {}}, "scale": {"scale": {}}, "layernorm": {"layernorm": {}},
    "shuffle": {"shuffle": {"groups": 2}}, "lrn": {"lrn": {}}, "softmax": {"softmax": {}},
    "maxpool": {"maxpool": {"kernel": 3, "stride": 2, "pad": 1}}, "avgpool": {"avgpool": {"kernel": 3, "stride": 1, "pad": 1}},
    "globalpool": {"globalpool": {}},
}
OP_SHAPES = ((16, 32), (32, 56), (64, 56), (128, 28), (256, 14), (96, 112), (512, 7))


def _one_layer_jobs(settings, timed, workdir: str) -> list:
    """Jobs ``((kind, MB moved), fn)`` of the ``ONE_LAYER`` kinds on ``OP_SHAPES``, each a
    one-layer network run by the interpreter; MB moved as the cost model counts them (the
    layer's input and output, ``1e6`` bytes per MB)."""
    items, moved = [], {}
    for kind, layer in ONE_LAYER.items():
        for c, h in OP_SHAPES:
            lab = f"op_{kind}_{c}x{h}"
            model = load_space_dict({"name": lab, "input": {"channels": c, "resolution": h}, "layers": [layer]},
                                    source=f"<{lab}>")
            rows = lower(model, np.zeros((1, model.n_genes), dtype=np.int64)).rows
            moved[lab] = (kind, float((rows["in_elems"][:, 0] + rows["out_elems"][:, 0])[rows["mask"][:, 0]].sum())
                          * 4 / 1e6 * settings.batch)
            items.append((lab, model))
    jobs = []
    for net in prepare(items, workdir, batch=settings.batch):
        r = TorchRunner(net.onnx_path, settings)  # its run() synchronises each call: the job times the module
        jobs.append((moved[net.label], timed(lambda m=r.module, x=r.x: m(x))))
    return jobs


def _torch_op_jobs(ops: dict, settings, dev, timed) -> list:
    """Jobs of the memory-bound kinds on seven tensor shapes, keyed ``(kind, MB moved)``."""
    torch = optional("torch", "the torch backend", MeasurementError)
    ojobs = []
    for kind, fn in ops.items():
        for c, h in OP_SHAPES:
            x = torch.rand(settings.batch, c, h, h, device=dev)
            with torch.inference_mode():
                y = fn(x)
            moved = (x.numel() * (2 if kind in ("add", "concat") else 1) + y.numel()) * 4 / 1e6
            ojobs.append(((kind, moved), timed(lambda x=x, fn=fn: fn(x))))
    return ojobs


def _fit_torch_kernels(kt: dict, batch: int, one_kernel: bool = False):
    """The piecewise GEMM model of each kernel family with four timings or more (``conv`` first)
    and its fit statistics. With ``one_kernel`` a grouped layer is fitted whole, as one GEMM of
    ``n * groups`` outputs (``LatencyModel.one_kernel``); else per group, as Caffe runs it."""
    gemm, gstats = {}, {}
    for fam in ("conv", "conv_1x1", "conv_narrow", "dwconv", "fc"):
        keys = [k for k in kt if k[0] == fam]
        if len(keys) < 4:
            continue
        n = np.array([k[1] for k in keys], dtype=float)
        m = np.array([k[2] for k in keys], dtype=float)
        kk = np.array([k[3] for k in keys], dtype=float)
        g = np.array([k[4] for k in keys], dtype=float)
        t = np.array([kt[k] for k in keys]) / batch
        gemm[fam], gstats[fam] = fit_gemm(n * g, m, kk, t) if one_kernel else fit_gemm(n, m, kk, t / g)
    if "conv" not in gemm:
        raise MeasurementError("profile: too few convolution timings; give a larger --budget-s")
    return {"conv": gemm["conv"], **{k: v for k, v in gemm.items() if k != "conv"}}, gstats


def _fit_torch_ops(ops: dict, ot: dict):
    """``(a, c)`` (ms per MB moved, ms) of each memory-bound kind with three timings or more,
    their statistics, and the default over all timings."""
    op_kinds, ostats = {}, {}
    for kind in ops:
        pts = [(k[1], v) for k, v in ot.items() if k[0] == kind]
        if len(pts) >= 3:
            op_kinds[kind] = fit_bytes([p[0] for p in pts], [p[1] for p in pts])
            ostats[kind] = error_stats(op_kinds[kind][0] * np.array([p[0] for p in pts]) + op_kinds[kind][1],
                                       [p[1] for p in pts])
    default = fit_bytes([k[1] for k in ot], list(ot.values())) if ot else (0.0, 0.0)
    return op_kinds, ostats, default


def _kernel_kinds(gemm: dict, one_kernel: bool = False) -> dict:
    """The latency model's ``kinds``: which fitted GEMM family prices which layer kind."""
    kinds = {"conv": {"gemm": "conv"}}
    if "conv_1x1" in gemm:
        kinds["conv"]["pointwise"] = "conv_1x1"
    if "conv_narrow" in gemm:
        kinds["conv"].update({"narrow": "conv_narrow", "narrow_below": 8})
    for k in ("dwconv", "fc"):
        if k in gemm:
            kinds[k] = {"gemm": k}
    if one_kernel:
        for k in ("conv", "dwconv"):
            if k in kinds:
                kinds[k]["one_kernel"] = True
    return kinds


def _calibrate_torch(kernels, settings, rng, budget, budget_s: float, progress) -> _Calibration:
    """Calibration networks end to end through the ONNX interpreter (timing and peak RSS)."""
    with tempfile.TemporaryDirectory(prefix="augur-profile-torch-") as d:
        nets_m = calibration_networks(rng, int(np.clip(budget_s / 12, 4, 30)))
        # the speed anchors run with them, so that `augur-nas check` can tell this device's speed later
        every = prepare([(lab, m) for lab, m, _ in nets_m] + [(lab, m) for lab, m, _ in anchor_networks()], d)
        nets, anchor_nets = every[:len(nets_m)], every[len(nets_m):]
        _say(progress, f"calibration: {len(nets)} networks and {len(anchor_nets)} speed anchors end to end "
                       f"({budget.elapsed():.0f} s)")
        runners = {n.label: TorchRunner(n.onnx_path, settings) for n in every}
        try:
            # waiting for a quiet machine is part of the budget (as in the ORT profiler), not 300 s on top
            timing = time_runners(runners, rounds=8, round_s=0.02, warmup_s=0.05,
                                  budget_s=max(3.0, budget.until(0.85) - time.monotonic()),
                                  max_wait_s=min(60.0, max(0.0, budget.left() * 0.3)))
        finally:
            runners.clear()
        # a GPU's memory children run one at a time (``_memory``): 8 of them, not 16
        mem = measure_memories({n.label: n.onnx_path for n in nets[:8 if on_cuda(settings) else 16]}, settings, jobs=2)
        K, L, Y, W, A, P = [], [], [], [], [], []
        for n in nets:
            table = lower(n.model, np.zeros((1, n.model.n_genes), dtype=np.int64))
            K.append(float(latency_ms(table, kernels, settings.batch)[0][0]))
            L.append(sum(1 for s, op in enumerate(table.ops) if table.rows["mask"][s, 0] and kernels.family(op)[0] != "free"))
            Y.append(timing[n.label].median_ms)
            mm = mem.get(n.label, {})
            if "peak_rss_mb" in mm:
                tot = totals(table)
                W.append(float(tot["weights_bytes"][0]) / 2**20)
                A.append(float(tot["peak_memory_bytes"][0] - tot["weights_bytes"][0]) / 2**20)
                P.append(mm["peak_rss_mb"])
    K, L, Y = (np.asarray(v, dtype=float) for v in (K, L, Y))
    return _Calibration(K, L, Y, W, A, P, {n.label: round(timing[n.label].median_ms, 4) for n in anchor_nets},
                        [n.label for n in nets], [spec for _, _, spec in nets_m])
