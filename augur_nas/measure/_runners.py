"""Runnable networks: a model (file or object) as an ONNX file, and one forward pass of it on a backend.

Every backend runs the same graph: our model exported as ONNX with random float32 weights
(``augur_nas.io.onnx.export_onnx``); an ``.onnx`` file given by the user is run as is. The torch
backend interprets that ONNX graph with ``torch.nn.functional`` (``OnnxTorch``), so no converter
package is needed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from .._errors import AugurError, MeasurementError
from .._imports import optional
from ..io.onnx import export_onnx
from ..models import load_model
from ._settings import RuntimeSettings, ort_session_options, require


@dataclass
class Network:
    """One network to measure: a label, its ONNX file, and our model of it (None if unreadable)."""

    label: str
    onnx_path: str
    model: object = None
    source: str = ""


def _safe(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label)[:80] or "model"


def onnx_batch(path: str) -> int | None:
    """The fixed batch (first axis) of an ONNX file's first input; None where it is symbolic."""
    onnx = optional("onnx", "reading an ONNX file's batch")
    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:  # noqa: BLE001 - unreadable here: the runtime reports it when loading
        return None
    dims = m.graph.input[0].type.tensor_type.shape.dim if m.graph.input else []
    return int(dims[0].dim_value) if dims and dims[0].HasField("dim_value") else None


def check_batch(networks, batch: int) -> None:
    """Every user-given ``.onnx`` file among ``networks`` must take ``batch`` images (one paragraph)."""
    for n in networks:
        if n.onnx_path == n.source and n.source.lower().endswith(".onnx"):
            b = onnx_batch(n.onnx_path)
            if b is not None and b != batch:
                raise MeasurementError(
                    f"{n.onnx_path} takes a batch of {b} image(s), not the {batch} asked for; export the model "
                    f"with `augur-nas export MODEL --batch {batch} -o FILE.onnx`, or give the model file (.yaml, "
                    f".prototxt) and measure exports it at that batch")


def prepare(items, workdir: str, read_models: bool = True, batch: int = 1) -> list:
    """``Network`` objects for paths (``.yaml``, ``.prototxt``, ``.onnx``, ``file.py:factory``) or
    ``(label, model)`` pairs; models are exported as ONNX into ``workdir``, for ``batch`` images
    per run (an ``.onnx`` file given is run as it is: its batch must be ``batch``)."""
    out, seen = [], set()
    for it in items:
        if isinstance(it, tuple):
            label, model = it
            source = label
        else:
            source = str(it)
            label = os.path.splitext(os.path.basename(source.split(":")[0]))[0]
            if source.endswith(".prototxt"):
                label += ".prototxt"
            model = None
        base = label
        i = 1
        while label in seen:
            i += 1
            label = f"{base}#{i}"
        seen.add(label)
        if not isinstance(it, tuple) and source.lower().endswith(".onnx"):
            if not os.path.isfile(source):
                raise MeasurementError(f"no such file: {source}")
            if read_models:
                try:
                    model = load_model(source)
                except AugurError:
                    model = None  # measured as is, but not predicted
            out.append(Network(label, source, model, source))
            continue
        if model is None:
            model = load_model(source)
        path = os.path.join(workdir, f"{len(out):04d}_{_safe(label)}.onnx")
        export_onnx(model, path, batch=batch)
        out.append(Network(label, path, model, source))
    return out


# --------------------------------------------------------------------------------------------- runners


SPIN_SETTLE_S = 0.05  # long enough for spinning workers to park (20 ms sufficed on a 2-core Xeon)


class OrtRunner:
    """One ONNX Runtime session and its random input."""

    def __init__(self, onnx_path: str, settings: RuntimeSettings, profiling_prefix: str | None = None,
                 optimized_path: str | None = None, seed: int = 0):
        require("onnxruntime")
        ort = optional("onnxruntime", "the onnxruntime backend", MeasurementError)

        so = ort_session_options(settings, profiling_prefix, optimized_path)
        try:
            self.session = ort.InferenceSession(onnx_path, so, providers=[settings.provider])
        except Exception as exc:  # noqa: BLE001 - ORT's own exception types
            raise MeasurementError(f"ONNX Runtime cannot load {onnx_path}: {str(exc).splitlines()[0]}") from None
        inp = self.session.get_inputs()[0]
        # a fixed batch is the file's own (a speed anchor of batch 1 timed beside batch-N networks);
        # a symbolic one is the settings' batch
        shape = [d if isinstance(d, int) else settings.batch for d in inp.shape]
        self.feed = {inp.name: np.random.default_rng(seed).random(shape, dtype=np.float32)}
        self.outputs = [o.name for o in self.session.get_outputs()]
        # with several intra-op threads, ONNX Runtime's workers spin for a while after each run
        # (its default): the protocol interleaves many live sessions, and the workers of the one
        # just timed would take the cores from the next (resnet18 at 2 threads: 10 ms alone, 19 ms
        # right after another 2-thread session). ``time_runners`` waits this long before a block.
        self.settle_s = SPIN_SETTLE_S if settings.threads > 1 else 0.0
        # its runs compute on this process's CPU: a run that held less of a core was shared
        # (``_protocol.OWN_SHARE``); a GPU provider's runs wait on the device instead
        self.on_cpu = settings.provider == "CPUExecutionProvider"

    def run(self):
        return self.session.run(self.outputs, self.feed)

    def end_profiling(self) -> str:
        return self.session.end_profiling()

    def close(self):
        self.session = None


class TorchRunner:
    """The ONNX graph interpreted with torch (``OnnxTorch``) on the settings' device."""

    def __init__(self, onnx_path: str, settings: RuntimeSettings, seed: int = 0):
        require("torch")
        torch = optional("torch", "the torch backend", MeasurementError)
        from ._torch import OnnxTorch  # imports torch at its top: only when torch is used

        torch.set_num_threads(settings.threads)
        try:
            torch.set_num_interop_threads(settings.inter_op_threads)
        except RuntimeError:
            pass  # may only be set once per process
        if settings.torch_device == "cuda" and not torch.cuda.is_available():
            raise MeasurementError("--torch-device cuda: torch sees no CUDA device on this machine")
        self.device = torch.device(settings.torch_device)
        self.module = OnnxTorch(onnx_path).to(self.device).eval()
        g = torch.Generator().manual_seed(seed)
        shape = list(self.module.input_shape)
        shape[0] = settings.batch
        self.x = torch.rand(*shape, generator=g).to(self.device)
        self.cuda = self.device.type == "cuda"
        self.on_cpu = not self.cuda  # see OrtRunner.on_cpu
        self._torch = torch

    def run(self):
        with self._torch.inference_mode():
            y = self.module(self.x)
        if self.cuda:
            self._torch.cuda.synchronize()
        return y

    def close(self):
        self.module = None


def make_runner(net: Network, settings: RuntimeSettings):
    if settings.backend == "onnxruntime":
        return OrtRunner(net.onnx_path, settings)
    if settings.backend == "torch":
        return TorchRunner(net.onnx_path, settings)
    raise MeasurementError(f"the {settings.backend} backend times kernels (`augur-nas profile`), not networks; "
                           f"measure networks with --backend onnxruntime or torch")
