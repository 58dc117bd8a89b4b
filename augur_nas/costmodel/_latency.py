"""The latency model of a device: which model family prices each op kind, and the sum.

Every layer slot of a layer table is priced by the family its op kind maps to:

- ``{gemm: NAME}``: ``groups`` GEMMs of ``(n, m, k)`` priced by the ``PiecewiseGemm`` NAME (conv,
  dwconv; Caffe runs a batch of b images as b rounds of those GEMMs, so the time is b times
  that of one image). ``fc`` is one GEMM whose m is the batch (Caffe's InnerProduct multiplies
  the whole batch at once, so its weights stream once per batch).
- ``bytes``: the memory-bound ``OpModel`` (per-kind cost per MB moved plus a per-layer overhead).
- ``free``: costs nothing (dropout at inference, flatten, the aliases identity/select/zero).

Every priced layer also pays ``layer_overhead_ms`` (a launch or synchronisation on a GPU).
All of it is vectorized over the ``[L, B]`` table: the loop runs over op kinds, never candidates.
"""

from __future__ import annotations

import numpy as np

from .._errors import ProfileError
from ..lowering import DTYPE_BYTES, REGISTRY
from . import _check
from ._gemm import PiecewiseGemm
from ._ops import BYTES_PER_MB, OpModel

FREE_BY_DEFAULT = ("dropout", "flatten", "identity", "select", "zero")
GEMM_KINDS = tuple(k for k, h in REGISTRY.items() if h.gemm)


class LatencyModel:
    """GEMM models by name, the memory-bound op model, the op-kind map and a per-layer overhead."""

    def __init__(self, gemm: dict, ops: OpModel | None = None, kinds: dict | None = None,
                 layer_overhead_ms: float = 0.0):
        self.gemm = dict(gemm)
        self.ops = ops if ops is not None else OpModel()
        self.kinds = dict(kinds or {})
        self.layer_overhead_ms = float(layer_overhead_ms)
        if not np.isfinite(self.layer_overhead_ms) or self.layer_overhead_ms < 0:
            raise ValueError("layer_overhead_ms must be finite and non-negative")
        for kind, fam in self.kinds.items():
            _parse_family(fam, self.gemm, kind, None, "latency.kinds")

    def family(self, kind: str):
        """``("gemm", name)``, ``("bytes", None)`` or ``("free", None)`` for an op kind."""
        fam = self.kinds.get(kind)
        if fam is not None:
            return _parse_family(fam, self.gemm, kind, None, "latency.kinds")
        if kind in FREE_BY_DEFAULT:
            return ("free", None)
        if kind in GEMM_KINDS:
            for name in (kind, "conv"):
                if name in self.gemm:
                    return ("gemm", name)
            if self.gemm:
                return ("gemm", next(iter(self.gemm)))
            return ("bytes", None)
        return ("bytes", None)

    # ------------------------------------------------------------------------------ predict

    def slot_times(self, table, batch: int = 1, profile: str | None = None) -> np.ndarray:
        """Time (ms) of every layer slot of every candidate, ``[L, B]`` (slot-major, as table.rows)."""
        rows = table.rows
        mask = rows["mask"]
        L, B = mask.shape
        out = np.zeros((L, B), dtype=np.float64)
        batch = int(batch)
        by_kind: dict[str, list] = {}
        for s, op in enumerate(table.ops):
            by_kind.setdefault(op, []).append(s)
        for kind, slots in by_kind.items():
            fam, name = self.family(kind)
            if fam == "free":
                continue
            idx = np.asarray(slots, dtype=np.int64)
            msk = mask[idx]
            if not msk.any():
                continue
            if fam == "gemm":
                g = self.gemm[name]
                n, m, k, groups = rows["n"][idx], rows["m"][idx], rows["k"][idx], rows["groups"][idx]
                names = [table.names[s] for s in slots]
                if kind == "fc":
                    t = g.predict(n, m * batch, k, mask=msk, names=names, profile=profile) * groups
                else:
                    t = g.predict(n, m, k, mask=msk, names=names, profile=profile) * (groups * batch)
            else:
                per_mb, overhead = self.ops.coef(kind)
                moved = (rows["in_elems"][idx] + rows["out_elems"][idx]).astype(np.float64) * DTYPE_BYTES
                t = per_mb * moved * batch / BYTES_PER_MB + overhead
            t = t + self.layer_overhead_ms
            out[idx] = np.where(msk, t, 0.0)
        return out

    def predict(self, table, batch: int = 1, profile: str | None = None):
        """``(total [B], {op kind: [B]})`` in ms."""
        st = self.slot_times(table, batch, profile)
        total = st.sum(axis=0)
        by_kind: dict[str, np.ndarray] = {}
        ops = np.asarray(table.ops)
        for kind in dict.fromkeys(table.ops):
            if self.family(kind)[0] == "free":
                continue
            by_kind[kind] = st[ops == kind].sum(axis=0)
        return total, by_kind

    # ------------------------------------------------------------------------------ plain data

    def to_dict(self) -> dict:
        d = {"layer_overhead_ms": _check.plain(self.layer_overhead_ms)}
        if self.kinds:
            d["kinds"] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in sorted(self.kinds.items())}
        d["gemm"] = {name: g.to_dict() for name, g in self.gemm.items()}
        d["ops"] = self.ops.to_dict()
        return d

    @classmethod
    def from_dict(cls, d, source: str | None = None, key: str = "latency") -> "LatencyModel":
        _check.mapping(d, source, key, required=("gemm", "ops"), optional=("layer_overhead_ms", "kinds"))
        _check.mapping(d["gemm"], source, f"{key}.gemm")
        gemm = {str(name): PiecewiseGemm.from_dict(g, source, f"{key}.gemm.{name}") for name, g in d["gemm"].items()}
        ops = OpModel.from_dict(d["ops"], source, f"{key}.ops")
        kinds = {}
        if d.get("kinds") is not None:
            _check.mapping(d["kinds"], source, f"{key}.kinds")
            for kind, fam in d["kinds"].items():
                _parse_family(fam, gemm, str(kind), source, f"{key}.kinds")
                kinds[str(kind)] = fam
        overhead = _check.number(d.get("layer_overhead_ms", 0.0), source, f"{key}.layer_overhead_ms")
        return cls(gemm, ops, kinds, overhead)

    def __eq__(self, other) -> bool:
        return isinstance(other, LatencyModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LatencyModel(gemm={sorted(self.gemm)}, ops={self.ops!r}, layer_overhead_ms={self.layer_overhead_ms})"


def _parse_family(fam, gemm: dict, kind: str, source, key):
    k = f"{key}.{kind}"
    if kind not in REGISTRY:
        raise _check.err(f"`{k}`: `{kind}` is not an op kind (known: {', '.join(sorted(REGISTRY))})", source, k)
    if fam in ("bytes", "free"):
        return (fam, None)
    if isinstance(fam, dict) and set(fam) == {"gemm"}:
        name = fam["gemm"]
        if name not in gemm:
            raise _check.err(f"`{k}` prices `{kind}` with the GEMM model `{name}`, which `latency.gemm` does not "
                             f"define (it has: {', '.join(sorted(gemm)) or 'none'})", source, k)
        if kind not in GEMM_KINDS:
            raise _check.err(f"`{k}`: `{kind}` layers are not matrix multiplications; price them with `bytes` or "
                             f"`free` (GEMM kinds: {', '.join(GEMM_KINDS)})", source, k)
        return ("gemm", name)
    raise _check.err(f"`{k}` must be `bytes`, `free` or {{gemm: NAME}}, not {_check._kind(fam)}", source, k)


def latency_ms(table, profile, batch: int = 1):
    """Predicted latency (ms) of every candidate of a layer table on a device.

    ``profile`` is a ``Profile`` (``augur_nas.profile.load_profile``) or a ``LatencyModel``.
    Returns ``(total, by_kind)``: a ``[B]`` array and a dict op kind -> ``[B]`` array.
    """
    model, name = _latency_of(profile)
    if int(batch) < 1:
        raise ProfileError(f"batch must be a positive integer, got {batch}")
    return model.predict(table, int(batch), name)


def memory_mb(table, profile, batch: int = 1, tot: dict | None = None) -> np.ndarray:
    """Predicted process memory (MB, 2^20 bytes) of every candidate of a layer table, ``[B]``."""
    mem = getattr(profile, "memory", profile)
    return mem.predict(table, tot, int(batch))


def _latency_of(profile):
    if isinstance(profile, LatencyModel):
        return profile, None
    lat = getattr(profile, "latency", None)
    if isinstance(lat, LatencyModel):
        return lat, getattr(profile, "name", None)
    raise TypeError(f"expected a Profile or a LatencyModel, not {type(profile).__name__}")
