"""How a layer's time grows with the batch and shrinks with intra-op threads (issue 14).

The kernel models of a profile price one image on one thread. A runtime that batches its kernels
(ONNX Runtime: the weights are packed once per call, then MLAS loops the images) does not pay
the per-call part of a kernel once per image, and a layer whose tensors of ``b`` images no longer
fit in the cache pays more per image than at batch 1. Per group of layers (``conv``, ``dwconv``,
``fc``, ``bytes``: the memory-bound kinds, ``arith``: the memory-bound kinds whose arithmetic per
element outweighs their bytes, ``layout``: the layout conversions) the time of a
batch of ``b`` images is, from ``t1``, the layer's priced time for one image::

    t(b) = t1 + (b - 1) * rate * max(t1 - per_call_ms, 0) * spill(b) / spill(1)
              + spill_ms_per_mb * mb * (b * over(b) - over(1))
    spill(b) = 1 + spill_coef * over(b),   over(b) = log2(max(b * mb / cache_mb, 1))

``mb``: the layer's activation MB per image (input + output): each doubling of a working set
past the cache costs a further ``spill_coef`` of the one-image time per image, or (the second
form) a further ``spill_ms_per_mb`` per MB an image streams. The first form charges a layer's
cache misses in proportion to its compute, the second in proportion to its bytes: a 5x5
depthwise layer does 25/9 the arithmetic of a 3x3 one on the same tensors, so a relative spill
fitted on 3x3 layers overcharges it, while a channel shuffle or a concatenation, nothing but
bytes, is charged the same either way (the fit chooses the relative form unless asked:
measure/_scaling_fit.py, ``DEFAULT_SPILL_FORMS``). ``rate`` is the share of a
one-image time that repeats per further image (1 for a conv, about 0.05 for a fully connected
layer, whose weights stream once per batch). At ``b = 1`` the time is ``t1`` exactly, so a
profile's batch-1 figures do not change.

With ``threads`` > 1 the profile's kernels are the one-thread kernels and each layer runs::

    t_N = min(t(b), par_call_ms + par_share * t1 + par_image_share * (t(b) - t1))

``par_share`` (about 1/N for a layer that splits well) and ``par_call_ms`` (the fork/join cost)
per group: a small kernel does not gain from a second thread, a large one nearly halves.
``par_image_share``: the share left of the further images' time. A batch gives the threads b
times the work to split, so the imbalance of a one-image kernel (the part of ``par_share`` over
1/N) is paid once per call, not once per image: the fits since this term set it to 1/N (ONNX
Runtime on two cores: N threads over one thread measured 0.50-0.57 for every zoo network at
batches 4-32, where a share fitted at batch 1, 0.57 for the convs, priced 0.57-0.64). A profile
that does not give it has ``par_share`` (every image pays the one-image share: the form before).

A profile without ``latency.scaling`` keeps the rule before issue 14: b times one image for the
GEMM kinds (Caffe's loop over images), ``m = b`` for fc, the bytes times b for memory-bound
kinds (docs/profiles.md, "Batch").
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _check

GROUPS = ("conv", "dwconv", "fc", "bytes", "arith", "layout")
# Kinds priced by their bytes whose time is arithmetic: LRN sums a window of channels and takes a
# power per element. Measured per node on the calibration set (12:28), every other memory-bound
# kind took 1.5-2.6x its batch-1 time per image at batch 32 (concat 2.2, maxpool 2.0, mul 2.6),
# LRN 1.02; in one group, the fit of the group's spill was LRN's (its layers are the group's
# longest) and the data-movement kinds got none.
ARITH_KINDS = frozenset({"lrn"})
# a group a profile does not name takes the coefficients of this one (profiles fitted before it)
FALLBACK = {"arith": "bytes"}


class GroupScale(NamedTuple):
    """One group's batch and thread coefficients."""

    per_call_ms: float = 0.0   # paid once per batch (dispatch, weight packing)
    rate: float = 1.0          # share of the rest that repeats per further image
    spill_coef: float = 0.0    # extra per-image time once b images overflow the cache
    par_call_ms: float = 0.0   # fork/join cost of a parallel kernel (threads > 1)
    par_share: float = 1.0     # share of the time left with threads > 1 (of one image)
    par_image_share: float = -1.0  # share left of the further images' time (< 0: par_share)
    spill_ms_per_mb: float = 0.0  # extra time per MB an image streams, per doubling past the cache


class ScalingModel:
    """Per-group ``GroupScale`` coefficients, the cache size and the thread count they describe."""

    def __init__(self, groups: dict, cache_mb: float = 1.0, threads: int = 1):
        self.groups = {str(g): _filled(GroupScale(*[float(v) for v in s])) for g, s in groups.items()}
        self.cache_mb = float(cache_mb)
        self.threads = int(threads)
        for g, s in self.groups.items():
            if g not in GROUPS:
                raise ValueError(f"unknown scaling group {g!r} (known: {', '.join(GROUPS)})")
            if not all(np.isfinite(v) and v >= 0 for v in s):
                raise ValueError(f"scaling coefficients of {g!r} must be finite and non-negative")
        if not (np.isfinite(self.cache_mb) and self.cache_mb > 0) or self.threads < 1:
            raise ValueError("cache_mb must be positive and threads at least 1")

    def scale(self, group: str, t1: np.ndarray, batch: int, mb: np.ndarray) -> np.ndarray:
        """The time of ``batch`` images (with this model's threads) from the one-image times ``t1``."""
        s = self.groups.get(group) or self.groups.get(FALLBACK.get(group), _filled(GroupScale()))
        t1 = np.asarray(t1, dtype=np.float64)
        t = t1
        if batch > 1:
            rest = np.maximum(t1 - s.per_call_ms, 0.0)
            t = t1 + (batch - 1) * s.rate * rest * self._spill(s, batch, mb)
            if s.spill_ms_per_mb:
                t = t + s.spill_ms_per_mb * spill_bytes_mb(self.cache_mb, batch, mb)
        if self.threads > 1:
            t = np.minimum(t, s.par_call_ms + s.par_share * t1 + s.par_image_share * (t - t1))
        return t

    def _spill(self, s: GroupScale, batch: int, mb) -> np.ndarray:
        if not s.spill_coef:
            return 1.0
        mb = np.maximum(np.asarray(mb, dtype=np.float64), 1e-12)
        return spill_ratio(s.spill_coef, self.cache_mb, batch, mb)

    # ------------------------------------------------------------------------------ plain data

    def to_dict(self) -> dict:
        return {"threads": self.threads, "cache_mb": _check.plain(self.cache_mb),
                "groups": {g: {k: _check.plain(v) for k, v in s._asdict().items()} for g, s in self.groups.items()}}

    @classmethod
    def from_dict(cls, d, source=None, key="latency.scaling") -> ScalingModel:
        _check.mapping(d, source, key, required=("groups",), optional=("threads", "cache_mb"))
        _check.mapping(d["groups"], source, f"{key}.groups")
        groups = {}
        for g, s in d["groups"].items():
            k = f"{key}.groups.{g}"
            if g not in GROUPS:
                raise _check.err(f"`{k}`: `{g}` is not a scaling group (known: {', '.join(GROUPS)})", source, k)
            _check.mapping(s, source, k, optional=GroupScale._fields)
            groups[g] = GroupScale(**{f: _check.number(v, source, f"{k}.{f}", minimum=0) for f, v in s.items()})
        threads = _check.number(d.get("threads", 1), source, f"{key}.threads", minimum=1, integer=True)
        cache = _check.number(d.get("cache_mb", 1.0), source, f"{key}.cache_mb")
        if cache <= 0:
            raise _check.err(f"`{key}.cache_mb` must be positive, not {cache}", source, f"{key}.cache_mb")
        return cls(groups, cache, int(threads))

    def __eq__(self, other) -> bool:
        return isinstance(other, ScalingModel) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"ScalingModel(threads={self.threads}, groups={sorted(self.groups)})"


def group_of(kind: str, family: str) -> str:
    """The scaling group of an op kind priced by ``family`` (``gemm`` or ``bytes``)."""
    if family == "gemm":
        return kind if kind in ("dwconv", "fc") else "conv"
    return "arith" if kind in ARITH_KINDS else "bytes"


def _filled(s: GroupScale) -> GroupScale:
    """``s`` with ``par_image_share`` given (a profile fitted before it: ``par_share``)."""
    return s if s.par_image_share >= 0 else s._replace(par_image_share=s.par_share)


def _over(cache_mb: float, batch, mb) -> np.ndarray:
    """Doublings of the working set of ``batch`` images of ``mb`` MB each past the cache."""
    return np.log2(np.maximum(batch * mb / cache_mb, 1.0))


def spill_ratio(coef: float, cache_mb: float, batch, mb) -> np.ndarray:
    """``spill(b) / spill(1)`` of layers with ``mb`` activation MB per image (see the module)."""
    mb = np.maximum(np.asarray(mb, dtype=np.float64), 1e-12)
    return (1.0 + coef * _over(cache_mb, batch, mb)) / (1.0 + coef * _over(cache_mb, 1, mb))


def spill_bytes_mb(cache_mb: float, batch, mb) -> np.ndarray:
    """``mb * (b * over(b) - over(1))``: the MB-doublings past the cache a batch streams beyond
    ``b`` one-image runs (the second spill form, times ``spill_ms_per_mb``)."""
    mb = np.maximum(np.asarray(mb, dtype=np.float64), 0.0)
    return mb * (batch * _over(cache_mb, batch, mb) - _over(cache_mb, 1, mb))
