"""The time model of memory-bound layers (pooling, activations, normalisation, joins).

``time = ms_per_mb[kind] * (in_bytes + out_bytes) / 1e6 + overhead_ms[kind]`` per layer and image:
these layers stream their tensors once (or a few times, which the per-kind coefficient absorbs).
A kind the profile does not list is priced by its ``default`` entry.

``spill`` (optional, ``Spill``): a layer that moves more than ``above_mb`` streams the part above
it from a farther cache or memory, ``1 + ratio`` times slower per MB (the bytes it is priced on
are ``Spill.priced_bytes``). ONNX Runtime's in-place node times of a Xeon (AVX-512) showed it:
layout conversions 0.032 ms/MB up to 1 MB, 0.071-0.079 above; broadcast multiplies and adds about
twice as slow per MB above 2 MB moved (experiments/kernel_diagnosis_raw.json.gz, under load).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _check

BYTES_PER_MB = 1e6


class Spill(NamedTuple):
    """Bytes above ``above_mb`` (per layer or conversion) cost ``1 + ratio`` times as much per MB.
    ``ratio`` 0: no knee (a profile without one)."""
    above_mb: float = 0.0
    ratio: float = 0.0

    def priced_bytes(self, moved_bytes):
        """The bytes a layer is priced on: its bytes, those above the knee counted ``1 + ratio`` times."""
        moved = np.asarray(moved_bytes, dtype=np.float64)
        if not self.ratio:
            return moved
        return moved + self.ratio * np.maximum(moved - self.above_mb * BYTES_PER_MB, 0.0)

    def to_dict(self) -> dict:
        return {"above_mb": _check.plain(self.above_mb), "ratio": _check.plain(self.ratio)}

    @classmethod
    def from_dict(cls, d, source, key) -> "Spill":
        _check.mapping(d, source, key, required=("above_mb", "ratio"))
        return cls(_check.number(d["above_mb"], source, f"{key}.above_mb"), _check.number(d["ratio"], source, f"{key}.ratio"))

    @classmethod
    def of(cls, v) -> "Spill":
        """A ``Spill`` from one, a pair, a dict or None (no knee); checked."""
        if v is None:
            return cls()
        sp = cls(**v) if isinstance(v, dict) else cls(*(float(x) for x in v))
        if not (np.isfinite(sp.above_mb) and np.isfinite(sp.ratio)) or sp.above_mb < 0 or sp.ratio < 0:
            raise ValueError(f"spill must be finite and non-negative, got {v}")
        return cls(float(sp.above_mb), float(sp.ratio))


class OpModel:
    """Per-kind ``(ms_per_mb, overhead_ms)`` with a ``default`` for unlisted kinds."""

    def __init__(self, default=(0.0, 0.0), kinds: dict | None = None, spill=None):
        self.default = _pair(default)
        self.kinds = {k: _pair(v) for k, v in (kinds or {}).items()}
        self.spill = Spill.of(spill)

    def coef(self, kind: str) -> tuple[float, float]:
        """``(ms_per_mb, overhead_ms)`` of one op kind."""
        return self.kinds.get(kind, self.default)

    def predict(self, kind: str, in_bytes, out_bytes) -> np.ndarray:
        """Time (ms) of layers of one kind, elementwise (no mask applied)."""
        moved = np.asarray(in_bytes, dtype=np.float64) + np.asarray(out_bytes, dtype=np.float64)
        return self.time_ms(kind, moved)

    def time_ms(self, kind: str, moved_bytes, batch=1) -> np.ndarray:
        """The one formula of a memory-bound layer: ``batch`` images each moving ``moved_bytes``
        (priced through the knee) pay the streaming time, the call pays ``overhead_ms`` once."""
        per_mb, overhead = self.coef(kind)
        return per_mb * self.spill.priced_bytes(moved_bytes) * batch / BYTES_PER_MB + overhead

    def to_dict(self) -> dict:
        d = {"default": _entry(self.default)}
        if self.kinds:
            d["kinds"] = {k: _entry(v) for k, v in sorted(self.kinds.items())}
        if self.spill.ratio:
            d["spill"] = self.spill.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "ops") -> "OpModel":
        _check.mapping(d, source, key, required=("default",), optional=("kinds", "spill"))
        default = _read_entry(d["default"], source, f"{key}.default")
        kinds = {}
        if d.get("kinds") is not None:
            _check.mapping(d["kinds"], source, f"{key}.kinds")
            for k, v in d["kinds"].items():
                kinds[str(k)] = _read_entry(v, source, f"{key}.kinds.{k}")
        spill = Spill.from_dict(d["spill"], source, f"{key}.spill") if d.get("spill") is not None else None
        return cls(default, kinds, spill)

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

