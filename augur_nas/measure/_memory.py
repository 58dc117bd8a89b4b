"""Peak memory of a network run, measured in a child process.

What is measured (Linux ``/proc/self/status``): a fresh Python process imports numpy and the
runtime, resets its peak-RSS counter (``/proc/self/clear_refs``, where the kernel allows it),
records its resident set (``base_rss_mb``: interpreter + runtime libraries), then loads the
network (session creation: graph optimisation, weight pre-packing) and runs ``runs`` forward
passes. ``peak_rss_mb`` is the process's peak resident set (``VmHWM``) over all of it, the
figure a device profile's memory model predicts (``memory_mb``: what the process holds);
``model_peak_mb = peak_rss_mb - base_rss_mb`` is what the network itself added.
MB are MiB (2^20 bytes), as in the profiles.

On CUDA (``--backend torch --torch-device cuda``) the memory that limits a network is the GPU's,
so there ``peak_rss_mb`` is the GPU memory the child holds at its peak: its CUDA context
(``base_rss_mb``) plus the most its caching allocator reserved, or the driver's figure after the
runs where that is larger (kernels loaded lazily). The driver's figure is device-wide, so these
children run one at a time, and what the parent holds on the GPU (read just before each child
starts) is taken off; the host's peak RSS is kept as ``host_peak_rss_mb``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from .._errors import MeasurementError
from .._imports import optional

_CHILDREN: set = set()  # running children, killed if the parent is interrupted


def kill_children() -> None:
    """Kill every memory child still running (called when a command is interrupted)."""
    for proc in list(_CHILDREN):
        try:
            proc.kill()
            proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - best effort
            pass
        _CHILDREN.discard(proc)

_CHILD = r'''
import json, os, sys
try:  # die with the parent, even if it is killed (Linux)
    import ctypes, signal
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    if os.getppid() == 1:
        sys.exit(3)
except Exception:
    pass
def status():
    d = {}
    with open("/proc/self/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                d[k] = int(v.split()[0])
    return d
a = json.loads(sys.argv[1])
import numpy as np
if a["backend"] == "onnxruntime":
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = a["threads"]
    so.inter_op_num_threads = a["inter_op_threads"]
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, a["graph_optimization"])
    so.log_severity_level = 3
else:
    import torch
    torch.set_num_threads(a["threads"])
    from augur_nas.measure._torch import OnnxTorch
cuda = a["backend"] == "torch" and a.get("torch_device") == "cuda"
def gpu_used_mb():
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20
if cuda:
    torch.zeros(1, device="cuda")  # the context, before anything of the network
    gpu_base = gpu_used_mb() - a["gpu_before_mb"]
    reserved0 = torch.cuda.memory_reserved()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    reset = True
except OSError:
    reset = False
before = status()
if a["backend"] == "onnxruntime":
    s = ort.InferenceSession(a["path"], so, providers=[a["provider"]])
    inp = s.get_inputs()[0]
    shape = [a["batch"] if (not isinstance(d, int) or i == 0) else d for i, d in enumerate(inp.shape)]
    feed = {inp.name: np.random.default_rng(0).random(shape, dtype=np.float32)}
    for _ in range(a["runs"]):
        s.run(None, feed)
else:
    m = OnnxTorch(a["path"]).eval()
    shape = list(m.input_shape); shape[0] = a["batch"]
    x = torch.rand(*shape)
    if cuda:
        m, x = m.to("cuda"), x.to("cuda")
    with torch.inference_mode():
        for _ in range(a["runs"]):
            m(x)
after = status()
gpu = None
if cuda:
    held = gpu_base + (torch.cuda.max_memory_reserved() - reserved0) / 2**20
    gpu = {"base_mb": gpu_base, "peak_mb": max(gpu_used_mb() - a["gpu_before_mb"], held)}
print(json.dumps({"before": before, "after": after, "reset": reset, "gpu": gpu}))
'''


def measure_memory(onnx_path: str, settings, runs: int = 3, timeout_s: float = 300.0) -> dict:
    """``{peak_rss_mb, base_rss_mb, model_peak_mb, hwm_reset}`` of one network (see the module doc)."""
    args = {"backend": settings.backend, "path": os.path.abspath(onnx_path), "threads": settings.threads,
            "inter_op_threads": settings.inter_op_threads, "batch": settings.batch, "runs": int(runs),
            "graph_optimization": getattr(settings, "graph_optimization", "ORT_ENABLE_ALL"),
            "provider": getattr(settings, "provider", "CPUExecutionProvider"),
            "torch_device": getattr(settings, "torch_device", "cpu"),
            "gpu_before_mb": gpu_used_mb() if on_cuda(settings) else 0.0}
    env = dict(os.environ, OMP_NUM_THREADS=str(settings.threads), OPENBLAS_NUM_THREADS=str(settings.threads))
    proc = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    _CHILDREN.add(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MeasurementError(f"measuring the memory of {onnx_path} took more than {timeout_s:.0f} s") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        _CHILDREN.discard(proc)
    if proc.returncode != 0:
        tail = (err or "").strip().splitlines()[-1:] or ["(no message)"]
        raise MeasurementError(f"the memory child for {onnx_path} failed (exit {proc.returncode}): {tail[0]}")

    class _P:
        stdout = out
    p = _P()
    r = json.loads(p.stdout.strip().splitlines()[-1])
    b, a = r["before"], r["after"]
    peak = a["VmHWM"] / 1024.0
    base = b["VmRSS"] / 1024.0
    if r.get("gpu"):  # see the module doc: on CUDA the GPU's memory is the one that limits
        g = r["gpu"]
        return {"peak_rss_mb": g["peak_mb"], "base_rss_mb": g["base_mb"], "model_peak_mb": g["peak_mb"] - g["base_mb"],
                "hwm_reset": True, "host_peak_rss_mb": peak, "memory": "gpu"}
    return {"peak_rss_mb": peak, "base_rss_mb": base, "model_peak_mb": peak - base, "hwm_reset": bool(r["reset"])}


def gpu_used_mb() -> float:
    """The GPU memory in use on the device now (MiB; the driver's figure: every process's)."""
    torch = optional("torch", "the GPU's memory figure", MeasurementError)  # CUDA settings: imported already
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return (total - free) / 2**20


GPU_MEMORY = ("GPU memory of a child process that loads the network on the GPU and runs it 3 times: its CUDA "
              "context plus its caching allocator's peak reservation (what the parent held on the GPU taken off), MiB")


def on_cuda(settings) -> bool:
    """Whether ``settings`` run networks on a CUDA GPU (memory is then the GPU's)."""
    return getattr(settings, "backend", "") == "torch" and getattr(settings, "torch_device", "cpu") == "cuda"


def measure_memories(paths: dict, settings, jobs: int = 2, progress=None) -> dict:
    """``{label: memory dict}`` for ``{label: onnx path}``, ``jobs`` children at a time."""
    out = {}
    if on_cuda(settings):
        jobs = 1  # the driver's memory figure is device-wide: one child at a time
    labels = list(paths)
    done = 0
    ex = ThreadPoolExecutor(max_workers=max(1, int(jobs)))
    try:
        futs = {lab: ex.submit(measure_memory, paths[lab], settings) for lab in labels}
        for lab in labels:
            try:
                out[lab] = futs[lab].result()
            except MeasurementError as exc:
                out[lab] = {"error": str(exc)}
            done += 1
            if progress is not None:
                progress(done, len(labels), lab)
    except BaseException:
        ex.shutdown(wait=False, cancel_futures=True)
        kill_children()
        raise
    ex.shutdown(wait=True)
    return out
