"""The time model of memory-bound layers (pooling, activations, normalisation, joins).

``time = ms_per_mb[kind] * (in_bytes + out_bytes) / 1e6 + overhead_ms[kind]`` per layer and image:
these layers stream their tensors once (or a few times, which the per-kind coefficient absorbs).
A kind the profile does not list is priced by its ``default`` entry.
"""

from __future__ import annotations

import numpy as np

from . import _check

BYTES_PER_MB = 1e6


class OpModel:
    """Per-kind ``(ms_per_mb, overhead_ms)`` with a ``default`` for unlisted kinds."""

    def __init__(self, default=(0.0, 0.0), kinds: dict | None = None):
        self.default = _pair(default)
        self.kinds = {k: _pair(v) for k, v in (kinds or {}).items()}

    def coef(self, kind: str) -> tuple[float, float]:
        """``(ms_per_mb, overhead_ms)`` of one op kind."""
        return self.kinds.get(kind, self.default)

    def predict(self, kind: str, in_bytes, out_bytes) -> np.ndarray:
        """Time (ms) of layers of one kind, elementwise (no mask applied)."""
        per_mb, overhead = self.coef(kind)
        moved = np.asarray(in_bytes, dtype=np.float64) + np.asarray(out_bytes, dtype=np.float64)
        return per_mb * moved / BYTES_PER_MB + overhead

    def to_dict(self) -> dict:
        d = {"default": _entry(self.default)}
        if self.kinds:
            d["kinds"] = {k: _entry(v) for k, v in sorted(self.kinds.items())}
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "ops") -> "OpModel":
        _check.mapping(d, source, key, required=("default",), optional=("kinds",))
        default = _read_entry(d["default"], source, f"{key}.default")
        kinds = {}
        if d.get("kinds") is not None:
            _check.mapping(d["kinds"], source, f"{key}.kinds")
            for k, v in d["kinds"].items():
                kinds[str(k)] = _read_entry(v, source, f"{key}.kinds.{k}")
        return cls(default, kinds)

    def __repr__(self) -> str:
        return f"OpModel(default={self.default}, kinds={sorted(self.kinds)})"

    def __eq__(self, other) -> bool:
        return isinstance(other, OpModel) and self.to_dict() == other.to_dict()


def _pair(v) -> tuple[float, float]:
    if isinstance(v, dict):
        v = (v.get("ms_per_mb", 0.0), v.get("overhead_ms", 0.0))
    a, b = (float(x) for x in v)
    if not (np.isfinite(a) and np.isfinite(b)) or a < 0 or b < 0:
        raise ValueError(f"op model coefficients must be finite and non-negative, got {v}")
    return a, b


def _entry(p) -> dict:
    return {"ms_per_mb": _check.plain(p[0]), "overhead_ms": _check.plain(p[1])}


def _read_entry(v, source, key) -> tuple[float, float]:
    _check.mapping(v, source, key, required=("ms_per_mb",), optional=("overhead_ms",))
    return (_check.number(v["ms_per_mb"], source, f"{key}.ms_per_mb"),
            _check.number(v.get("overhead_ms", 0.0), source, f"{key}.overhead_ms"))

