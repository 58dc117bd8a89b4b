"""Runtime settings of a measurement: what a profile was measured with, and what measure/validate use.

A profile records them (``runtime_settings``), so that a later ``augur-nas measure`` or
``validate`` on the same device runs the runtime the same way by default.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .._errors import AugurError, MeasurementError
from .._imports import optional

BACKENDS = ("onnxruntime", "torch", "numpy")
GRAPH_OPT_LEVELS = ("ORT_DISABLE_ALL", "ORT_ENABLE_BASIC", "ORT_ENABLE_EXTENDED", "ORT_ENABLE_ALL")


@dataclass
class RuntimeSettings:
    """How a runtime runs the networks it is timed on."""

    backend: str = "onnxruntime"
    threads: int = 1  # intra-op threads (1: least noise on a small machine)
    inter_op_threads: int = 1
    graph_optimization: str = "ORT_ENABLE_ALL"  # ONNX Runtime: the fusions the profile prices
    provider: str = "CPUExecutionProvider"
    execution_mode: str = "sequential"
    torch_device: str = "cpu"
    batch: int = 1
    dtype: str = "float32"

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise MeasurementError(f"unknown backend `{self.backend}`; choose one of {', '.join(BACKENDS)}")
        if int(self.threads) < 1 or int(self.inter_op_threads) < 1:
            raise MeasurementError(f"threads must be >= 1, got {self.threads}")
        if self.graph_optimization not in GRAPH_OPT_LEVELS:
            raise MeasurementError(f"graph optimization must be one of {', '.join(GRAPH_OPT_LEVELS)}, "
                                   f"not {self.graph_optimization!r}")
        if self.torch_device not in ("cpu", "cuda"):
            raise MeasurementError(f"--torch-device must be cpu or cuda, not {self.torch_device!r}")
        self.threads = int(self.threads)
        self.inter_op_threads = int(self.inter_op_threads)
        self.batch = int(self.batch)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.backend == "onnxruntime":
            d.pop("torch_device")
        elif self.backend == "torch":
            for k in ("graph_optimization", "provider", "execution_mode"):
                d.pop(k)
        else:
            for k in ("graph_optimization", "provider", "execution_mode", "torch_device"):
                d.pop(k)
        d["version"] = runtime_version(self.backend)
        return d

    @classmethod
    def from_dict(cls, d: dict | None, **override) -> "RuntimeSettings":
        d = dict(d or {})
        d.pop("version", None)
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in known}
        kw.update({k: v for k, v in override.items() if v is not None})
        return cls(**kw)

    def describe(self) -> str:
        if self.backend == "onnxruntime":
            return (f"onnxruntime {runtime_version('onnxruntime')}, {self.provider}, {self.threads} intra-op thread(s), "
                    f"{self.graph_optimization}, {self.execution_mode}, batch {self.batch}, float32")
        if self.backend == "torch":
            return f"torch {runtime_version('torch')} on {self.torch_device}, {self.threads} thread(s), batch {self.batch}, float32"
        return f"numpy {runtime_version('numpy')}, {self.threads} BLAS thread(s), float32"


def runtime_version(backend: str) -> str:
    if backend not in ("onnxruntime", "torch"):
        return str(np.__version__)
    try:
        return str(optional(backend, f"the {backend} backend").__version__)
    except AugurError:
        return "not installed"


def ort_session_options(settings: RuntimeSettings, profiling_prefix: str | None = None, optimized_path: str | None = None):
    ort = optional("onnxruntime", "the onnxruntime backend", MeasurementError)
    so = ort.SessionOptions()
    so.intra_op_num_threads = settings.threads
    so.inter_op_num_threads = settings.inter_op_threads
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, settings.graph_optimization)
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL if settings.execution_mode == "sequential" \
        else ort.ExecutionMode.ORT_PARALLEL
    so.log_severity_level = 3  # errors only (the NCHWc serialization warning is expected)
    if settings.threads == 1:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profiling_prefix:
        so.enable_profiling = True
        so.profile_file_prefix = profiling_prefix
    if optimized_path:
        so.optimized_model_filepath = optimized_path
    return so


def require(backend: str):
    """Import the runtime of a backend or raise a MeasurementError saying how to install it."""
    for name in {"onnxruntime": ("onnxruntime", "onnx"), "torch": ("torch",)}.get(backend, ()):
        optional(name, f"the {backend} backend", MeasurementError)
