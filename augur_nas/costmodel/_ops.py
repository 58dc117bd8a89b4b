"""The time model of memory-bound layers (pooling, activations, normalisation, joins).

``time = ms_per_mb[kind] * (in_bytes + out_bytes) / 1e6 + overhead_ms[kind]`` per layer and image:
these layers stream their tensors once (or a few times, which the per-kind coefficient absorbs).
A kind the profile does not list is priced by its ``default`` entry.

``spill`` (optional, ``Spill``): a layer that moves more than ``above_mb`` streams the part above
it from a farther cache or memory, ``1 + ratio`` times slower per MB (the bytes it is priced on
are ``Spill.priced_bytes``). ONNX Runtime's in-place node times of a Xeon (AVX-512) showed it:
layout conversions 0.032 ms/MB up to 1 MB, 0.071-0.079 above; broadcast multiplies and adds about
twice as slow per MB above 2 MB moved (experiments/kernel_diagnosis_raw.json.gz, under load).
A kind may carry a knee of its own (``kinds.<kind>.spill``), which replaces the shared one for it.

``per_span_ms`` (optional, per kind): an element-wise join with an input broadcast per channel
(squeeze-excite's ``x[N,C,H,W] * s[N,C,1,1]``) walks its output one channel plane at a time, so
it also pays ``per_span_ms`` for each of the ``N * C`` planes (``channel_spans``): at 7x7 the per-plane
cost outweighs the bytes (ONNX Runtime on a Xeon: a 1536x4x4 multiply 19 us where a 48x24x24 one
of the same bytes took 6 us; experiments/kernel_spans.md). Without the key a kind pays none.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..ops import JOIN_KINDS
from . import _check

BYTES_PER_MB = 1e6


def channel_spans(kind: str, in_elems, out_elems, out_c) -> np.ndarray:
    """The channel planes a layer walks one at a time (per image): ``out_c`` for an element-wise
    join one of whose inputs is broadcast per channel (its input elements are then not a whole
    multiple of its output's: ``C*H*W + C``), else 0 (a join of same-shaped tensors streams them
    whole; a 1x1 tensor's planes are single elements, which streaming covers)."""
    out_elems = np.asarray(out_elems, dtype=np.int64)
    if kind not in JOIN_KINDS:
        return np.zeros(out_elems.shape, dtype=np.float64)
    in_elems = np.asarray(in_elems, dtype=np.int64)
    broadcast = (out_elems > 0) & (np.mod(in_elems, np.maximum(out_elems, 1)) != 0)
    return np.where(broadcast, np.asarray(out_c, dtype=np.float64), 0.0)


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
    """Per-kind ``(ms_per_mb, overhead_ms)`` with a ``default`` for unlisted kinds; optional per
    kind: ``per_span`` ms per channel plane (``channel_spans``) and a cache knee of its own (``kind_spill``)."""

    def __init__(self, default=(0.0, 0.0), kinds: dict | None = None, spill=None, per_span: dict | None = None,
                 kind_spill: dict | None = None):
        self.default = _pair(default)
        self.kinds = {k: _pair(v) for k, v in (kinds or {}).items()}
        self.spill = Spill.of(spill)
        self.per_span = {str(k): _non_negative(v, "per_span_ms") for k, v in (per_span or {}).items() if v}
        self.kind_spill = {str(k): Spill.of(v) for k, v in (kind_spill or {}).items()}

    def coef(self, kind: str) -> tuple[float, float]:
        """``(ms_per_mb, overhead_ms)`` of one op kind."""
        return self.kinds.get(kind, self.default)

    def spill_of(self, kind: str) -> Spill:
        """The cache knee a kind's bytes are priced through: its own, else the shared one."""
        return self.kind_spill.get(kind, self.spill)

    def predict(self, kind: str, in_bytes, out_bytes, spans=0.0) -> np.ndarray:
        """Time (ms) of layers of one kind, elementwise (no mask applied)."""
        moved = np.asarray(in_bytes, dtype=np.float64) + np.asarray(out_bytes, dtype=np.float64)
        return self.time_ms(kind, moved, 1, spans)

    def time_ms(self, kind: str, moved_bytes, batch=1, spans=0.0) -> np.ndarray:
        """The one formula of a memory-bound layer: ``batch`` images each moving ``moved_bytes``
        (priced through the kind's knee) over ``spans`` channel planes pay the streaming and the
        per-plane time, the call pays ``overhead_ms`` once."""
        per_mb, overhead = self.coef(kind)
        t = per_mb * self.spill_of(kind).priced_bytes(moved_bytes) * batch / BYTES_PER_MB + overhead
        per_span = self.per_span.get(kind, 0.0)
        return t + per_span * np.asarray(spans, dtype=np.float64) * batch if per_span else t

    def to_dict(self) -> dict:
        d = {"default": _entry(self.default)}
        if self.kinds:
            d["kinds"] = {k: _entry(v, self.per_span.get(k), self.kind_spill.get(k)) for k, v in sorted(self.kinds.items())}
        if self.spill.ratio:
            d["spill"] = self.spill.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "ops") -> "OpModel":
        _check.mapping(d, source, key, required=("default",), optional=("kinds", "spill"))
        default = _read_entry(d["default"], source, f"{key}.default")
        kinds, per_span, kind_spill = {}, {}, {}
        if d.get("kinds") is not None:
            _check.mapping(d["kinds"], source, f"{key}.kinds")
            for k, v in d["kinds"].items():
                kinds[str(k)] = _read_entry(v, source, f"{key}.kinds.{k}")
                if v.get("per_span_ms") is not None:
                    per_span[str(k)] = _check.number(v["per_span_ms"], source, f"{key}.kinds.{k}.per_span_ms")
                if v.get("spill") is not None:
                    kind_spill[str(k)] = Spill.from_dict(v["spill"], source, f"{key}.kinds.{k}.spill")
        spill = Spill.from_dict(d["spill"], source, f"{key}.spill") if d.get("spill") is not None else None
        return cls(default, kinds, spill, per_span, kind_spill)

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


def _non_negative(v, what: str) -> float:
    v = float(v)
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"op model {what} must be finite and non-negative, got {v}")
    return v


def _entry(p, per_span=None, spill: Spill | None = None) -> dict:
    """A kind's plain data; the optional keys only where set (a profile without them reads back
    and prices exactly as before they existed)."""
    e = {"ms_per_mb": _check.plain(p[0]), "overhead_ms": _check.plain(p[1])}
    if per_span:
        e["per_span_ms"] = _check.plain(per_span)
    if spill is not None:
        e["spill"] = spill.to_dict()
    return e


def _read_entry(v, source, key) -> tuple[float, float]:
    _check.mapping(v, source, key, required=("ms_per_mb",), optional=("overhead_ms", "per_span_ms", "spill"))
    return (_check.number(v["ms_per_mb"], source, f"{key}.ms_per_mb"),
            _check.number(v.get("overhead_ms", 0.0), source, f"{key}.overhead_ms"))

