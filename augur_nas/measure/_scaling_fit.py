"""Fitting a profile's ``latency.scaling`` (costmodel/_scaling.py): how each group of layers
grows with the batch and shrinks with intra-op threads, from ONNX Runtime's own per-node times.

The fixed calibration set (augur_nas/data/calibration_set.yaml, never the zoo) is exported at
batch 1 and at larger batches and profiled per node (``_ort_node_profile``: the fused kernels,
the memory-bound ops, the layout conversions, attributed to our layers) at one thread and at the
target thread count. Every visit is repeated (``visits``) and the smaller time counts: on a
shared machine a kernel is only ever slowed down. Each layer of each network gives a sample
``(group, t1, t_b, b, mb)``; the one-thread batch samples fit ``per_call_ms``, ``rate`` and
``spill_coef`` per group, the N-thread samples (against the one-thread time at the same batch)
fit ``par_call_ms`` and ``par_share``. Only ratios are fitted, so the profile's own kernel models
(what another phase measures) stay as they are: the batch model starts from their one-image price.
"""

from __future__ import annotations

import os
import tempfile
import time
from typing import NamedTuple

import numpy as np

from .._errors import MeasurementError
from ..costmodel._ops import BYTES_PER_MB
from ..costmodel._scaling import GROUPS, GroupScale, ScalingModel, group_of, spill_ratio
from ..io.onnx import export_onnx
from ._calibset import calibration_set
from ._ortnodes import attribute, cleanup, graph_edges, node_times
from ._runners import OrtRunner
from ._settings import RuntimeSettings

FIT_BATCHES = (1, 8, 32)
CACHE_GRID_MB = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SPILL_GRID = (0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5)
MIN_MS = 0.002  # node times are whole microseconds: below this a ratio is noise


class ScaleSample(NamedTuple):
    """One layer (or layout conversion) of one calibration network at one batch and thread count."""

    group: str
    key: tuple     # (network, slot or node): the same layer at every batch and thread count
    batch: int
    threads: int
    ms: float      # the layer's time for the whole batch
    mb: float      # activation MB per image (input + output; the bytes a layout conversion streams)


def layer_samples(label, table, att: dict, model0, batch: int, threads: int) -> list:
    """The samples of one network's attributed node times (``_ortnodes.attribute``)."""
    out = []
    r = table.rows
    for s, nodes in att.items():
        if s == "network":
            continue
        if s == "layout":
            out += [ScaleSample("layout", (label, node), batch, threads, ms, nb / BYTES_PER_MB / batch)
                    for node, _, ms, nb in nodes if nb > 0]
            continue
        kind = table.ops[s]
        fam = model0.family(kind)[0]
        if fam == "free":
            continue
        mb = float(r["in_elems"][s, 0] + r["out_elems"][s, 0]) * 4 / BYTES_PER_MB
        out.append(ScaleSample(group_of(kind, fam), (label, s), batch, threads, sum(n[2] for n in nodes), mb))
    return out


def cpu_node_profile(net, settings, workdir, model0, target_s: float = 0.15, min_runs: int = 4, max_runs: int = 40):
    """Per-node times of one network attributed to its layers (as ``_profiling._ort_node_profile``),
    scaled so that they add up to the median *CPU* time of the profiled runs. On a shared machine
    a longer kernel is more often preempted, so wall-clock node times make a batch of 32 look
    slower per image than it is; at one intra-op thread the process's CPU time is the kernels'
    own. With more threads the CPU time counts every thread (and their spinning), so the node
    times are left as measured there."""
    prefix = os.path.join(workdir, "prof")
    opt = os.path.join(workdir, "opt.onnx")
    runner = OrtRunner(net.path, settings, profiling_prefix=prefix, optimized_path=opt)
    prof = None
    try:
        t = time.perf_counter()
        runner.run()
        runner.run()
        runs = int(np.clip(target_s / max((time.perf_counter() - t) / 2, 1e-6), min_runs, max_runs))
        cpus = []
        for _ in range(runs):
            c = time.process_time()
            runner.run()
            cpus.append(time.process_time() - c)
        prof = runner.end_profiling()
        times = node_times(prof, skip_runs=2)
        graph = graph_edges(opt)
    finally:
        runner.close()
        cleanup(prof)
        cleanup(opt)
    if settings.threads == 1:
        total = sum(v[0] for v in times.values())
        f = float(np.median(cpus)) * 1e3 / total if total > 0 else 1.0
        times = {k: (v[0] * f,) + tuple(v[1:]) for k, v in times.items()}
    priced = [model0.family(op)[0] != "free" and net.table.rows["mask"][s, 0] for s, op in enumerate(net.table.ops)]
    return attribute(times, net.table, net.owner, priced, graph, layout_bucket=True)


def measure_scaling(model0, threads=(1,), batches=FIT_BATCHES, visits: int = 2, deadline: float | None = None,
                    progress=None, networks=None) -> list:
    """Per-node samples of the calibration set at every (threads, batch), the smaller of ``visits``
    visits. ``model0``: the profile's ``LatencyModel`` (its fusion rules attribute the nodes)."""
    from ._profiling import _OrtNet  # noqa: PLC0415 - _profiling imports this module

    nets = calibration_set() if networks is None else networks
    best: dict = {}
    with tempfile.TemporaryDirectory(prefix="augur-scaling-") as wd:
        for visit in range(visits):
            for cn in nets:
                if deadline is not None and time.monotonic() > deadline and visit > 0:
                    break
                net = _OrtNet(cn.name, cn.model, wd, model0.fuse)
                try:
                    for b in batches:
                        export_onnx(cn.model, net.path, batch=b)
                        for th in threads:
                            st = RuntimeSettings(threads=th, batch=b)
                            try:
                                att = cpu_node_profile(net, st, wd, model0)
                            except MeasurementError:
                                continue
                            for smp in layer_samples(cn.name, net.table, att, model0, b, th):
                                k = (smp.key, b, th)
                                if k not in best or smp.ms < best[k].ms:
                                    best[k] = smp
                finally:
                    net.remove()
            if progress:
                progress(f"scaling: visit {visit + 1} of {visits}: {len(best)} samples")
    return list(best.values())


# --------------------------------------------------------------------------------------------- fit


class _Pairs(NamedTuple):
    t1: np.ndarray   # one image (or one thread) time
    tb: np.ndarray   # the batch's (or N threads') time
    b: np.ndarray
    mb: np.ndarray


def _pairs(samples, group, threads_a, threads_b, same_batch: bool) -> _Pairs:
    """Matched samples: (batch 1, batch b) at one thread, or (1 thread, N threads) at one batch."""
    idx = {(s.key, s.batch, s.threads): s for s in samples if s.group == group}
    rows = []
    for (key, b, th), s in idx.items():
        if th != threads_b or (not same_batch and b == 1):
            continue
        ref = idx.get((key, b if same_batch else 1, threads_a))
        if ref is None or ref.ms < MIN_MS or s.ms < MIN_MS:
            continue
        rows.append((ref.ms, s.ms, b, s.mb))
    a = np.asarray(rows, dtype=np.float64).reshape(-1, 4)
    return _Pairs(a[:, 0], a[:, 1], a[:, 2], a[:, 3])


def _wmedian(v, w) -> float:
    o = np.argsort(v)
    c = np.cumsum(w[o])
    return float(v[o][np.searchsorted(c, 0.5 * c[-1])])


def _batch_fit(p: _Pairs, cache_mb: float, free_rate: bool):
    """``(loss, per_call_ms, rate, spill_coef)``: the time-weighted absolute log error, grid over
    the per-call cost and the spill, the rate a weighted median where ``free_rate`` (fc: its
    weights stream once per batch) and 1 elsewhere (every further image repeats the work: what
    changes is the per-call part and the cache, and a free rate would soak up the noise of a
    shared machine)."""
    best = None
    calls = np.unique(np.concatenate([[0.0], np.quantile(p.t1, [0.05, 0.1, 0.2, 0.3, 0.5])]))
    w = p.tb / p.b  # per-image time: a layer weighs what it costs
    for c in calls:
        rest = np.maximum(p.t1 - c, 0.0)
        for sc in SPILL_GRID:
            sp = spill_ratio(sc, cache_mb, p.b, p.mb)
            grow = (p.b - 1) * rest * sp
            ok = grow > 0
            if ok.sum() < 3:
                continue
            rate = max(_wmedian((p.tb[ok] - p.t1[ok]) / grow[ok], w[ok]), 0.0) if free_rate else 1.0
            pred = p.t1 + rate * grow
            loss = float(np.sum(w * np.abs(np.log(pred / p.tb))))
            if best is None or loss < best[0]:
                best = (loss, float(c), rate, float(sc))
    return best


def _thread_fit(p: _Pairs):
    """``(par_call_ms, par_share)``: N-thread time against one-thread time at the same batch."""
    best = None
    w = p.tb / p.b
    for c in np.unique(np.concatenate([[0.0], np.quantile(p.t1, [0.05, 0.1, 0.2, 0.3, 0.5])])):
        share = float(np.clip(_wmedian((p.tb - c) / p.t1, w), 0.05, 1.0))
        pred = np.minimum(p.t1, c + share * p.t1)
        loss = float(np.sum(w * np.abs(np.log(pred / p.tb))))
        if best is None or loss < best[0]:
            best = (loss, float(c), share)
    return best


class ScalingFit(NamedTuple):
    model: ScalingModel
    n_samples: dict   # group -> (batch pairs, thread pairs)


def fit_scaling(samples, threads: int = 1) -> ScalingFit:
    """The ``ScalingModel`` of the samples: batch coefficients from the one-thread samples (one
    cache size for all groups, the best total loss), thread coefficients when ``threads`` > 1."""
    pairs = {g: _pairs(samples, g, 1, 1, False) for g in GROUPS}
    usable = {g: p for g, p in pairs.items() if len(p.t1) >= 3}
    if not usable:
        raise MeasurementError("scaling: too few per-node samples at batch 1 and a larger batch to fit the batch model")
    best = None
    for cache in CACHE_GRID_MB:
        fits = {g: _batch_fit(p, cache, g == "fc") for g, p in usable.items()}
        loss = sum(f[0] for f in fits.values() if f is not None)
        if best is None or loss < best[0]:
            best = (loss, cache, fits)
    _, cache, fits = best
    groups = {g: GroupScale(f[1], f[2], f[3]) for g, f in fits.items() if f is not None}
    counts = {g: [len(p.t1), 0] for g, p in usable.items()}
    if threads > 1:
        for g in list(groups):
            tp = _pairs(samples, g, 1, threads, True)
            if len(tp.t1) >= 3:
                _, c, share = _thread_fit(tp)
                groups[g] = groups[g]._replace(par_call_ms=c, par_share=share)
                counts[g][1] = len(tp.t1)
    return ScalingFit(ScalingModel(groups, cache, threads), {g: tuple(v) for g, v in counts.items()})
