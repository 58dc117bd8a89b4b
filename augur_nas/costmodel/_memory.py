"""The memory model: what a framework process holds while it runs a network.

``memory_mb = framework_overhead_mb + weight_copies * weights_coef * weights
+ activation_coef * activations + workspace_coef * workspace`` (MB = 2^20 bytes, as Table 4 of
Lu et al.), with

- ``weight_copies`` 2 on a unified-memory GPU run (Caffe keeps the host copy of every weight
  and makes a device copy, both in the one system memory: Table 4 of the paper), else 1;
- ``activations``: ``caffe`` (every blob the network materialises, in-place layers sharing:
  ``analysis.totals()['activation_bytes']``) or ``peak`` (the most tensors alive at one step, with
  that step's workspace, of a runtime that frees and reuses buffers);
- ``workspace``: ``sum`` (one im2col buffer per conv layer, as Caffe's BaseConvolutionLayer
  keeps its own ``col_buffer_``), ``max`` (one buffer shared by all layers) or ``none``.

Batch: activations scale with the batch; workspace does not (Caffe runs im2col per image).  The
activation term at batch ``b`` is ``activation_coef * batch * activations`` unless the profile has a
``batch_activation_coef``: then it is ``(activation_coef + batch_activation_coef * (b - 1)) *
activations_b``, where ``activations_b`` are the activations of mode ``batch_activations``
(default: ``activations``).  A coefficient fitted at batch 1 mixes the activations with what the framework
holds anyway (ONNX Runtime's x86 fit gives 0.09), so it predicts far too little growth with the
batch; each further image of a batch costs its own share of the activations (on ONNX Runtime
0.4-0.7 of every tensor the network materialises, the ``caffe`` figure: experiments/memory_batch.md).

Optional ``fc_weights_coef``: the weights of fc layers get their own coefficient (a runtime that
re-packs convolution weights into its own layout holds an extra copy of those, not of the fc
matrices); without it, every weight has ``weights_coef``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._totals import DTYPE_BYTES
from ..analysis import totals
from . import _check

BYTES_PER_MB = 2**20
ACTIVATION_MODES = ("caffe", "peak")
WORKSPACE_MODES = ("sum", "max", "none")


class MemoryTerms(NamedTuple):
    """The memory model as a linear form: ``memory_mb = constant_mb + linear_mb(bytes...)``, one
    coefficient per byte of each component (``MemoryModel.components``), at one batch size. The
    one place the formula is written: ``MemoryModel.predict`` and the oracle's fast path both
    evaluate it."""

    constant_mb: float  # framework_overhead_mb
    weights: float  # per byte of all weights: weight_copies * weights_coef
    fc_weights: float  # more per byte of fc weights: weight_copies * (fc_weights_coef - weights_coef), else 0
    activations: float  # per byte of the ``activations`` mode's activations
    batch_activations: float  # per byte of the ``batch_activations`` mode's activations (0 without its coef)
    workspace: float  # per byte of the ``workspace`` mode's workspace (0 with ``none``)

    def linear_mb(self, weights=0.0, fc_weights=0.0, activations=0.0, batch_activations=0.0, workspace=0.0):
        """The sum of the coefficients times the byte counts, in MB (scalars or arrays)."""
        return (self.weights * weights + self.fc_weights * fc_weights + self.activations * activations
                + self.batch_activations * batch_activations + self.workspace * workspace) / BYTES_PER_MB

    def mb(self, weights=0.0, fc_weights=0.0, activations=0.0, batch_activations=0.0, workspace=0.0):
        """``constant_mb + linear_mb(...)``."""
        return self.constant_mb + self.linear_mb(weights, fc_weights, activations, batch_activations, workspace)


class MemoryModel:
    def __init__(self, framework_overhead_mb=0.0, weight_copies=1, weights_coef=1.0, activations="caffe",
                 activation_coef=1.0, workspace="max", workspace_coef=1.0, fc_weights_coef=None,
                 batch_activation_coef=None, batch_activations=None):
        self.framework_overhead_mb = float(framework_overhead_mb)
        self.weight_copies = int(weight_copies)
        self.weights_coef = float(weights_coef)
        if activations not in ACTIVATION_MODES:
            raise ValueError(f"activations must be one of {ACTIVATION_MODES}, not {activations!r}")
        if workspace not in WORKSPACE_MODES:
            raise ValueError(f"workspace must be one of {WORKSPACE_MODES}, not {workspace!r}")
        self.activations = activations
        self.activation_coef = float(activation_coef)
        self.workspace = workspace
        self.workspace_coef = float(workspace_coef)
        self.fc_weights_coef = None if fc_weights_coef is None else float(fc_weights_coef)
        self.batch_activation_coef = None if batch_activation_coef is None else float(batch_activation_coef)
        if batch_activations is not None and batch_activations not in ACTIVATION_MODES:
            raise ValueError(f"batch_activations must be one of {ACTIVATION_MODES}, not {batch_activations!r}")
        self._batch_activations = batch_activations
        for name in ("framework_overhead_mb", "weights_coef", "activation_coef", "workspace_coef") + (
                ("fc_weights_coef",) if self.fc_weights_coef is not None else ()) + (
                ("batch_activation_coef",) if self.batch_activation_coef is not None else ()):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be finite and non-negative, got {v}")
        if self.weight_copies < 1:
            raise ValueError("weight_copies must be >= 1")

    @property
    def batch_activations(self) -> str:
        """The activations the per-image batch term scales (``activations`` unless set)."""
        return self._batch_activations or self.activations

    def _activation_bytes(self, tot, weights, mode):
        if mode == "caffe":
            return np.asarray(tot["activation_bytes"], dtype=np.float64)
        return np.asarray(tot["peak_memory_bytes"], dtype=np.float64) - weights

    def components(self, table, tot: dict | None = None, batch: int = 1) -> dict:
        """The byte counts the model prices, each a ``[B]`` array (MB)."""
        return {f"{k}_mb": v / BYTES_PER_MB for k, v in self._bytes(table, tot, batch).items()}

    def _bytes(self, table, tot, batch) -> dict:
        """``components`` in bytes (what ``predict`` prices: MB are 2**20 bytes, so the figures
        are the same bits either way)."""
        tot = totals(table) if tot is None else tot  # table may be None when tot has every figure
        weights = np.asarray(tot["weights_bytes"], dtype=np.float64)
        act = self._activation_bytes(tot, weights, self.activations)
        if self.workspace == "sum":
            if "workspace_sum_bytes" in tot:
                ws = np.asarray(tot["workspace_sum_bytes"], dtype=np.float64)
            else:
                ws = table.rows["workspace_elems"].sum(axis=0).astype(np.float64) * DTYPE_BYTES
        elif self.workspace == "max":
            ws = np.asarray(tot["workspace_bytes"], dtype=np.float64)
        else:
            ws = np.zeros_like(weights)
        out = {"weights": weights, "activations": act * batch if batch != 1 else act, "workspace": ws}
        if self.batch_activation_coef is not None:
            out["batch_activations"] = self._activation_bytes(tot, weights, self.batch_activations)
        if self.fc_weights_coef is not None:
            if "fc_weights_bytes" in tot:
                fc = np.asarray(tot["fc_weights_bytes"], dtype=np.float64)
            else:
                fc = fc_weight_bytes(table)
            out["fc_weights"] = fc
        return out

    def terms(self, batch: int = 1) -> MemoryTerms:
        """The coefficients of the model at batch ``batch`` (see ``MemoryTerms``)."""
        copies = self.weight_copies
        fc = 0.0 if self.fc_weights_coef is None else copies * (self.fc_weights_coef - self.weights_coef)
        if self.batch_activation_coef is None:
            act, batch_act = self.activation_coef * batch, 0.0
        else:
            act, batch_act = self.activation_coef, self.batch_activation_coef * (batch - 1)
        ws = 0.0 if self.workspace == "none" else self.workspace_coef
        return MemoryTerms(self.framework_overhead_mb, copies * self.weights_coef, fc, act, batch_act, ws)

    def predict(self, table, tot: dict | None = None, batch: int = 1) -> np.ndarray:
        """Process memory (MB) of every candidate of the table, ``[B]``."""
        b = self._bytes(table, tot, 1)
        return self.terms(batch).mb(b["weights"], b.get("fc_weights", 0.0), b["activations"],
                                    b.get("batch_activations", 0.0), b["workspace"])

    def to_dict(self) -> dict:
        d = {"framework_overhead_mb": _check.plain(self.framework_overhead_mb), "weight_copies": self.weight_copies,
             "weights_coef": _check.plain(self.weights_coef), "activations": self.activations,
             "activation_coef": _check.plain(self.activation_coef), "workspace": self.workspace,
             "workspace_coef": _check.plain(self.workspace_coef)}
        if self.fc_weights_coef is not None:
            d["fc_weights_coef"] = _check.plain(self.fc_weights_coef)
        if self.batch_activation_coef is not None:
            d["batch_activation_coef"] = _check.plain(self.batch_activation_coef)
        if self._batch_activations is not None:
            d["batch_activations"] = self._batch_activations
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "memory") -> "MemoryModel":
        _check.mapping(d, source, key, required=("framework_overhead_mb",),
                       optional=("weight_copies", "weights_coef", "activations", "activation_coef", "workspace",
                                 "workspace_coef", "fc_weights_coef", "batch_activation_coef", "batch_activations"))
        return cls(
            framework_overhead_mb=_check.number(d["framework_overhead_mb"], source, f"{key}.framework_overhead_mb"),
            weight_copies=_check.number(d.get("weight_copies", 1), source, f"{key}.weight_copies", minimum=1, integer=True),
            weights_coef=_check.number(d.get("weights_coef", 1.0), source, f"{key}.weights_coef"),
            activations=_check.string(d.get("activations", "caffe"), source, f"{key}.activations", ACTIVATION_MODES),
            activation_coef=_check.number(d.get("activation_coef", 1.0), source, f"{key}.activation_coef"),
            workspace=_check.string(d.get("workspace", "max"), source, f"{key}.workspace", WORKSPACE_MODES),
            workspace_coef=_check.number(d.get("workspace_coef", 1.0), source, f"{key}.workspace_coef"),
            fc_weights_coef=(_check.number(d["fc_weights_coef"], source, f"{key}.fc_weights_coef")
                             if d.get("fc_weights_coef") is not None else None),
            batch_activation_coef=(_check.number(d["batch_activation_coef"], source, f"{key}.batch_activation_coef")
                                   if d.get("batch_activation_coef") is not None else None),
            batch_activations=(_check.string(d["batch_activations"], source, f"{key}.batch_activations", ACTIVATION_MODES)
                               if d.get("batch_activations") is not None else None),
        )

    def __repr__(self) -> str:
        return f"MemoryModel({self.to_dict()})"

    def __eq__(self, other) -> bool:
        return isinstance(other, MemoryModel) and self.to_dict() == other.to_dict()



def fc_weight_bytes(table) -> np.ndarray:
    """Weight bytes of the fc layers of every candidate of a layer table, ``[B]``."""
    rows = table.rows
    out = np.zeros(rows["mask"].shape[1], dtype=np.float64)
    for s, op in enumerate(table.ops):
        if op == "fc":
            out += np.where(rows["mask"][s], rows["weight_elems"][s], 0) * float(DTYPE_BYTES)
    return out
