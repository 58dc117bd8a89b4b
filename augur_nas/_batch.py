"""Batch sizes and throughput: parsing ``--batch 1,2,4`` and ``--throughput 100/s``, and the
latency/throughput curve of candidates over a list of batch sizes.

Throughput is images per second when batches of ``b`` images run back to back:
``b * 1000 / latency_ms(b)``. How the latency of a batch is modelled per runtime family is in
docs/profiles.md ("Batch and threads").
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import numpy as np

from ._errors import ConstraintError, MeasurementError
from ._imports import optional
from ._atomic import atomic_file

DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32)
MAX_BATCH = 65536  # a larger batch is a typo, not a deployment

_THROUGHPUT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)(?:[eE]([+-]?\d+))?\s*(?:/\s*(s|sec|ms|min)|ips|fps)?\s*$")
_PER = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 1000.0, "min": 1.0 / 60.0}


def parse_batch(value, flag: str = "--batch") -> int:
    """One batch size: a whole number from 1 to ``MAX_BATCH``."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        b = int(value)
    else:
        s = str(value).strip()
        if not re.fullmatch(r"[+]?\d+", s):
            raise ConstraintError(f"{flag}: a batch size is a whole number of images (1, 8, 32), not {str(value)!r}")
        b = int(s)
    if not 1 <= b <= MAX_BATCH:
        raise ConstraintError(f"{flag}: a batch size must be between 1 and {MAX_BATCH} images, not {b} (a batch of "
                              f"0 images runs nothing)")
    return b


def parse_batches(value, flag: str = "--batch") -> tuple:
    """``"1,2,4"``, ``4`` or ``[1, 2, 4]`` -> the sorted distinct batch sizes ``(1, 2, 4)``."""
    if isinstance(value, str):
        parts = [p for p in value.split(",")]
        if not value.strip() or any(not p.strip() for p in parts):
            raise ConstraintError(f"{flag} {value!r}: give batch sizes separated by commas, e.g. 1,2,4,8,16,32")
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        parts = [value]
    else:
        try:
            parts = list(value)
        except TypeError:
            raise ConstraintError(f"{flag}: batch sizes are whole numbers (1,2,4), not {value!r}") from None
        if not parts:
            raise ConstraintError(f"{flag}: give at least one batch size, e.g. 1,2,4,8,16,32")
    return tuple(sorted({parse_batch(p, flag) for p in parts}))


def parse_throughput(value, flag: str = "--throughput") -> float:
    """Images per second from ``100/s``, ``100``, ``100 ips``, ``2/ms`` or a number."""
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        v = float(value)
    else:
        s = str(value)
        m = _THROUGHPUT.match(s)
        if not m:
            neg = s.strip().startswith("-")
            raise ConstraintError(f"{flag} {s!r} is not " + ("positive" if neg else "a throughput") +
                                  "; write it as images per second, e.g. 100/s (also 100, 100ips, 2/ms)")
        mant, exp, per = m.groups()
        v = float(f"{mant}e{exp}" if exp else mant) * _PER[per]
    if not math.isfinite(v) or v <= 0:
        raise ConstraintError(f"{flag} must be a positive, finite number of images per second (e.g. 100/s), "
                              f"not {value!r}")
    return v


class BatchPoint(NamedTuple):
    """The predicted cost of one batch size."""

    batch: int
    latency_ms: float  # of the whole batch
    memory_mb: float
    throughput_ips: float  # images per second, batches back to back


def curve_arrays(oracle, X, batches) -> tuple:
    """``(latency [nb, B], memory [nb, B])``: every candidate of ``X`` at every batch size."""
    X = np.atleast_2d(np.asarray(X))
    lat = np.zeros((len(batches), X.shape[0]))
    mem = np.zeros_like(lat)
    for i, b in enumerate(batches):
        r = oracle.evaluate(X, batch=int(b), breakdown=False)
        lat[i], mem[i] = r["latency_ms"], r["memory_mb"]
    return lat, mem


def batch_curve(oracle, x, batches=DEFAULT_BATCHES) -> list:
    """``[BatchPoint]`` of one candidate (a model: ``x`` of zeros) over ``batches``."""
    batches = parse_batches(batches)
    lat, mem = curve_arrays(oracle, np.atleast_2d(x), batches)
    return [BatchPoint(b, float(lat[i, 0]), float(mem[i, 0]), b * 1000.0 / float(lat[i, 0]))
            for i, b in enumerate(batches)]


def plot_curve(curves: dict, path: str, title: str) -> None:
    """Latency and throughput against batch size, one line per device (``{device: [BatchPoint]}``),
    written atomically as a PNG (matplotlib imported here: an optional dependency)."""

    agg = optional("matplotlib.backends.backend_agg", "--plot", MeasurementError)
    fig = optional("matplotlib.figure", "--plot", MeasurementError).Figure(figsize=(9, 3.8))
    agg.FigureCanvasAgg(fig)
    ax_lat, ax_tp = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for dev, pts in curves.items():
        bs = [p.batch for p in pts]
        ax_lat.plot(bs, [p.latency_ms for p in pts], marker="o", label=dev)
        ax_tp.plot(bs, [p.throughput_ips for p in pts], marker="o", label=dev)
    for ax, ylab in ((ax_lat, "latency of a batch (ms)"), (ax_tp, "throughput (images/s)")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel(ylab)
        ax.grid(True, alpha=0.3)
    ax_lat.set_yscale("log")
    top = max(p.throughput_ips for pts in curves.values() for p in pts)
    ax_tp.set_ylim(0, 1.15 * top)  # from zero: a 1% step must not look like a cliff
    for ax in (ax_lat, ax_tp):
        ticks = sorted({p.batch for pts in curves.values() for p in pts})
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
    ax_tp.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_file(path) as fh:
        fig.savefig(fh, format="png", dpi=110)
